"""Each family's prior rates, fitted on finished studies and tested on a study left out.

The prior prices an epoch as operations, output values, optimizer steps and weights updated per
step, each at a rate (`hpo.cost.Rates`). What a unit of each costs differs between families (a
hashed n-gram table's epoch is its updates, a convolution's its operations), so one set of rates
for all misprices some families against others, and the calibration of each family by a single
ratio cannot undo it within the family.

For each family, the four rates are fitted by non-negative least squares on relative error (each
trial's prior as close to its measured seconds per epoch as can be, every trial weighing the same)
over the trials of the other studies. Then the study left out is replayed with hpo's calibration
(as `bench_clock.py` replays one) under three priors, side by side:

- `default rates`: `hpo.cost.DEFAULT_RATES` for every family;
- `fitted without it`: the rates fitted on the other studies (a family they never ran keeps the
  default);
- `hpo's rates`: each family's `PRIOR_RATES`, as hpo ships them (fitted on studies that may
  include this one: an in-sample reference).

Studies that ran the same trials (same seed, same code: `--same-trials A B`) are left out
together, so a study is never tested on rates fitted on its twin. Last it prints the rates
fitted on every study, to paste into each family's module as `PRIOR_RATES`.

Usage:
    python benchmarks/bench_rates.py --study LABEL sqlite:///PATH/study.db NAME [--study ...]
        [--same-trials LABEL LABEL] [--rebuild studies/imdb.toml]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from typing import TYPE_CHECKING

import numpy as np
import optuna
from bench_clock import rebuilt, replay, with_prior, work_of

from hpo import cost
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.tasks import study_task

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from optuna.trial import FrozenTrial

# The units `hpo.cost.Rates` prices, in its fields' order.
FIELDS = ("flop_s", "element_s", "step_s", "param_step_s")


def units(trial: FrozenTrial) -> np.ndarray | None:
    """The trial's epoch in the prior's units (`FIELDS`); None if the prior did not cost it."""
    work = work_of(trial)
    if work is None:
        return None
    return np.array([work.flops, work.elements, work.steps, work.steps * work.params])


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin |a x - b| over x >= 0, exactly: every subset of the columns solved by least
    squares, the best whose solution is non-negative (a handful of columns: 2^4 - 1 solves)."""
    best, best_residual = np.zeros(a.shape[1]), float(np.sum(b**2))
    for size in range(1, a.shape[1] + 1):
        for columns in itertools.combinations(range(a.shape[1]), size):
            x, *_ = np.linalg.lstsq(a[:, columns], b, rcond=None)
            if np.any(x < 0):
                continue
            residual = float(np.sum((a[:, columns] @ x - b) ** 2))
            if residual < best_residual:
                best, best_residual = np.zeros(a.shape[1]), residual
                best[list(columns)] = x
    return best


def fit_rates(trials: Sequence[FrozenTrial]) -> dict[str, cost.Rates]:
    """Each family's rates: prior / actual as close to 1 as can be over its timed trials."""
    rows: dict[str, list[np.ndarray]] = {}
    for trial in trials:
        actual = trial.user_attrs.get(Attr.EPOCH_SECONDS)
        work = units(trial)
        if actual and work is not None:
            rows.setdefault(str(trial.user_attrs[Attr.FAMILY]), []).append(work / actual)
    default = np.array([getattr(cost.DEFAULT_RATES, f) for f in FIELDS])
    fitted = {}
    for family, family_rows in rows.items():
        # In units of the default rates, so that the columns are of like size.
        scaled = np.array(family_rows) * default
        x = nonnegative_least_squares(scaled, np.ones(len(scaled)))
        fitted[family] = cost.Rates(**dict(zip(FIELDS, (x * default).tolist(), strict=True)))
    return fitted


def _lookup(rates: Mapping[str, cost.Rates]) -> Callable[[str], cost.Rates]:
    return lambda family: rates.get(family, cost.DEFAULT_RATES)


def held_out(
    studies: Mapping[str, Sequence[FrozenTrial]],
    twins: Sequence[set[str]],
    shipped: Callable[[str], cost.Rates],
) -> dict[str, dict[str, list[float]]]:
    """For each study: its replayed errors under the default rates, under the rates fitted on
    the studies other than it and its twins, and under `shipped`."""
    results = {}
    for label, trials in studies.items():
        left_out = set().union(*(group for group in twins if label in group), {label})
        others = [t for other, ts in studies.items() if other not in left_out for t in ts]
        results[label] = {
            "default rates": replay(
                with_prior(trials, lambda _: cost.DEFAULT_RATES), cost.calibration
            ),
            "fitted without it": replay(
                with_prior(trials, _lookup(fit_rates(others))), cost.calibration
            ),
            "hpo's rates": replay(with_prior(trials, shipped), cost.calibration),
        }
    return results


def _median(errors: Sequence[float]) -> str:
    return f"{statistics.median(errors):.1%}" if errors else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--study",
        nargs=3,
        action="append",
        required=True,
        metavar=("LABEL", "STORAGE", "NAME"),
        help="a finished study: a label for the table, its storage URL and its study name",
    )
    parser.add_argument(
        "--same-trials",
        nargs="+",
        action="append",
        default=[],
        metavar="LABEL",
        help="studies that ran the same trials, left out together",
    )
    parser.add_argument(
        "--config",
        default="studies/imdb.toml",
        help="the study file whose task and families the studies ran (default: %(default)s)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="count the output values of trials recorded before they were stored, by building "
        "their models again (nothing trains)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = study_task(load_study_config(args.config))
    studies = {}
    for label, storage, name in args.study:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(Attr.FAMILY)]
        studies[label] = rebuilt(trials, task) if args.rebuild else trials
    unknown = {label for group in args.same_trials for label in group} - set(studies)
    if unknown:
        parser.error(f"--same-trials names no --study labelled {', '.join(sorted(unknown))}")

    def shipped(family: str) -> cost.Rates:
        return cost.family_rates(task.families.get(family))

    results = held_out(studies, [set(g) for g in args.same_trials], shipped)
    columns = ["default rates", "fitted without it", "hpo's rates"]
    print("Median absolute error of the epoch estimate, each study replayed held out:")
    print(f"| study | trials | {' | '.join(columns)} |")
    print(f"| --- | ---: |{' ---: |' * len(columns)}")
    for label, errors in results.items():
        n = len(errors["default rates"])
        print(f"| {label} | {n} | {' | '.join(_median(errors[c]) for c in columns)} |")
    pooled = {c: [e for errors in results.values() for e in errors[c]] for c in columns}
    n = len(pooled["default rates"])
    print(f"| all, pooled | {n} | {' | '.join(_median(pooled[c]) for c in columns)} |")

    print("\nRates fitted on every study (seconds per unit; x the default's):")
    default = cost.DEFAULT_RATES
    for family, rates in sorted(fit_rates([t for ts in studies.values() for t in ts]).items()):
        fields = ", ".join(f"{f}={getattr(rates, f):.3g}" for f in FIELDS)
        times = " ".join(f"{getattr(rates, f) / getattr(default, f):.2f}" for f in FIELDS)
        print(f"  {family}: Rates({fields})   x default: {times}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
