"""The `hpo` command: one place that parses, configures logging and turns errors into exit codes.

    hpo search | ensemble | export | predict | distill | status | report | dashboard [--verbose] ...

Each command is a module with `add_arguments(parser)` and `run(args) -> int` (see `MODULES`);
`python -m hpo.X` runs the same code through `run_module`. Unless `--verbose` (or
HPO_VERBOSE=1) is given, TensorFlow's C++ start-up lines (oneDNN notices, CUDA probing) are kept
off the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import importlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from hpo import _stop as stop
from hpo._env import VERBOSE_VAR, env_flag
from hpo._output import dropped, usable_output
from hpo._warnings import warnings_not_errors
from hpo.errors import HpoError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["COMMANDS", "build_parser", "in_command", "main", "quiet_tensorflow", "run_module"]

# Each command and the module that implements it.
MODULES = {
    "search": "hpo.search.command",
    "ensemble": "hpo.ensemble.command",
    "export": "hpo.ensemble.export_command",
    "predict": "hpo.ensemble.predict",
    "distill": "hpo.distill.command",
    "status": "hpo.inspection.status",
    "report": "hpo.inspection.report",
    "dashboard": "hpo.inspection.dashboard",
    "gc": "hpo.artifacts",
    "storage-proxy": "hpo.search.proxy",
}
COMMANDS = tuple(MODULES)


def module_entry(name: str) -> str:
    """What `python -m` runs for a command: `hpo.<name>`, or its module for storage-proxy."""
    return MODULES[name] if "-" in name else f"hpo.{name}"


# Whether this process runs an `hpo` command (`_run`): its messages then name the command's
# flags, and otherwise what a Python caller passes. The processes a command starts (a search's
# other workers, trials) learn it from the environment (`IN_COMMAND_VAR`).
_IN_COMMAND = False
IN_COMMAND_VAR = "HPO_IN_COMMAND"


def in_command() -> bool:
    """Whether this process runs an `hpo` command, or was started by one, rather than a Python
    session calling hpo."""
    return _IN_COMMAND or os.environ.get(IN_COMMAND_VAR) == "1"


class Command(Protocol):
    """What a command module provides."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hpo` console script; returns the exit code."""
    _usable_output()
    words = sys.argv[1:] if argv is None else list(argv)
    # Only the command being run is imported (its flags parsed): `hpo status` need not load
    # what `hpo ensemble` plots with.
    named = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(only=named if named in MODULES else None).parse_args(words)
    return _run(_command(args.command), args)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a flag must be spelled out (`--n-trial` was taken as
    `--n-trials`), and an error is one line that names the problem and the fix, as hpo's own
    errors are: a flag unknown to the command says which of its flags is nearest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._words: list[str] = []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        command = self.prog
        if message.startswith("unrecognized arguments: "):
            given = message.removeprefix("unrecognized arguments: ").split()
            flag = next((word for word in given if word.startswith("-")), given[0])
            command, known = self._flags_of(self._words)
            near = difflib.get_close_matches(flag.split("=")[0], known, n=1)
            message = f"unknown argument {flag}" + (f" (did you mean {near[0]}?)" if near else "")
        message = message.rstrip(".")
        self.exit(2, f"{command}: error: {message}. {command} --help lists what it takes.\n")

    def _flags_of(self, words: list[str]) -> tuple[str, list[str]]:
        """The command the words name (or this parser's) and the flags it takes."""
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                named = next((w for w in words if w in action.choices), None)
                if named is not None:
                    parser = action.choices[named]
        flags = [f for a in parser._actions for f in a.option_strings if f.startswith("--")]
        return parser.prog, flags


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `hpo` command's parser; parsing runs nothing.

    Args:
        only: The command whose flags it parses: its module alone is imported, the others are
            only names (nothing shows their help). None: every command's flags and summary.
    """
    parser = _Parser(
        prog="hpo", description="Hyperparameter search and ensembling for Keras, on Optuna."
    )
    _add_verbose(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            commands.add_parser(name)
            continue
        module = _command(name)
        summary = _summary(module)
        sub = commands.add_parser(name, help=summary, description=summary)
        _add_verbose(sub)
        module.add_arguments(sub)
    return parser


def run_module(name: str, argv: Sequence[str] | None = None) -> int:
    """Runs one command as `python -m hpo.<name>`; returns the exit code."""
    _usable_output()
    module = _command(name)
    parser = _Parser(prog=f"python -m {module_entry(name)}", description=_summary(module))
    _add_verbose(parser)
    module.add_arguments(parser)
    return _run(module, parser.parse_args(argv))


def _run(module: Command, args: argparse.Namespace) -> int:
    global _IN_COMMAND
    _IN_COMMAND = True
    before = os.environ.get(IN_COMMAND_VAR)
    os.environ[IN_COMMAND_VAR] = "1"
    try:
        return _run_command(module, args)
    finally:
        _IN_COMMAND = False  # a Python session that ran a command in-process (tests) goes on
        if before is None:
            os.environ.pop(IN_COMMAND_VAR, None)
        else:
            os.environ[IN_COMMAND_VAR] = before


def _run_command(module: Command, args: argparse.Namespace) -> int:
    warnings_not_errors()
    try:
        verbose = bool(getattr(args, "verbose", False)) or env_flag(VERBOSE_VAR)
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if verbose:
        os.environ[VERBOSE_VAR] = "1"
    _configure_logging(verbose)
    try:
        with _stops_remembered():
            # Commands load Keras themselves, on their study's backend (`hpo.backend`).
            return module.run(args)
    except KeyboardInterrupt as exc:
        if verbose:
            raise
        # `hpo search` says what became of its trials itself; the other commands put what they
        # write in place whole or not at all (`hpo.ensemble.output_folder.publish`).
        how = f" ({exc})" if str(exc) else ""
        print(
            f"\ninterrupted{how}: nothing half-written was left in place. Run the same command "
            "again.",
            file=sys.stderr,
        )
        return 130
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader of the output left (`hpo status --json | head`): stop writing, quietly,
        # with the exit code of a process that SIGPIPE ended, as a C program's would be.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        # A path the user gave that cannot be read or written: a folder where a file goes,
        # a missing folder, no permission. Other OS errors keep their traceback.
        if verbose or exc.filename is None or exc.errno not in _PATH_ERRNOS:
            raise
        print(f"error: {_path_error(exc)}", file=sys.stderr)
        return 2


def _usable_output() -> None:
    """Makes standard output and error take whatever hpo prints.

    A stream started closed (`2>&-`, some daemons and cron wrappers) writes to /dev/null, as
    the shell asked (`hpo._output.usable_output`). A character the stream's encoding cannot
    show (a review's 日本 in a latin-1 locale, or PYTHONIOENCODING=ascii) is written escaped,
    as Python writes it to stderr, rather than ending the command halfway through its output.
    """
    usable_output()
    for name in ("stdout", "stderr"):
        reconfigure = getattr(getattr(sys, name), "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def _stops_remembered() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a scheduler's stop, `kill`) raise KeyboardInterrupt inside, and are
    remembered (`hpo._stop`) where a library swallows it; Ctrl-C's handler, and the stop, are
    Python's again after, for what a notebook or a test runs next."""
    stop.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGTERM as Ctrl-C: one line and exit code 130 in `_run_command`.
    signal.signal(signal.SIGTERM, stop.interrupt)
    ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ctrl_c:  # not where the caller set its own
        signal.signal(signal.SIGINT, stop.interrupt)
    try:
        yield
    finally:
        if ctrl_c:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        stop.clear()


_PATH_ERRNOS = {
    errno.EACCES,
    errno.EEXIST,
    errno.EISDIR,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EPERM,
    errno.EROFS,
}


def _path_error(exc: OSError) -> str:
    """An OS error on a path, with what to check."""
    paths = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return (
        f"{exc.strerror}: {paths}. Check that path: a file where a folder goes (or the other way "
        f"round), a folder that is missing, or one this user cannot write. --verbose shows where."
    )


def _configure_logging(verbose: bool) -> None:
    import optuna

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # TensorFlow's Python warnings too: retracing notices, as batches cut to their longest
        # text come in many shapes, which is intended (`hpo.data.batching`).
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_tensorflow(verbose: bool = False) -> Iterator[None]:
    """Sends the process's stderr to /dev/null while TensorFlow's C++ libraries load.

    TensorFlow prints its start-up notices from C++ before any log level applies, so only the
    file descriptor itself can silence them. Python-level errors raised inside still propagate.
    """
    if verbose:
        yield
        return
    try:
        with dropped(2):
            yield
    finally:
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:
            pass


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also print TensorFlow's and Optuna's informational logs",
    )


def _command(name: str) -> Command:
    return importlib.import_module(MODULES[name])


def _summary(module: Command) -> str:
    # Python run with -OO (PYTHONOPTIMIZE=2, set in some container images) drops docstrings:
    # the commands then go without their summaries rather than fail to start.
    lines = (module.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
