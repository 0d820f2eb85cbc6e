from __future__ import annotations

import datetime
import statistics
import types

import keras
import optuna
import pytest
from keras import layers

from hpo import cost
from hpo.cost import CostFeatures, calibration, example_flops, example_work, weighted_median
from hpo.models import conv1d


def test_example_flops_counts_two_per_weight_per_position() -> None:
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(100, 4)(inputs)  # a lookup: no multiply-adds
    x = layers.Conv1D(6, 3, padding="same")(x)  # (3*4*6 + 6) weights at every position
    x = layers.GlobalMaxPooling1D()(x)
    outputs = layers.Dense(1)(x)  # 7 weights, once
    model = keras.Model(inputs, outputs)
    assert example_flops(model, (50,)) == 2 * (78 * 50 + 7)
    assert example_flops(model, (100,)) == 2 * (78 * 100 + 7)


def test_example_work_counts_every_layers_output_values_too() -> None:
    inputs = keras.Input(shape=(None,), dtype="int32")  # the input layer's: 1 per position
    x = layers.Embedding(100, 4)(inputs)  # 4 values per position
    x = layers.Conv1D(6, 3, padding="same")(x)  # 6 per position
    x = layers.Activation("relu")(x)  # no weights, but 6 values per position written
    x = layers.GlobalMaxPooling1D()(x)  # 6
    outputs = layers.Dense(1)(x)  # 1
    model = keras.Model(inputs, outputs)
    work = example_work(model, (50,))
    assert work.flops == 2 * (78 * 50 + 7)
    assert work.elements == (1 + 4 + 6 + 6) * 50 + 6 + 1


def test_output_values_add_to_the_prior_and_older_features_load_without_them() -> None:
    stored = {"flops_per_example": 1e9, "train_examples": 1000.0, "val_examples": 100.0}
    old = CostFeatures(**stored, steps=10, params=1000)  # as trials recorded them before
    assert old.elements_per_example == 0
    new = CostFeatures(**stored, steps=10, params=1000, elements_per_example=3e6)
    assert new.elements_per_epoch == 3e6 * (3 * 1000 + 100)
    added = new.prior_seconds() - old.prior_seconds()
    assert added == pytest.approx(new.elements_per_epoch / cost.PRIOR_ELEMENTS_PER_S)


def test_family_flops_grow_with_length_and_width() -> None:
    base = {**conv1d.DEFAULTS, "vocab_size": 1000, "seq_len": 100}
    small = example_flops(conv1d.build(base), (100,))
    assert example_flops(conv1d.build(base), (200,)) == pytest.approx(2 * small, rel=0.01)
    # One block on the embedding: twice the filters, twice the work.
    wide = example_flops(conv1d.build({**base, "filters": 256}), (100,))
    assert wide == pytest.approx(2 * small, rel=0.01)


def _trial(family: str, precision: str, prior: float, actual: float) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        value=0.5,
        user_attrs={
            "family": family,
            "precision": precision,
            "prior_epoch_seconds": prior,
            "epoch_seconds": actual,
        },
    )


def test_calibration_scales_the_prior_by_family_then_overall() -> None:
    trials = [
        _trial("conv1d", "float32", 10.0, 20.0),
        _trial("conv1d", "float32", 10.0, 30.0),
        _trial("sepconv1d", "float32", 10.0, 50.0),
        optuna.trial.create_trial(value=0.5, user_attrs={"family": "conv1d"}),
    ]
    calibrated = calibration(trials)
    ratios = calibrated.ratios
    assert ratios["conv1d/float32"] == 2.5
    assert ratios["sepconv1d/float32"] == 5.0
    assert ratios["*"] == 3.0
    features = CostFeatures(1e9, 1000, 100, 10, 1000)
    prior = features.prior_seconds()
    assert calibrated.estimate(features, "conv1d", "float32") == pytest.approx(2.5 * prior)
    assert calibrated.estimate(features, "other", "float32") == pytest.approx(3.0 * prior)
    assert calibration([]).estimate(features, "conv1d", "float32") == prior


def _finished_at(trial: optuna.trial.FrozenTrial, minute: int) -> optuna.trial.FrozenTrial:
    trial.datetime_start = datetime.datetime(2026, 1, 1) + datetime.timedelta(minutes=minute)
    trial.datetime_complete = trial.datetime_start + datetime.timedelta(seconds=30)
    return trial


