"""Weight the best trials into one model on validation, test it once, export it.

The `hpo ensemble` command (also `python -m hpo.ensemble`).

Command line::

    hpo ensemble --top 5 [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--pool 50] [--method caruana|score|uniform] [--no-calibrate] [--out DIR] [--data PATH]
        [--format savedmodel] [--format onnx] [--format litert]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.command_options import DATA_HELP, add_study_arguments, positive_int
from hpo.ensemble.report import format_table
from hpo.ensemble.serving import FORMATS, describe_exports
from hpo.ensemble.weighting import Method

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

from hpo.ensemble.build import DEFAULT_POOL

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--top",
        type=positive_int(" Use --top 5 for the five best trials."),
        default=5,
        help="the most members, and the plain ensemble's size: the K best trials (default 5)",
    )
    add_study_arguments(parser)
    parser.add_argument(
        "--pool",
        type=positive_int(" Use --pool 50 to choose among the 50 best trials."),
        default=DEFAULT_POOL,
        help=f"choose members among this many of the best trials (default {DEFAULT_POOL}, "
        "at least --top)",
    )
    parser.add_argument(
        "--method",
        choices=[m.value for m in Method],
        default=Method.CARUANA.value,
        help="how the plain top-K ensemble is weighted (default caruana)",
    )
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="export the weighted average without a temperature fitted on validation",
    )
    parser.add_argument(
        "--format",
        dest="formats",
        action="extend",
        nargs="+",
        choices=FORMATS,
        default=[],
        help="also export as a TensorFlow SavedModel (for TensorFlow Serving), ONNX or LiteRT, "
        "each checked in a process without hpo (one or more: --format savedmodel onnx); "
        "ensemble.keras is always written",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="after choosing members and weights on validation, train each weighted member "
        "again on training + validation data for its best epoch count, and evaluate and export "
        "those (one trial's training each)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default ensembles/<study>-top<K>)")
    parser.add_argument("--data", help=DATA_HELP)


def run(args: argparse.Namespace) -> int:
    """Builds, evaluates and exports the ensemble (`hpo.ensemble`), and prints its table."""
    from hpo.api import ensemble

    result = ensemble(
        args.study,
        storage=args.storage,
        study_name=args.study_name,
        top=args.top,
        pool=args.pool,
        method=args.method,
        calibrate=args.calibrate,
        formats=args.formats,
        out_dir=args.out,
        data=args.data,
        refit=args.refit,
    )
    report = result.report
    print(format_table(report))
    print(f"\n{summary_line(report)}\nReport, figure and ensemble.keras in {result.out_dir}/")
    if refit := report.get("refit"):
        searched = refit["searched_test"]
        print(
            f"Refitted on training + validation data: {len(refit['members'])} member(s) in "
            f"{sum(m['seconds'] for m in refit['members']):.0f} s; as searched the ensemble "
            f"scored accuracy {searched['accuracy']:.4f}, log-loss {searched['log_loss']:.4f}."
        )
    if args.formats:
        print("Exports, each loaded back and checked against the test predictions:")
        print("\n".join(describe_exports(report["export"])))
    if changed := report.get("test_data_changed"):
        # Repeated after the table, where it is read: the warning scrolled past above it.
        print(f"\nWarning: {changed['message']}")
    return 0


def summary_line(report: dict[str, Any]) -> str:
    """The ensemble's test scores and its gain over the best member, in one line."""
    gain = report["gain_over_best_member"]
    test = report["test"]["ensemble"]
    members = sum(m["weight"] > 0 for m in report["members"])
    # Refitted, the members also trained on the validation data; the best member (its trial's
    # checkpoint) did not: the line says which model the gain is over.
    searched = ", as searched" if report.get("refit") else ""
    return (
        f"Ensemble ({report['kept']}, {members} members) on {report['test_examples']} test "
        f"examples: accuracy {test['accuracy']:.4f} ({gain['accuracy']:+.4f} against the best "
        f"member{searched}), log-loss {test['log_loss']:.4f} ({gain['log_loss']:+.4f})."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.ensemble`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("ensemble", argv)
