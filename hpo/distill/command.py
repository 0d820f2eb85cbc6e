"""Distil an ensemble into one fast model: train it on the ensemble's soft labels, test it once.

The `hpo distill` command (also `python -m hpo.distill`).

Command line::

    hpo distill --ensemble ensembles/imdb-top5 [--family ngram]
        [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--max-epochs N] [--latency-examples 1000] [--repeats 5] [--cross-fit K]
        [--label-weight W] [--augment N] [--warm-start] [--refit] [--max-latency 1/3]
        [--out DIR] [--data PATH]
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.command_options import DATA_HELP, add_study_arguments, positive_int
from hpo.distill.build import (
    DISTILLED_DIR,
    LATENCY_EXAMPLES,
    LATENCY_REPEATS,
    MAX_LATENCY,
)
from hpo.distill.report import format_table

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--ensemble",
        required=True,
        type=Path,
        help="folder written by hpo ensemble (e.g. ensembles/imdb-top5)",
    )
    parser.add_argument(
        "--family",
        help="the student's model family (default: the family of the ensemble's fastest member)",
    )
    add_study_arguments(parser, ensemble=True)
    parser.add_argument(
        "--max-epochs",
        type=positive_int(" Use --max-epochs 12, say."),
        help="the most epochs the student trains (default the study's max_epochs)",
    )
    parser.add_argument(
        "--latency-examples",
        type=positive_int(f" Use --latency-examples {LATENCY_EXAMPLES}."),
        default=LATENCY_EXAMPLES,
        help=f"test inputs each model predicts per timed call (default {LATENCY_EXAMPLES})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int(f" Use --repeats {LATENCY_REPEATS}."),
        default=LATENCY_REPEATS,
        help=f"timed rounds, the median counts (default {LATENCY_REPEATS})",
    )
    parser.add_argument(
        "--cross-fit",
        type=cross_fit_folds,
        default=0,
        metavar="K",
        help="soft labels the members did not fit: train each member's configuration K times, "
        "each time without one K-th of the training rows, and label those rows with it "
        "(default 0: the members' own predictions)",
    )
    parser.add_argument(
        "--label-weight",
        type=label_weight,
        default=0.0,
        metavar="W",
        help="the true labels' share of the student's training targets: W x labels + (1 - W) x "
        "soft labels (default 0: the soft labels alone; 1: the labels alone)",
    )
    parser.add_argument(
        "--augment",
        type=augment_copies,
        default=0,
        metavar="N",
        help="the student also learns N altered copies of the training inputs (text: tokens "
        "masked or dropped, half the reviews cut to a window), labelled by the ensemble alone "
        "(default 0)",
    )
    parser.add_argument(
        "--warm-start",
        action="store_true",
        help="the student starts from the weights of the trial whose parameters it takes (its "
        "best epoch, at that epoch's learning rate) instead of from scratch",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="once early stopping has chosen the student's epoch count, train it again from "
        "scratch on the training and validation inputs (the ensemble's soft labels on both) for "
        "that many epochs, and test and export that model",
    )
    parser.add_argument(
        "--max-latency",
        type=latency_share,
        default=MAX_LATENCY,
        metavar="SHARE",
        help="the student takes the parameters of its family's best member by validation among "
        "those whose latency is at most SHARE of the ensemble's (its members' sum; default "
        "1/3), else of the family's fastest member",
    )
    parser.add_argument(
        "--out", type=Path, help=f"output folder (default <ensemble>/{DISTILLED_DIR})"
    )
    parser.add_argument("--data", help=DATA_HELP)


def cross_fit_folds(value: str) -> int:
    """`--cross-fit K`: 0, or 2 folds or more."""
    try:
        folds = int(value)
    except ValueError:
        folds = -1
    if folds == 0 or folds >= 2:
        return folds
    import argparse

    raise argparse.ArgumentTypeError(
        f"--cross-fit takes 0 (off) or a number of folds of 2 or more, not {value!r}; "
        f"use --cross-fit 2, say."
    )


def augment_copies(value: str) -> int:
    """`--augment N`: 0 or more copies."""
    try:
        copies = int(value)
    except ValueError:
        copies = -1
    if copies >= 0:
        return copies
    import argparse

    raise argparse.ArgumentTypeError(
        f"--augment takes a number of altered copies, 0 (off) or more, not {value!r}; use "
        f"--augment 2, say."
    )


def latency_share(value: str) -> float:
    """`--max-latency SHARE`: a positive number (a fraction like 1/3 too)."""
    try:
        share = float(Fraction(value))
    except (ValueError, ZeroDivisionError, OverflowError):
        share = -1.0
    if 0.0 < share < math.inf:
        return share
    import argparse

    raise argparse.ArgumentTypeError(
        f"--max-latency takes a positive share of the ensemble's latency, not {value!r}; use "
        f"--max-latency 1/3, say."
    )


def label_weight(value: str) -> float:
    """`--label-weight W`: a number from 0 to 1."""
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if 0.0 <= weight <= 1.0:
        return weight
    import argparse

    raise argparse.ArgumentTypeError(
        f"--label-weight takes a number from 0 (soft labels only) to 1 (true labels only), not "
        f"{value!r}; use --label-weight 0.5, say."
    )


def run(args: argparse.Namespace) -> int:
    """Distils the ensemble and prints the student beside the ensemble and its best member."""
    from hpo import api

    result = api.distill(
        args.ensemble,
        args.study,
        storage=args.storage,
        study_name=args.study_name,
        family=args.family,
        max_latency=args.max_latency,
        augment=args.augment,
        cross_fit=args.cross_fit,
        label_weight=args.label_weight,
        warm_start=args.warm_start,
        refit=args.refit,
        max_epochs=args.max_epochs,
        out_dir=args.out,
        data=args.data,
        latency_examples=args.latency_examples,
        repeats=args.repeats,
        progress=lambda line: print(line, flush=True),
    )
    print(f"\n{format_table(result.report)}\nReport and ensemble.keras in {result.out_dir}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.distill`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("distill", argv)