def test_calibration_follows_a_machine_that_slows_down_and_keeps_each_family_s_bias() -> None:
    # sepconv1d takes 3 times what the prior says, conv1d 1 time; then the machine gets twice
    # as slow (another job) for the last three trials, all conv1d.
    ratios = [("sepconv1d", 3.0), ("conv1d", 1.0)] * 3 + [("conv1d", 2.0)] * 3
    trials = [
        _finished_at(_trial(family, "float32", 10.0, 10.0 * ratio), minute)
        for minute, (family, ratio) in enumerate(ratios)
    ]
    # Stored in another order than they finished: the order is the trials' own.
    calibrated = calibration(trials[::-1]).ratios
    # A median over the whole study would still say conv1d 1.0; the recent trials say 2.
    assert calibrated["conv1d/float32"] == pytest.approx(2.0)
    # sepconv1d ran before the slow-down only (its median: 3); the slow-down carries over to it
    # (by 2 / 1.5, the recent conv1d trials over conv1d's median).
    assert calibrated["sepconv1d/float32"] == pytest.approx(3.0 * 2.0 / 1.5)
    assert calibrated["*"] == pytest.approx(2.0 * 2.0 / 1.5)  # the median of all ratios: 2
    # And the machine getting quiet again is followed too.
    quiet = [("conv1d", 1.0)] * 4
    trials += [
        _finished_at(_trial(family, "float32", 10.0, 10.0 * ratio), 20 + minute)
        for minute, (family, ratio) in enumerate(quiet)
    ]
    assert calibration(trials).ratios["conv1d/float32"] == pytest.approx(1.0)


def test_weighted_median_is_the_median_with_equal_weights_and_leans_to_heavy_values() -> None:
    for values in ([3.0], [1.0, 5.0], [4.0, 1.0, 9.0], [2.0, 8.0, 1.0, 7.0]):
        assert weighted_median(values, [1.0] * len(values)) == statistics.median(values)
    assert weighted_median([1.0, 5.0, 9.0], [0.1, 0.1, 1.0]) == 9.0
    assert weighted_median([1.0, 5.0, 9.0], [1.0, 0.1, 0.1]) == 1.0


def test_a_model_that_cannot_be_costed_is_estimated_from_its_family_s_measured_epochs() -> None:
    trials = [
        optuna.trial.create_trial(
            value=0.5, user_attrs={"family": "mine", "precision": "float32", "epoch_seconds": s}
        )
        for s in (4.0, 6.0, 20.0)
    ]
    calibrated = calibration(trials)
    # Trials without a prior (the model could not be analysed) count for the measured median
    # only, never for the prior's ratio.
    assert calibrated.measured == {"mine/float32": 6.0}
    assert calibrated.ratios == {}
    assert calibrated.estimate(None, "mine", "float32") == 6.0
    assert calibrated.estimate(None, "other", "float32") is None
    features = CostFeatures(1e9, 1000, 100, 10, 1000)
    assert calibrated.estimate(features, "mine", "float32") == features.prior_seconds()


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = layers.Embedding(50, 4)
        self.pool = layers.GlobalAveragePooling1D()
        self.out = layers.Dense(1, activation="sigmoid")

    def call(self, x: object) -> object:
        return self.out(self.pool(self.embedding(x)))


def test_sequential_models_are_costed_and_subclassed_ones_raise_for_the_fallback() -> None:
    sequential = keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            layers.Embedding(100, 4),
            layers.Conv1D(6, 3, padding="same"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(1),
        ]
    )
    assert example_flops(sequential, (50,)) == 2 * (78 * 50 + 7)
    subclassed = _Subclassed()
    subclassed(keras.ops.ones((2, 7), dtype="int32"))
    with pytest.raises(Exception):  # noqa: B017 - any failure falls back to measuring
        example_flops(subclassed, (50,))


def test_calibration_estimates_by_family_then_overall_on_each_device() -> None:
    def timed(family: str, device: str, prior: float, actual: float) -> optuna.trial.FrozenTrial:
        attrs = {"family": family, "precision": "float32", "device": device}
        attrs |= {"prior_epoch_seconds": prior, "epoch_seconds": actual}
        return optuna.trial.create_trial(value=0.5, user_attrs=attrs)

    trials = [
        optuna.trial.create_trial(value=0.5, user_attrs={"family": "conv1d"}),  # no epoch yet
        timed("conv1d", "cpu", 10.0, 20.0),
        timed("sepconv1d", "cpu", 10.0, 40.0),
        timed("conv1d", "H200", 10.0, 5.0),
    ]
    calibrated = calibration(trials)
    assert calibrated.ratios == {
        "conv1d/float32": 2.0,
        "sepconv1d/float32": 4.0,
        "*": 3.0,
        "conv1d/float32@H200": 0.5,
        "*@H200": 0.5,
    }
    features = CostFeatures(1e9, 1000, 100, 10, 1000)
    prior = features.prior_seconds()
    per_step = cost.PRIOR_STEP_S + 1000 * cost.PRIOR_PARAM_STEP_S
    assert prior == pytest.approx(1e9 * (3 * 1000 + 100) / cost.PRIOR_FLOPS_PER_S + 10 * per_step)
    assert features.as_dict() == {
        "flops_per_example": 1e9,
        "train_examples": 1000,
        "val_examples": 100,
        "steps": 10,
        "params": 1000,
        "elements_per_example": 0.0,
    }
    assert calibrated.estimate(features, "conv1d", "float32") == 2.0 * prior
    assert calibrated.estimate(features, "ngram", "float32") == 3.0 * prior
    assert calibrated.estimate(features, "conv1d", "float32", "H200") == 0.5 * prior
    assert calibrated.estimate(features, "ngram", "mixed_bfloat16", "H200") == 0.5 * prior
    # A GPU no trial has measured: nothing tells (the CPU prior would be far off).
    assert calibrated.estimate(features, "conv1d", "float32", "A100") is None


