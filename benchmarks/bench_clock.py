"""How well the epoch-time estimate predicts, replayed on a finished study's own trials.

For every trial that measured an epoch, the calibration is rebuilt from the trials that had
finished when it started (what its worker knew), the trial's prior seconds per epoch scaled by
it, and the error |estimate / actual - 1| taken; printed side by side in one run:

- `recorded`: the estimate the trial stored when it ran (whatever hpo's version was then);
- `median`: every earlier trial of the family weighing the same (hpo before the recency rule);
- `recent, half-life H`: `hpo.cost.calibration` with `HALF_LIFE = H` trials (hpo's is marked).

Usage:
    python benchmarks/bench_clock.py --study studies/imdb.toml [--half-lives 2 4 8 16]
    python benchmarks/bench_clock.py --storage sqlite:///PATH/study.db --study-name NAME
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import TYPE_CHECKING

from hpo import cost
from hpo.command_options import add_study_arguments, open_study
from hpo.contract import Attr

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from optuna.trial import FrozenTrial


def median_calibration(trials: Sequence[FrozenTrial]) -> cost.Calibration:
    """Before the recency rule: the median ratio of each family's trials, and of all of them."""
    ratios: dict[str, list[float]] = {}
    for trial in trials:
        attrs = trial.user_attrs
        prior, actual = attrs.get(Attr.PRIOR_EPOCH_SECONDS), attrs.get(Attr.EPOCH_SECONDS)
        if prior and actual:
            key = f"{attrs.get(Attr.FAMILY)}/{attrs.get(Attr.PRECISION)}"
            for k in (key, "*"):
                ratios.setdefault(k, []).append(actual / prior)
    return cost.Calibration(ratios={k: statistics.median(v) for k, v in ratios.items()})


def replay(
    trials: Sequence[FrozenTrial], calibrate: Callable[..., cost.Calibration]
) -> list[float]:
    """Each timed trial's error with the calibration its worker would have had."""
    errors = []
    for trial in trials:
        attrs = trial.user_attrs
        prior, actual = attrs.get(Attr.PRIOR_EPOCH_SECONDS), attrs.get(Attr.EPOCH_SECONDS)
        if not (prior and actual and trial.datetime_start):
            continue
        before = [
            t
            for t in trials
            if t.datetime_complete is not None and t.datetime_complete < trial.datetime_start
        ]
        scale = calibrate(before).ratios
        key = f"{attrs.get(Attr.FAMILY)}/{attrs.get(Attr.PRECISION)}"
        estimate = prior * scale.get(key, scale.get("*", 1.0))
        errors.append(abs(estimate / actual - 1))
    return errors


def _row(name: str, errors: Sequence[float]) -> str:
    if not errors:
        return f"| {name} | 0 | - | - |"
    within = sum(e <= 0.15 for e in errors) / len(errors)
    return f"| {name} | {len(errors)} | {statistics.median(errors):.1%} | {within:.0%} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_arguments(parser)
    parser.add_argument("--half-lives", type=float, nargs="+", default=[2, 4, 8, 16])
    args = parser.parse_args()
    _, study = open_study(args.study, args.storage, args.study_name)
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(Attr.FAMILY)]
    recorded = [
        abs(t.user_attrs[Attr.ESTIMATED_EPOCH_SECONDS] / t.user_attrs[Attr.EPOCH_SECONDS] - 1)
        for t in trials
        if t.user_attrs.get(Attr.ESTIMATED_EPOCH_SECONDS) and t.user_attrs.get(Attr.EPOCH_SECONDS)
    ]
    print(f"study {study.study_name}: {len(trials)} trials")
    print("| estimate | trials | median abs. error | within 15% |")
    print("| --- | ---: | ---: | ---: |")
    print(_row("recorded when the trial ran", recorded))
    print(_row("median of the family's trials", replay(trials, median_calibration)))
    shipped = cost.HALF_LIFE
    for half_life in args.half_lives:
        cost.HALF_LIFE = half_life
        mark = " (hpo's)" if half_life == shipped else ""
        print(_row(f"recent, half-life {half_life:g}{mark}", replay(trials, cost.calibration)))
    cost.HALF_LIFE = shipped
    return 0


if __name__ == "__main__":
    sys.exit(main())
