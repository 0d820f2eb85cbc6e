"""What refitting the ensemble's members on training + validation data buys on the test set.

AutoGluon's `refit_full`, as `hpo ensemble --refit` does it (`hpo.ensemble.refit`): the
ensemble chosen and weighted on validation predictions (`hpo.ensemble.build.fit_ensemble`),
then each weighted member trained again from scratch on training + validation data for its
trial's best epoch count, with the same weights and temperature. Both ensembles, and the best
member before and after, are scored once on the test set, side by side. Unlike the command,
this records nothing: the study is only read.

Usage:
    python benchmarks/bench_refit.py [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--data PATH] [--top 5] [--json rows.json]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from _common import (
    TOP,
    benchmark_parser,
    markdown_table,
    run_main,
    scores,
    write_json,
)

from hpo import metrics
from hpo.budget import format_duration
from hpo.command_options import open_study
from hpo.ensemble.build import fit_ensemble, refit_ensemble

if TYPE_CHECKING:
    import numpy as np

KEYS = ("accuracy", "log_loss", "ece")


def _say(message: str, *args: object) -> None:
    print(message % args, flush=True)


def score(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Test accuracy, log-loss and ECE."""
    summary = metrics.summary(y, probabilities)
    return {key: float(summary[key]) for key in KEYS}


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--storage", help="storage URL, with --study-name, instead of --study")
    parser.add_argument("--study-name", help="study name, with --storage")
    parser.add_argument("--top", type=int, default=TOP, help=f"the most members (default {TOP})")
    parser.add_argument("--json", type=Path, help="also write the measured rows to this file")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_file = None if args.storage or args.study_name else args.study
    config, study = open_study(study_file, args.storage, args.study_name)
    with tempfile.TemporaryDirectory(prefix="hpo-refit-") as scratch:
        fitted = fit_ensemble(config, study, Path(scratch), top=args.top, data=args.data)
        refit = refit_ensemble(config, fitted, Path(scratch), _say)
        task, members = fitted.task, fitted.members
        # The test set, read once, for the final evaluation of both.
        test = task.load_test(config, str(fitted.source), fitted.data_folder)
        original = fitted.member_predictions(test.x)
        refitted = refit.member_predictions(test.x)
    best = max(range(len(members)), key=lambda i: members[i].trial.value or 0.0)
    train_labels = task.trial_data(fitted.data_folder, members[0].trial.params).y_train
    rows: dict[str, Any] = {
        "original": {
            "ensemble": score(test.y, fitted.choice.predict(original)),
            "best_member": score(test.y, original[best]),
            "train_examples": len(train_labels),
        },
        "refit": {
            "ensemble": score(test.y, fitted.choice.predict(refitted)),
            "best_member": score(test.y, refitted[best]),
            "train_examples": refit.refitted[0]["examples"],
            "seconds": round(sum(r["seconds"] for r in refit.refitted), 1),
            "members": {
                r["trial"]: {"epochs": r["epochs"], "seconds": r["seconds"]} for r in refit.refitted
            },
        },
    }
    if args.json:
        write_json(args.json, rows)
    before, after = rows["original"], rows["refit"]
    trial = members[best].trial
    print(f"\nstudy {config.name!r}, ensemble of {len(refit.refitted)} weighted member(s):")
    print(
        markdown_table(
            ["test accuracy / log-loss / ECE", "as searched", "refit on training + validation"],
            [
                [
                    "ensemble (same weights)",
                    scores(before["ensemble"], KEYS),
                    scores(after["ensemble"], KEYS),
                ],
                [
                    f"best member (trial {trial.number}, {trial.params['family']})",
                    scores(before["best_member"], KEYS),
                    scores(after["best_member"], KEYS),
                ],
                ["training examples", before["train_examples"], after["train_examples"]],
                ["refit training time", "", format_duration(after["seconds"])],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
