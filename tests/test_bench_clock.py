"""benchmarks/bench_clock.py: the epoch estimate replayed with what each trial's worker knew."""

from __future__ import annotations

import datetime
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest

from hpo import cost

if TYPE_CHECKING:
    from hpo.cost import Calibration

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_clock.py"
spec = importlib.util.spec_from_file_location("bench_clock", SCRIPT)
assert spec is not None and spec.loader is not None
bench_clock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_clock)

T0 = datetime.datetime(2026, 1, 1)
# What a trial stores as `cost_features` (`hpo.cost.CostFeatures`), before output values counted.
FEATURES = {
    "flops_per_example": 2e6,
    "train_examples": 1000.0,
    "val_examples": 200.0,
    "steps": 32,
    "params": 4_000_000,
}


def _trial(start: int, end: int, family: str, actual: float) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        value=0.5,
        user_attrs={
            "family": family,
            "precision": "float32",
            "prior_epoch_seconds": 10.0,
            "epoch_seconds": actual,
        },
    )
    trial.datetime_start = T0 + datetime.timedelta(minutes=start)
    trial.datetime_complete = T0 + datetime.timedelta(minutes=end)
    return trial


def test_replay_calibrates_each_trial_on_the_trials_finished_before_it_started() -> None:
    trials = [
        _trial(0, 5, "conv1d", 20.0),  # nothing finished before: the prior alone (10 s)
        _trial(1, 9, "conv1d", 40.0),  # started before trial 0 finished: still the prior
        _trial(6, 8, "conv1d", 30.0),  # after trial 0: ratio 2 -> 20 s
        _trial(10, 12, "ngram", 10.0),  # no ngram yet: all conv1d (2, 4, 3) -> median 3 -> 30 s
    ]
    seen: list[int] = []

    def calibrate(before: list[optuna.trial.FrozenTrial]) -> Calibration:
        seen.append(len(before))
        return bench_clock.median_calibration(before)

    errors = bench_clock.replay(trials, calibrate)
    assert seen == [0, 0, 1, 3]
    assert errors == pytest.approx([abs(10 / 20 - 1), abs(10 / 40 - 1), abs(20 / 30 - 1), 2.0])


def test_the_median_reference_is_the_plain_median_of_each_family_and_of_all() -> None:
    trials = [_trial(0, 1, "conv1d", a) for a in (20.0, 40.0)] + [_trial(0, 1, "ngram", 90.0)]
    ratios = bench_clock.median_calibration(trials).ratios
    assert ratios == {"conv1d/float32": 3.0, "ngram/float32": 9.0, "*": 4.0}


def test_a_prior_is_recomputed_from_stored_features_or_solved_from_an_older_record() -> None:
    stored = _trial(0, 1, "ngram", 30.0)
    stored.user_attrs["cost_features"] = FEATURES
    work = bench_clock.work_of(stored)
    assert work == (2e6 * (3 * 1000 + 200), 32, 4_000_000, 0.0)
    rates = cost.Rates(param_step_s=5e-8)
    expected = 2e6 * 3200 / cost.PRIOR_FLOPS_PER_S + 32 * (cost.PRIOR_STEP_S + 4_000_000 * 5e-8)
    assert rates.seconds(work.flops, work.elements, work.steps, work.params) == pytest.approx(
        expected
    )

    # Before features were stored: the steps are solved from the prior as it was recorded.
    recorded = bench_clock.RECORDED_WITH
    old = _trial(0, 1, "ngram", 30.0)
    old.user_attrs.update(
        prior_epoch_seconds=2e6 * 3200 / recorded["flops_per_s"]
        + 32 * (recorded["step_s"] + 4_000_000 * recorded["param_step_s"]),
        gflop_per_epoch=2e6 * 3200 / 1e9,
        params_count=4_000_000,
    )
    solved = bench_clock.work_of(old)
    assert solved is not None and solved.steps == pytest.approx(32)
    (copy,) = bench_clock.with_prior([old], lambda _: rates)
    assert copy.user_attrs["prior_epoch_seconds"] == pytest.approx(expected)
    assert old.user_attrs["prior_epoch_seconds"] != copy.user_attrs["prior_epoch_seconds"]
    # A trial the prior did not cost keeps what it had.
    uncosted = optuna.trial.create_trial(value=0.5, user_attrs={"family": "mine"})
    assert bench_clock.work_of(uncosted) is None
    assert bench_clock.with_prior([uncosted], lambda _: rates)[0] is uncosted


def test_each_trial_is_repriced_at_its_own_familys_rates() -> None:
    conv, ngram = _trial(0, 1, "conv1d", 30.0), _trial(0, 1, "ngram", 30.0)
    for trial in (conv, ngram):
        trial.user_attrs["cost_features"] = {**FEATURES, "elements_per_example": 5e4}
    no_values = cost.Rates(element_s=0.0)
    by_family = {"conv1d": cost.DEFAULT_RATES, "ngram": no_values}
    conv_copy, ngram_copy = bench_clock.with_prior([conv, ngram], by_family.__getitem__)
    conv_prior = conv_copy.user_attrs["prior_epoch_seconds"]
    added = conv_prior - ngram_copy.user_attrs["prior_epoch_seconds"]
    assert added == pytest.approx(5e4 * 3200 / cost.PRIOR_ELEMENTS_PER_S)
    assert ngram_copy.user_attrs["prior_epoch_seconds"] == pytest.approx(
        2e6 * 3200 / cost.PRIOR_FLOPS_PER_S + 32 * (cost.PRIOR_STEP_S + 4_000_000 * 5e-9)
    )
