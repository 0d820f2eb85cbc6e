"""Run or resume a study: sample settings, train each trial in its own process, within budget.

The `hpo search` command (also `python -m hpo.search`).

Command line::

    hpo search --study studies/imdb.toml [--storage URL] [--n-trials N]
        [--budget 2h] [--timeout S] [--workers N] [--data PATH] [--tensorboard]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from hpo._env import PROGRESS_VAR, env_flag
from hpo.api import DEFAULT_STUDY
from hpo.budget import format_duration, parse_duration
from hpo.command_options import DATA_HELP, positive_int
from hpo.errors import ConfigError
from hpo.search.recovery import raise_keyboard_interrupt_on_sigterm
from hpo.store import redact_url

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["add_arguments", "main", "run"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text, "--budget")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--study", help=f"study file (default {DEFAULT_STUDY})")
    parser.add_argument(
        "--storage",
        help="storage URL (default: SQLite in the study's folder), or grpc://host:port",
    )
    parser.add_argument(
        "--study-name",
        help="with --storage and no --study: join that study with its recorded settings "
        "(a worker on another machine)",
    )
    parser.add_argument(
        "--n-trials", type=positive_int(), help="finished trials the study should hold"
    )
    parser.add_argument(
        "--budget",
        type=_duration,
        help='wall-clock budget of the whole study, across resumed runs ("2h", "90m", seconds)',
    )
    parser.add_argument(
        "--timeout", type=_positive_float, help="seconds after which no new trial starts"
    )
    parser.add_argument(
        "--workers", type=positive_int(), help="worker processes sharing the storage"
    )
    parser.add_argument(
        "--trials-per-gpu",
        type=positive_int(),
        help="trials that share one GPU at once (default 1; workers default to GPUs x this)",
    )
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument(
        "--tensorboard", action="store_true", default=None, help="write TensorBoard logs"
    )


def _run_flags(args: argparse.Namespace) -> str:
    """The flags beside the study's that shaped this run, as the command line gave them (a
    resume without --n-trials or --budget would run to the study file's, and retire the trial
    it interrupted)."""
    flags = [
        (flag, value)
        for flag, value in (
            ("--n-trials", args.n_trials),
            ("--budget", None if args.budget is None else f"{args.budget:g}"),
            ("--timeout", None if args.timeout is None else f"{args.timeout:g}"),
            ("--workers", args.workers),
            ("--trials-per-gpu", args.trials_per_gpu),
            ("--data", args.data),
        )
        if value is not None
    ]
    text = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in flags)
    return text + (" --tensorboard" if args.tensorboard else "")


def run(args: argparse.Namespace) -> int:
    """Runs or resumes the study (`hpo.search`) and prints where it stands."""
    from hpo.api import search

    raise_keyboard_interrupt_on_sigterm()
    # Quoted as a shell reads them: a path with a space is copied and pasted whole.
    storage = shlex.quote(redact_url(args.storage)) if args.storage else None
    study_hint = (
        f"--storage {storage} --study-name {shlex.quote(args.study_name)}"
        if args.study_name
        else f"--study {shlex.quote(str(args.study or DEFAULT_STUDY))}"
        + (f" --storage {storage}" if storage else "")
    )
    try:
        summary = search(
            args.study,
            storage=args.storage,
            study_name=args.study_name,
            n_trials=args.n_trials,
            budget=args.budget,
            timeout=args.timeout,
            workers=args.workers,
            trials_per_gpu=args.trials_per_gpu,
            tensorboard=args.tensorboard,
            data=args.data,
            progress=(sys.stderr is not None and sys.stderr.isatty()) or env_flag(PROGRESS_VAR),
        )
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Finished trials are saved; the running one is marked FAIL and "
            "queued again. "
            f"Run the same command again to resume: hpo search {study_hint}{_run_flags(args)}",
            file=sys.stderr,
        )
        return 130
    best = (
        f"best trial {summary.best_number}: {summary.objective} {summary.best_value:.4f}"
        if summary.best_number is not None
        else "no complete trial yet"
    )
    # A study file's study in another store is read from that store by its name.
    status_hint = (
        f"--storage {storage} --study-name {shlex.quote(summary.study_name)}"
        if storage
        else study_hint
    )
    spent = f"; {format_duration(summary.spent_seconds)} spent"
    if summary.budget is not None:
        spent += f" of a {format_duration(summary.budget)} budget"
    print(
        f"Study {summary.study_name!r}: {summary.finished} finished, "
        f"{summary.failed} failed{spent}; {best}.\n"
        f"Inspect: hpo status {status_hint}"
    )
    if summary.stopped_by_failures:
        print(f"error: search stopped: {summary.stopped_by_failures}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.search`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("search", argv)


if __name__ == "__main__":
    sys.exit(main())
