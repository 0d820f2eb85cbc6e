from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

import hpo
from hpo.config import StudyConfig
from hpo.contract import Attr
from hpo.repeats import MAX_REPEATS, repeat_streak, trained_before, used_up_note
from hpo.search.progress import Progress

if TYPE_CHECKING:
    from pathlib import Path

    from optuna.trial import FrozenTrial


USED_UP = "The search space looks used up: the last 20 trials each drew parameters"


def _ended(
    study: optuna.Study, units: int, state: TrialState, **attrs: Any
) -> optuna.trial.FrozenTrial:
    study.add_trial(
        optuna.trial.create_trial(
            params={"units": units},
            distributions={"units": CategoricalDistribution([8, 16])},
            value=0.5 if state == TrialState.COMPLETE else None,
            state=state,
            user_attrs=attrs,
        )
    )
    return study.get_trials(deepcopy=False)[-1]


def _drawing(study: optuna.Study, units: int) -> optuna.Trial:
    study.enqueue_trial({"units": units})
    trial = study.ask()
    trial.suggest_categorical("units", [8, 16])
    return trial


def test_an_earlier_trained_trial_of_the_same_parameters_is_found_the_earliest_first() -> None:
    study = optuna.create_study(direction="maximize")
    _ended(study, 16, TrialState.COMPLETE)
    _ended(study, 8, TrialState.FAIL)  # a failure may be transient: tried again
    _ended(study, 8, TrialState.PRUNED, **{Attr.PRUNE_REASON: "not started: ..."})
    _ended(study, 8, TrialState.PRUNED, **{Attr.EPOCHS: 2})  # the pruner stopped it
    _ended(study, 8, TrialState.COMPLETE)
    assert trained_before(_drawing(study, 16)).number == 0  # type: ignore[union-attr]
    assert trained_before(_drawing(study, 8)).number == 3  # type: ignore[union-attr]


def test_failed_trials_and_trials_pruned_before_training_are_no_earlier_training() -> None:
    study = optuna.create_study(direction="maximize")
    _ended(study, 8, TrialState.FAIL)
    _ended(study, 8, TrialState.PRUNED, **{Attr.PRUNE_REASON: "not started: ...", Attr.EPOCHS: 0})
    _ended(study, 8, TrialState.PRUNED, **{Attr.DUPLICATE_OF: 7})
    _ended(study, 16, TrialState.COMPLETE)
    assert trained_before(_drawing(study, 8)) is None


def test_the_streak_is_the_repeats_the_study_ends_with_in_the_order_they_ended() -> None:
    study = optuna.create_study(direction="maximize")
    _ended(study, 8, TrialState.PRUNED, **{Attr.DUPLICATE_OF: 0})
    _ended(study, 8, TrialState.FAIL)  # breaks the streak, as a training does
    for _ in range(3):
        _ended(study, 8, TrialState.PRUNED, **{Attr.DUPLICATE_OF: 0})
    _drawing(study, 16)  # running: not ended, no part of it
    assert [t.number for t in repeat_streak(study.get_trials())] == [2, 3, 4]
    assert used_up_note(study.get_trials()) is None


class _Study:
    """What `Progress` reads of a study, and whether it was told to stop."""

    def __init__(self, trials: list[FrozenTrial]) -> None:
        self.trials = trials
        self.stopped = False

    def get_trials(self, deepcopy: bool = True, states: object = None) -> list[FrozenTrial]:
        return list(self.trials)

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(("repeats", "stops"), [(MAX_REPEATS - 1, False), (MAX_REPEATS, True)])
def test_a_worker_stops_once_the_studys_last_20_ended_trials_were_repeats(
    repeats: int, stops: bool
) -> None:
    store = optuna.create_study(direction="maximize")
    _ended(store, 8, TrialState.COMPLETE)
    for _ in range(repeats):
        _ended(store, 8, TrialState.PRUNED, **{Attr.DUPLICATE_OF: 0})
    study = _Study(store.get_trials())
    config = StudyConfig(name="s", task="cifar10", n_trials=1000)
    Progress(config, None)(study, study.trials[-1])  # type: ignore[arg-type]
    assert study.stopped is stops
    assert (used_up_note(study.trials) is not None) is stops


def _choice_of_two() -> Any:
    def build_model(hp: Any) -> Any:
        import keras
        from keras import layers

        inputs = keras.Input(shape=(8,))
        x = layers.Dense(hp.Choice("units", [8, 16]), activation="relu")(inputs)
        outputs = layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    return build_model


@pytest.mark.slow
def test_a_space_of_two_values_trains_each_once_and_ends_as_kerastuners_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KerasTuner's RandomSearch ends such a search after 20 draws in a row that repeat a trial
    ("Oracle triggered exit"); hpo trained the same 2 configurations until max_trials. (10 in a
    row here: each repeat costs a trial process.)"""
    from hpo import repeats as repeats_module
    from hpo.search import progress

    streak = 10  # a streak of the first value alone before the second is drawn: 1 in 2**10
    monkeypatch.setattr(repeats_module, "MAX_REPEATS", streak)
    monkeypatch.setattr(progress, "MAX_REPEATS", streak)
    used_up = USED_UP.replace("20", str(streak))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    tuner = hpo.Tuner(
        _choice_of_two(), objective="val_accuracy", max_trials=30, directory=tmp_path, seed=0
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tuner.search(x, y, validation_split=0.25, epochs=1, batch_size=32)
    trials = tuner.study().optuna_study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["units"] for t in complete) == [8, 16]
    repeats = [t for t in trials if t not in complete]
    # Ended after the `streak` repeats that followed the last training, before its 30 trials.
    assert len(trials) - 1 - max(t.number for t in complete) == streak
    assert len(trials) < 30
    by_number = {t.number: t for t in trials}
    for trial in repeats:
        assert trial.state == TrialState.PRUNED
        original = by_number[trial.user_attrs[Attr.DUPLICATE_OF]]
        assert original.state == TrialState.COMPLETE
        assert original.params == trial.params
        assert trial.user_attrs[Attr.PRUNE_REASON].startswith(f"repeats trial {original.number}")
        # Not trained: no epoch, no checkpoint.
        assert Attr.EPOCHS not in trial.user_attrs
        assert Attr.CHECKPOINT_ID not in trial.user_attrs
    assert len(repeat_streak(trials)) == streak
    assert out.getvalue().count(used_up) == 1
    assert set(tuner.ensemble(top=5).members) <= {t.number for t in complete}
