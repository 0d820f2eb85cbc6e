"""How well the epoch-time estimate predicts, replayed on a finished study's own trials.

For every trial that measured an epoch, the calibration is rebuilt from the trials that had
finished when it started (what its worker knew), the trial's prior seconds per epoch scaled by
it, and the error |estimate / actual - 1| taken; printed side by side in one run:

- `recorded`: the estimate the trial stored when it ran (whatever hpo's version was then);
- `median`: every earlier trial of the family weighing the same (hpo before the recency rule);
- `recent, half-life H`: `hpo.cost.calibration` with `HALF_LIFE = H` trials (hpo's is marked);
- `each family's own rates (hpo's)` and `the default rates for every family`: hpo's calibration
  over priors recomputed from the features a trial stored (`cost_features`), or for older trials
  from its recorded prior, operations and weights, at each family's `PRIOR_RATES` (what hpo
  does) or at `hpo.cost.DEFAULT_RATES` for all;
- `default rates with P s per weight per step`: the default rates with the per-weight step
  cost `P` (the default's is marked), for every family;
- `default rates with E output values per s`: likewise with `E` output values per second ("no
  value term": the prior before it counted layer outputs). A trial recorded before its features
  held the output values counts none, unless `--rebuild` builds its model again from its
  parameters (the study's own task and families; no training) to count them.

Each family's rates are fitted across studies by `bench_rates.py`.

Usage:
    python benchmarks/bench_clock.py --study studies/imdb.toml [--half-lives 2 4 8 16]
        [--param-step-s 2e-9 1e-8] [--elements-per-s 1.5e8 3e8] [--rebuild]
    python benchmarks/bench_clock.py --storage sqlite:///PATH/study.db --study-name NAME
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import statistics
import sys
from typing import TYPE_CHECKING, NamedTuple

from hpo import cost
from hpo.command_options import add_study_arguments, open_study
from hpo.contract import Attr
from hpo.tasks import study_task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from optuna.trial import FrozenTrial

    from hpo.tasks import Task


# The prior's constants before trials stored their features (what older priors were computed with).
RECORDED_WITH = {"flops_per_s": 150e9, "step_s": 0.01, "param_step_s": 2e-9}


class Work(NamedTuple):
    """What a trial's epoch computes, as the prior counts it."""

    flops: float  # operations per epoch
    steps: float
    params: float
    elements: float = 0.0  # layer output values per epoch


def work_of(trial: FrozenTrial) -> Work | None:
    """The trial's epoch as the prior saw it: its stored features, or for a trial from before
    they were stored, the steps solved from its recorded prior (`RECORDED_WITH`), operations and
    weights; None for a trial the prior did not cost."""
    attrs = trial.user_attrs
    if stored := attrs.get(Attr.COST_FEATURES):
        features = cost.CostFeatures(**stored)
        return Work(
            features.flops_per_epoch, features.steps, features.params, features.elements_per_epoch
        )
    prior, gflop, params = (
        attrs.get(Attr.PRIOR_EPOCH_SECONDS),
        attrs.get(Attr.GFLOP_PER_EPOCH),
        attrs.get(Attr.PARAMS_COUNT),
    )
    if not prior or gflop is None or not params:
        return None
    flops = gflop * 1e9
    per_step = RECORDED_WITH["step_s"] + params * RECORDED_WITH["param_step_s"]
    return Work(flops, max(0.0, prior - flops / RECORDED_WITH["flops_per_s"]) / per_step, params)


def with_prior(
    trials: Sequence[FrozenTrial], rates: Callable[[str], cost.Rates]
) -> list[FrozenTrial]:
    """Copies of the trials whose recorded prior is recomputed at `rates(family)`."""
    copies = []
    for trial in trials:
        work = work_of(trial)
        if work is not None:
            trial = copy.deepcopy(trial)
            family_rates = rates(str(trial.user_attrs.get(Attr.FAMILY)))
            trial.user_attrs[Attr.PRIOR_EPOCH_SECONDS] = family_rates.seconds(
                work.flops, work.elements, work.steps, work.params
            )
        copies.append(trial)
    return copies


def rebuilt(trials: Sequence[FrozenTrial], task: Task) -> list[FrozenTrial]:
    """Copies of the trials whose stored features lack the output values, with them counted on
    the model built again from the trial's parameters (`task`'s family; nothing trains)."""
    import keras

    copies = []
    for trial in trials:
        stored = trial.user_attrs.get(Attr.COST_FEATURES)
        if stored and not stored.get("elements_per_example"):
            # The output layer's width barely changes the count: two classes where not recorded.
            params = {"classes": 2, **trial.params}
            model = task.families[params["family"]].build(params)
            work = cost.example_work(model, task.cost_shape(params))
            keras.backend.clear_session()
            trial = copy.deepcopy(trial)
            trial.user_attrs[Attr.COST_FEATURES] = {**stored, "elements_per_example": work.elements}
        copies.append(trial)
    return copies


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
    parser.add_argument(
        "--param-step-s",
        type=float,
        nargs="+",
        default=[cost.PRIOR_PARAM_STEP_S * k for k in (0.2, 0.5, 1, 2, 5)],
        help="per-weight step costs to recompute the default rates' prior with (default: its "
        "own, and around it)",
    )
    parser.add_argument(
        "--elements-per-s",
        type=float,
        nargs="+",
        default=[cost.PRIOR_ELEMENTS_PER_S * k for k in (0.5, 1, 2)],
        help="output values per second to recompute the default rates' prior with (default: "
        "its own, and around it; the prior without them is always shown)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="count the output values of trials recorded before they were stored, by building "
        "their models again (the study's own task; nothing trains)",
    )
    args = parser.parse_args()
    config, study = open_study(args.study, args.storage, args.study_name)
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(Attr.FAMILY)]
    if args.rebuild:
        trials = rebuilt(trials, study_task(config))
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
    task = study_task(config)

    def shipped(family: str) -> cost.Rates:
        return cost.family_rates(task.families.get(family))

    for name, rates in (
        ("each family's own rates (hpo's)", shipped),
        ("the default rates for every family", lambda _: cost.DEFAULT_RATES),
    ):
        print(_row(name, replay(with_prior(trials, rates), cost.calibration)))
    default = cost.DEFAULT_RATES
    for param_step_s in args.param_step_s:
        mark = " (default)" if math.isclose(param_step_s, default.param_step_s) else ""
        changed = dataclasses.replace(default, param_step_s=param_step_s)
        errors = replay(with_prior(trials, lambda _, r=changed: r), cost.calibration)
        print(_row(f"default rates with {param_step_s:.2g} s per weight per step{mark}", errors))
    for elements_per_s in [None, *args.elements_per_s]:
        changed = dataclasses.replace(
            default, element_s=1 / elements_per_s if elements_per_s else 0.0
        )
        errors = replay(with_prior(trials, lambda _, r=changed: r), cost.calibration)
        if elements_per_s is None:
            name = "default rates with no value term"
        else:
            mark = " (default)" if math.isclose(1 / elements_per_s, default.element_s) else ""
            name = f"default rates with {elements_per_s:.2g} output values per s{mark}"
        print(_row(name, errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