def test_calibration_halves_a_trial_s_weight_every_four_finished_trials() -> None:
    # One fast trial after eight slow ones: the slow ones weigh 0.84 + 0.71 + ... + 0.25 = 3.96
    # against the fast one's 1, so the machine is still taken as slow; after four fast trials
    # (1 + 0.84 + 0.71 + 0.59 = 3.14 against the slow ones' 0.5 + ... + 0.06 = 1.98), as fast.
    slow = [_finished_at(_trial("conv1d", "float32", 10.0, 20.0), m) for m in range(8)]
    fast = [_finished_at(_trial("conv1d", "float32", 10.0, 10.0), 10 + m) for m in range(4)]
    median = 2.0  # conv1d's median over the slow eight and one fast: 2
    assert calibration(slow + fast[:1]).ratios["conv1d/float32"] == pytest.approx(median)
    # Eight slow, four fast: conv1d's median is 2, the fast ones ran at half of it.
    assert calibration(slow + fast).ratios["conv1d/float32"] == pytest.approx(1.0)


def test_calibration_orders_trials_by_when_they_finished_and_running_ones_last() -> None:
    # A long trial that started first but finished last, slow; a short one inside it, fast.
    long = _trial("conv1d", "float32", 10.0, 20.0)
    long.datetime_start = datetime.datetime(2026, 1, 1, 0, 0)
    long.datetime_complete = datetime.datetime(2026, 1, 1, 1, 40)
    short = _trial("conv1d", "float32", 10.0, 10.0)
    short.datetime_start = datetime.datetime(2026, 1, 1, 0, 10)
    short.datetime_complete = datetime.datetime(2026, 1, 1, 0, 20)
    # The median is 1.5; the long one, finished last, weighs most: 1.5 * (2 / 1.5).
    assert calibration([short, long]).ratios["conv1d/float32"] == pytest.approx(2.0)
    # A trial still running (it started before the long one finished) has timed an epoch since:
    # it is the latest news. The median is 1.5; the running one ran at 1: 1.5 * (1 / 1.5).
    running = _trial("conv1d", "float32", 10.0, 10.0)
    running.datetime_start = datetime.datetime(2026, 1, 1, 1, 0)
    running.datetime_complete = None
    running.state = optuna.trial.TrialState.RUNNING
    assert calibration([running, long]).ratios["conv1d/float32"] == pytest.approx(1.0)


def test_a_familys_own_rates_price_its_prior_and_other_families_take_the_defaults() -> None:
    features = CostFeatures(1e6, 1000.0, 100.0, 10, 1000, elements_per_example=1e4)
    own = cost.Rates(flop_s=0.0, element_s=1e-9, step_s=0.01, param_step_s=0.0)
    assert cost.family_rates(types.SimpleNamespace(PRIOR_RATES=own)) is own
    assert cost.family_rates(types.SimpleNamespace()) is cost.DEFAULT_RATES
    assert cost.family_rates(None) is cost.DEFAULT_RATES
    # Anything but rates (a user's module with a constant of that name) is not taken for them.
    assert cost.family_rates(types.SimpleNamespace(PRIOR_RATES=2.0)) is cost.DEFAULT_RATES
    assert features.prior_seconds(own) == pytest.approx(1e4 * 3100 * 1e-9 + 10 * 0.01)
    assert features.prior_seconds() == pytest.approx(
        1e6 * 3100 / cost.PRIOR_FLOPS_PER_S
        + 1e4 * 3100 / cost.PRIOR_ELEMENTS_PER_S
        + 10 * (cost.PRIOR_STEP_S + 1000 * cost.PRIOR_PARAM_STEP_S)
    )
    calibrated = cost.Calibration(ratios={"mine/float32": 2.0})
    estimate = calibrated.estimate(features, "mine", "float32", rates=own)
    assert estimate == pytest.approx(2 * features.prior_seconds(own))
    assert cost.Priced("mine", "float32", "cpu", features, own).seconds(calibrated) == estimate


def test_hpos_text_families_each_carry_rates_of_their_own() -> None:
    from hpo.models import nbsvm, ngram, sepconv1d

    rates = [cost.family_rates(module) for module in (conv1d, sepconv1d, ngram, nbsvm)]
    assert all(r is not cost.DEFAULT_RATES for r in rates)
    assert len(set(rates)) == len(rates)
