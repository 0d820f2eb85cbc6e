from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import optuna
import pytest
from optuna.artifacts import download_artifact
from optuna.distributions import CategoricalDistribution

from hpo.config import Direction, PrunerConfig, PrunerKind, StudyConfig, load_study_config
from hpo.contract import Attr, load_keras_file
from hpo.errors import ConfigError
from hpo.metrics import log_loss
from hpo.models import conv1d
from hpo.store import open_artifact_store, open_storage, sha256_file
from hpo.study import search_space
from hpo.tasks.imdb import IMDB
from hpo.training.callbacks import (
    AtomicModelCheckpoint,
    ChanceLevelStop,
    EpochClock,
    EpochLogs,
    PruningCallback,
    RequireMonitor,
    trial_tensorboards,
)
from hpo.training.runner import _chance_level_stop, best_epoch_logs, epoch_logs, train_trial

from ..conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path

PARAMS: dict[str, Any] = {
    **conv1d.DEFAULTS,
    "family": "conv1d",
    "vocab_size": 10000,
    "seq_len": 40,
    "embedding_dim": 16,
    "filters": 16,
    "branches": 2,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "batch_size": 32,
}


@pytest.fixture
def tiny(fake_imdb: Path, tmp_path: Path) -> tuple[StudyConfig, Path]:
    config = load_study_config(write_study(tmp_path, fake_imdb))
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    return config, folder


def _trial(
    config: StudyConfig, params: dict[str, Any], pruner: optuna.pruners.BasePruner
) -> optuna.Trial:
    storage = open_storage(config.storage_url, create=True, heartbeat=False)
    study = optuna.create_study(
        study_name=config.name, storage=storage, pruner=pruner, direction="maximize"
    )
    trial = study.ask()
    for name, value in params.items():
        trial.suggest_categorical(name, [value])
    return trial


def test_trial_records_its_checkpoint_and_attributes(
    tiny: tuple[StudyConfig, Path], tmp_path: Path
) -> None:
    config, folder = tiny
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    result = train_trial(trial, config, folder, tmp_path / "work")
    attrs = trial.study.trials[0].user_attrs
    for key in (
        "checkpoint_artifact_id",
        "val_predictions_artifact_id",
        "checkpoint_sha256",
        "val_accuracy",
        "val_loss",
        "epochs",
        "params_count",
        "train_seconds",
        "family",
    ):
        assert key in attrs, key
    assert attrs["family"] == "conv1d"
    assert attrs["epochs"] == config.training.max_epochs
    assert result.value == pytest.approx(attrs["val_accuracy"], abs=1e-6)

    store = open_artifact_store(config.artifact_dir)
    checkpoint = tmp_path / "downloaded.keras"
    download_artifact(
        artifact_store=store, file_path=str(checkpoint), artifact_id=attrs[Attr.CHECKPOINT_ID]
    )
    assert sha256_file(checkpoint) == attrs[Attr.CHECKPOINT_SHA256]
    model = load_keras_file(checkpoint)
    assert model.count_params() == attrs["params_count"]
    # The stored model is the best epoch's: its validation accuracy is the best one reported.
    reported = trial.study.trials[0].intermediate_values
    assert len(reported) == config.training.max_epochs
    assert attrs["val_accuracy"] == pytest.approx(max(reported.values()), abs=1e-6)
    predictions_path = tmp_path / "predictions.npy"
    download_artifact(
        artifact_store=store,
        file_path=str(predictions_path),
        artifact_id=attrs[Attr.PREDICTIONS_ID],
    )
    predictions = np.load(predictions_path)
    data = IMDB.trial_data(folder, PARAMS)
    np.testing.assert_allclose(
        predictions, model.predict(data.x_val, verbose=0).reshape(-1), atol=1e-6
    )
    assert attrs["val_loss"] == pytest.approx(log_loss(data.y_val, predictions), abs=1e-5)


# Counted from 1, as the trial's epochs are (Optuna's own message counts from 0).
PRUNED_AFTER_EPOCH_1 = r"^pruned by the study's pruner after epoch 1 \(val_accuracy 0\.\d{4}\)$"


def test_pruner_stops_the_trial_after_its_first_report(
    tiny: tuple[StudyConfig, Path], tmp_path: Path
) -> None:
    config, folder = tiny
    trial = _trial(config, PARAMS, optuna.pruners.ThresholdPruner(lower=1.5))
    with pytest.raises(optuna.TrialPruned, match=PRUNED_AFTER_EPOCH_1):
        train_trial(trial, config, folder, tmp_path / "work")
    frozen = trial.study.trials[0]
    assert frozen.user_attrs["epochs"] == 1
    assert list(frozen.intermediate_values) == [0]


def test_non_finite_loss_fails_the_trial(tiny: tuple[StudyConfig, Path], tmp_path: Path) -> None:
    config, folder = tiny
    trial = _trial(
        config,
        {**PARAMS, "learning_rate": 1e12, "optimizer": "rmsprop"},
        optuna.pruners.NopPruner(),
    )
    with pytest.raises(FloatingPointError, match="learning_rate=1e\\+12 is likely too high"):
        train_trial(trial, config, folder, tmp_path / "work")
    # It stops inside the first epoch (TerminateOnNaN, or the optimizer's own failure on NaN
    # gradients) instead of training on through max_epochs = 2.
    assert trial.study.trials[0].user_attrs["epochs"] <= 1


class _Trained(Exception):
    """Raised in place of training: the trial got as far as `fit`."""


@pytest.mark.parametrize(("earlier", "repeats"), [("COMPLETE", True), ("FAIL", False)])
def test_a_trial_drawing_the_parameters_of_a_trained_one_is_pruned_before_it_trains(
    tiny: tuple[StudyConfig, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    earlier: str,
    repeats: bool,
) -> None:
    from hpo.training import runner

    def fit(*args: Any, **kwargs: Any) -> Any:
        raise _Trained

    monkeypatch.setattr(runner, "fit_best_epoch", fit)
    config, folder = tiny
    storage = open_storage(config.storage_url, create=True, heartbeat=False)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    state = optuna.trial.TrialState[earlier]
    study.add_trial(
        optuna.trial.create_trial(
            params=PARAMS,
            distributions={name: CategoricalDistribution([v]) for name, v in PARAMS.items()},
            value=0.75 if state == optuna.trial.TrialState.COMPLETE else None,
            state=state,
        )
    )
    trial = study.ask()
    for name, value in PARAMS.items():
        trial.suggest_categorical(name, [value])
    if repeats:
        with pytest.raises(optuna.TrialPruned, match=r"^repeats trial 0: same parameters"):
            train_trial(trial, config, folder, tmp_path / "work")
        attrs = study.trials[1].user_attrs
        assert attrs[Attr.DUPLICATE_OF] == 0
        assert Attr.EPOCHS not in attrs
        assert Attr.CHECKPOINT_ID not in attrs
    else:  # a failure may be transient: its parameters are trained again
        with pytest.raises(_Trained):
            train_trial(trial, config, folder, tmp_path / "work")
        assert Attr.DUPLICATE_OF not in study.trials[1].user_attrs


def test_chance_level_stop() -> None:
    stop = ChanceLevelStop("val_accuracy", chance=0.5, epochs=2, margin=0.02)
    stop.on_epoch_end(0, {"val_accuracy": 0.5})
    with pytest.raises(optuna.TrialPruned, match="still at chance level"):
        stop.on_epoch_end(1, {"val_accuracy": 0.51})
    learning = ChanceLevelStop("val_accuracy", chance=0.5, epochs=2, margin=0.02)
    learning.on_epoch_end(0, {"val_accuracy": 0.7})
    learning.on_epoch_end(1, {"val_accuracy": 0.6})
    assert learning.best == 0.7
    # A fit of two epochs has trained all it will after the second: the trial completes.
    finished = ChanceLevelStop("val_accuracy", chance=0.5, epochs=2, margin=0.02)
    finished.set_params({"epochs": 2})
    finished.on_epoch_end(0, {"val_accuracy": 0.5})
    finished.on_epoch_end(1, {"val_accuracy": 0.5})
    assert finished.best == 0.5


def _judging_chance(config: StudyConfig, pruner: PrunerKind, objective: str) -> StudyConfig:
    """`config` with a chance check that every model of the tiny data fails after one epoch."""
    training = dataclasses.replace(
        config.training,
        chance_epochs=1,
        chance_margin=0.49,  # learning is above 0.99 of balanced classes
        objective=objective,
        direction=Direction.MIN if objective == "val_loss" else None,
    )
    return dataclasses.replace(config, pruner=PrunerConfig(kind=pruner), training=training)


def test_a_trial_at_chance_is_pruned_after_its_epoch_is_reported(
    tiny: tuple[StudyConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ChanceLevelStop, "MIN_STEPS", 0)  # the tiny data's epochs are few steps
    config, folder = tiny
    judged = _judging_chance(config, PrunerKind.MEDIAN, "val_accuracy")
    trial = _trial(judged, PARAMS, optuna.pruners.NopPruner())
    with pytest.raises(
        optuna.TrialPruned,
        match=r"^val_accuracy 0\.\d+ is still at chance level \(0\.5\) after 1 epochs: learning "
        r"is above 0\.99 \(training\.chance_margin; training\.chance_epochs = 0 turns the check",
    ):
        train_trial(trial, judged, folder, tmp_path / "work")
    # The epoch it was pruned at is the trial's history too (oracle.get_trial(id).metrics).
    assert list(trial.study.trials[0].intermediate_values) == [0]


def test_the_chance_check_names_what_turns_it_off_where_the_search_was_set(
    tiny: tuple[StudyConfig, Path], tmp_path: Path
) -> None:
    import hpo
    from hpo.tasks import ARRAYS

    def build_model(hp: Any) -> keras.Model:
        raise AssertionError("never built")

    config = _judging_chance(tiny[0], PrunerKind.MEDIAN, "val_accuracy")
    # hpo.Tuner has no training.chance_margin: the message said so all the same.
    tuner = hpo.Tuner(build_model, directory=tmp_path).config
    labels = np.array([0, 0, 0, 1])
    for searched, task, settings in [
        (config, IMDB, r"training\.chance_margin; training\.chance_epochs = 0 turns the check off"),
        (tuner, ARRAYS, r"hpo\.Tuner\(pruner='none'\) prunes no trial, and an objective other "),
    ]:
        stop = _chance_level_stop(searched, task, labels)
        with pytest.raises(optuna.TrialPruned, match=rf"at chance level \(0\.75\).*\({settings}"):
            for epoch in range(searched.training.chance_epochs):
                stop.on_epoch_end(epoch, {"val_accuracy": 0.75})


@pytest.mark.parametrize(
    ("pruner", "objective"),
    [
        # "none" prunes no trial, at chance neither.
        (PrunerKind.NONE, "val_accuracy"),
        # Only accuracy has a known chance level: on imbalanced classes an objective such as
        # AUC improves while the accuracy stays at the most frequent class's share.
        (PrunerKind.MEDIAN, "val_loss"),
    ],
)
def test_a_trial_at_chance_is_not_pruned_without_a_pruner_or_for_another_objective(
    tiny: tuple[StudyConfig, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pruner: PrunerKind,
    objective: str,
) -> None:
    monkeypatch.setattr(ChanceLevelStop, "MIN_STEPS", 0)
    config, folder = tiny
    judged = _judging_chance(config, pruner, objective)
    trial = _trial(judged, PARAMS, optuna.pruners.NopPruner())
    train_trial(trial, judged, folder, tmp_path / "work")
    assert trial.study.trials[0].user_attrs["epochs"] == judged.training.max_epochs == 2


@pytest.mark.parametrize(
    ("chance", "at_chance", "learning"),
    [
        (0.5, 0.52, 0.521),  # balanced: chance + margin, as it always was
        (0.1, 0.12, 0.121),
        (0.983, 0.9833, 0.985),  # 98.3% of one class: chance + 0.02 would be above 1
        (0.999, 0.999, 1.0),
    ],
)
def test_a_trial_better_than_chance_passes_the_chance_check_however_imbalanced_the_classes(
    chance: float, at_chance: float, learning: float
) -> None:
    # With 98.3% of one class, chance + margin >= 1: every trial was pruned "at chance level",
    # a perfect one too.
    for accuracy in (learning, 1.0):
        passing = ChanceLevelStop("val_accuracy", chance=chance, epochs=1, margin=0.02)
        passing.on_epoch_end(0, {"val_accuracy": accuracy})
        assert passing.judged
    stop = ChanceLevelStop("val_accuracy", chance=chance, epochs=1, margin=0.02)
    with pytest.raises(optuna.TrialPruned, match=r"still at chance level .*learning is above"):
        stop.on_epoch_end(0, {"val_accuracy": at_chance})
    # The largest margin allowed (under 0.5) leaves a perfect score above the threshold.
    assert ChanceLevelStop("val_accuracy", chance, 1, margin=0.4999).threshold < 1


def test_validation_rows_of_one_class_prune_no_trial_as_at_chance() -> None:
    # validation_split of rows sorted by label: chance is 1, and a perfect trial was pruned
    # "at chance level" (learning is above 1).
    stop = ChanceLevelStop("val_accuracy", chance=1.0, epochs=1, margin=0.02)
    stop.on_epoch_end(0, {"val_accuracy": 1.0})
    assert stop.judged


def test_the_best_epochs_logs_are_those_of_the_epoch_the_monitor_chose() -> None:
    history = {
        "loss": [0.9, 0.5, 0.4],
        "val_accuracy": [0.6, 0.8, 0.7],
        "val_auc": [0.65, 0.85, float("nan")],
    }
    assert best_epoch_logs(history, "val_accuracy") == {
        "loss": 0.5,
        "val_accuracy": 0.8,
        "val_auc": 0.85,
    }
    assert best_epoch_logs({"loss": [0.3]}, "val_accuracy") == {}
    # A minimized objective's best epoch is its lowest; an epoch whose value is NaN never is.
    history["val_loss"] = [0.5, float("nan"), 0.45]
    assert best_epoch_logs(history, "val_loss", "min")["loss"] == 0.4
    assert best_epoch_logs({"val_loss": [float("nan")]}, "val_loss", "min") == {}


def test_a_small_logged_value_keeps_its_digits_and_a_large_one_six_places() -> None:
    # A learning rate cut on plateaus below 5e-7 was recorded as 0, and hpo distill
    # --warm-start then took the trial's uncut rate, up to 32 times as fast.
    cut = 1.234e-5 * 0.5**5
    logs = best_epoch_logs(
        {"val_accuracy": [0.8868], "learning_rate": [cut], "loss": [12.3456789]}, "val_accuracy"
    )
    assert logs == {"val_accuracy": 0.8868, "learning_rate": 3.85625e-07, "loss": 12.345679}
    assert epoch_logs({"val_loss": [0.2908491234, 0.0014837175]}) == {
        "val_loss": [0.290849, 0.00148372]
    }


def test_a_metric_of_one_value_a_class_is_recorded_as_a_list_every_epoch() -> None:
    # As Keras logs keras.metrics.F1Score(average=None): an array an epoch (every trial of
    # such a model failed, float() of it raising TypeError).
    history = {
        "val_accuracy": [0.6, 0.8, 0.7],
        "val_f1_score": [np.array([0.5, 0.25]), np.array([0.75, np.nan]), np.array([1.0, 0.5])],
        "val_loss": [0.7, 0.3333333333, float("inf")],
    }
    assert best_epoch_logs(history, "val_accuracy") == {
        "val_accuracy": 0.8,
        "val_f1_score": [0.75, None],
        "val_loss": 0.333333,
    }
    assert epoch_logs(history) == {
        "val_accuracy": [0.6, 0.8, 0.7],
        "val_f1_score": [[0.5, 0.25], [0.75, None], [1.0, 0.5]],
        "val_loss": [0.7, 0.333333, None],
    }
    json.dumps(epoch_logs(history), allow_nan=False)  # a trial's record, as JSON keeps it
    collected = EpochLogs()
    collected.on_epoch_end(0, {"loss": np.float32(0.5), "f1_score": np.array([0.5, 0.25])})
    assert collected.history == {"loss": [0.5], "f1_score": [[0.5, 0.25]]}
    # A training loop of the user's own may log a tensor that still requires its gradient.
    import torch

    loss = (torch.ones(2, requires_grad=True) * 0.25).sum()
    collected.on_epoch_end(1, {"loss": loss, "f1_score": np.array([0.75, 0.5])})
    assert collected.history == {"loss": [0.5, 0.5], "f1_score": [[0.5, 0.25], [0.75, 0.5]]}
    RequireMonitor("loss").on_epoch_end(1, {"loss": loss})


def test_a_monitor_the_model_does_not_log_stops_training_naming_what_it_logs() -> None:
    check = RequireMonitor("val_auc")
    check.on_epoch_end(0, {"loss": 0.4, "val_auc": 0.8})
    with pytest.raises(ConfigError, match=r"'val_auc' is not among what the model logs \(loss, "):
        check.on_epoch_end(0, {"val_loss": 0.5, "loss": 0.4})
    # An objective must be one number: a metric of one value a class cannot rank trials.
    per_class = RequireMonitor("val_f1_score")
    with pytest.raises(ConfigError, match=r"'val_f1_score' is 3 values an epoch.*average='macro'"):
        per_class.on_epoch_end(0, {"val_f1_score": np.array([0.1, 0.2, 0.3])})


def test_chance_level_is_judged_after_enough_steps_on_few_rows() -> None:
    # 40 steps an epoch (a few thousand rows in large batches): two epochs are 80 steps, too
    # few to judge; the third epoch reaches 120, and it is judged there, once.
    slow = ChanceLevelStop("val_accuracy", chance=0.5, epochs=2, margin=0.02)
    slow.set_params({"epochs": 20, "steps": 40})
    slow.on_epoch_end(0, {"val_accuracy": 0.5})
    slow.on_epoch_end(1, {"val_accuracy": 0.5})
    with pytest.raises(optuna.TrialPruned, match="after 3 epochs"):
        slow.on_epoch_end(2, {"val_accuracy": 0.5})
    learner = ChanceLevelStop("val_accuracy", chance=0.5, epochs=2, margin=0.02)
    learner.set_params({"epochs": 20, "steps": 40})
    for epoch, accuracy in enumerate([0.5, 0.5, 0.8, 0.5, 0.5]):
        learner.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert learner.judged


@pytest.mark.parametrize("epochs", [1, 3])
def test_the_pruner_reports_every_epoch_but_never_prunes_after_the_last(epochs: int) -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(1.5))
    trial = study.ask()
    callback = PruningCallback(trial, "val_accuracy")
    callback.set_params({"epochs": epochs})
    if epochs == 1:
        callback.on_epoch_end(0, {"val_accuracy": 0.6})
    else:
        with pytest.raises(optuna.TrialPruned, match=PRUNED_AFTER_EPOCH_1):
            callback.on_epoch_end(0, {"val_accuracy": 0.6})
    assert study.trials[0].intermediate_values == {0: 0.6}


def test_epoch_clock_stops_before_an_epoch_that_would_overrun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("hpo.training.callbacks.time.time", lambda: now[0])

    def epoch(clock: EpochClock, index: int, seconds: float) -> None:
        clock.on_epoch_begin(index)
        now[0] += seconds
        clock.on_epoch_end(index)

    model = conv1d.build({**PARAMS, "vocab_size": 30})
    model.stop_training = False  # as fit sets it
    clock = EpochClock([(1000.0 + 250, "the study's budget")])
    clock.set_model(model)
    clock.set_params({"epochs": 5})
    epoch(clock, 0, 100)  # ends at 100 s; another 100 s ends at 200 s, inside 250 s
    assert not model.stop_training
    epoch(clock, 1, 100)  # ends at 200 s; another would end at 300 s, past the deadline
    assert model.stop_training
    assert clock.stop_reason == (
        "stopped after epoch 2: another epoch (100 s) would end past the study's budget"
    )
    assert clock.count == 2

    # Fit's last epoch stops nothing, however close the deadline: no epoch follows it.
    last = EpochClock([(now[0] + 150, "the study's budget")])
    last.set_model(model)
    last.set_params({"epochs": 1})
    model.stop_training = False
    epoch(last, 0, 100)
    assert last.stop_reason is None
    assert not model.stop_training
    assert last.count == 1


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = conv1d.build({**PARAMS, "vocab_size": 30})
    model.compile(optimizer="adam", loss="binary_crossentropy")
    final = tmp_path / "best.keras"
    callback = AtomicModelCheckpoint(final, monitor="val_accuracy", mode="max")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.6})
    assert final.is_file()
    digest = sha256_file(final)

    def torn_save(filepath: str, *args: object, **kwargs: object) -> None:
        with open(filepath, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        callback.on_epoch_end(1, {"val_accuracy": 0.7})
    assert sha256_file(final) == digest
    keras.models.load_model(final, safe_mode=True)


def test_tensorboard_writes_a_log_per_trial(tiny: tuple[StudyConfig, Path], tmp_path: Path) -> None:
    config, folder = tiny
    config = config.with_overrides(tensorboard=True)
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    train_trial(trial, config, folder, tmp_path / "work")
    events = list(
        (config.study_dir / "tensorboard" / f"trial-{trial.number:05d}").rglob(
            "events.out.tfevents.*"
        )
    )
    assert events
    assert all(e.stat().st_size > 0 for e in events)


def test_a_users_tensorboard_writes_into_a_folder_per_trial_with_its_values(
    tmp_path: Path,
) -> None:
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))
    stop = keras.callbacks.EarlyStopping(patience=1)
    callbacks = trial_tensorboards([board, stop], 7, {"units": 8, "family": "build_model"})
    assert callbacks[:2] == [board, stop] and len(callbacks) == 3  # + TensorBoard's HParams
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    x, y = np.ones((8, 3), "float32"), np.ones(8, "float32")
    model.fit(x, y, validation_data=(x, y), epochs=1, callbacks=callbacks, verbose=0)
    trial = tmp_path / "logs" / "trial-00007"
    assert sorted(p.name for p in trial.iterdir() if p.is_dir()) == ["train", "validation"]
    assert list(trial.glob("events.out.tfevents.*"))  # the trial's values
    assert not list((tmp_path / "logs").glob("events.*"))


def test_a_training_loop_of_the_hypermodels_own_reports_epochs_or_returns_a_value(
    tmp_path: Path,
) -> None:
    from hpo.models.hypermodel import HyperModelFamily
    from hpo.tasks._base import TrialData
    from hpo.training.interface import Labels, ModelInterface, Output
    from hpo.training.runner import _train_own_loop

    class Loop:
        """Trains in fit without model.fit; reports its epochs, or only returns a value."""

        def __init__(self, report: bool, returns: Any) -> None:
            self.report, self.returns = report, returns

        def build(self, hp: Any) -> Any:
            return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, callbacks: Any):
            model(x[:2])  # the stand-in model tells hpo it trains itself here
            for epoch, value in enumerate([0.5, 0.3, 0.4] if self.report else []):
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs={"my_metric": value})
            return self.returns

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)).astype("float32"), np.arange(20) % 2
    data = TrialData(x, y, x, y)
    interface = ModelInterface(Output(units=2, from_logits=True), Labels.SPARSE, None, "")

    def train(report: bool, returns: Any, checkpoint: Path) -> Any:
        family = HyperModelFamily("loop", Loop(report, returns), lambda n: n)
        model = family.build_trial(optuna.trial.FixedTrial({}), {})
        assert family.fit_arguments(x, y, (x, y)) == {} and family.trains_itself
        return _train_own_loop(
            family,
            model,
            interface,
            data,
            2,
            objective="my_metric",
            mode="min",
            checkpoint=checkpoint,
            callbacks=[],
        )

    for report, returns, expected in ((True, None, [0.5, 0.3, 0.4]), (False, 0.25, [0.25])):
        checkpoint = tmp_path / f"{report}.keras"
        assert train(report, returns, checkpoint).history == {"my_metric": expected}
        assert checkpoint.is_file()
    with pytest.raises(ConfigError, match=r"loop of its own.*on_epoch_end\(epoch, logs="):
        train(False, None, tmp_path / "none.keras")


@pytest.mark.parametrize("scheduled_by", ["optimizer", "function", "callback"])
def test_a_learning_rate_the_user_schedules_is_left_to_them(
    scheduled_by: str, tmp_path: Path
) -> None:
    """An optimizer on a LearningRateSchedule (CosineDecay, as keras.io's examples compile
    them) cannot have its rate set: hpo's cut on a plateau failed every such trial at its first
    plateau (Keras's TypeError). A ReduceLROnPlateau or LearningRateScheduler of the user's
    schedules it instead of hpo's too, as KerasTuner trains with the user's alone."""
    from hpo.config import TrainingConfig
    from hpo.training.callbacks import user_schedules_learning_rate
    from hpo.training.runner import fit_best_epoch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 2, 64)  # noise: the validation loss stops falling at once
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    given: list[keras.callbacks.Callback] = []
    if scheduled_by == "optimizer":
        rate: Any = keras.optimizers.schedules.CosineDecay(0.5, decay_steps=100)
    elif scheduled_by == "function":  # Keras calls it for the rate of each step
        rate = lambda: 0.5  # noqa: E731
    else:
        rate = 0.5
        given.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.9))
    model.compile(
        optimizer=keras.optimizers.SGD(rate), loss="binary_crossentropy", metrics=["accuracy"]
    )
    import tensorflow as tf

    history = fit_best_epoch(
        model,
        tf.data.Dataset.from_tensor_slices((x, y)).batch(16),
        tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(16),
        monitor="val_loss",
        mode="min",
        training=TrainingConfig(patience=6, lr_patience=1),
        checkpoint=tmp_path / "best.keras",
        clock=EpochClock(),
        epochs=6,
        extra=given,
    )
    assert len(history.history["loss"]) == 6
    if scheduled_by == "callback":  # the user's schedule alone: no cut of hpo's between
        rates = history.history["learning_rate"]
        np.testing.assert_allclose(rates, 0.5 * 0.9 ** np.arange(1, 7), rtol=1e-5)
    expected = {
        "optimizer": "CosineDecay",
        "function": "learning-rate function",
        "callback": "LearningRateScheduler",
    }[scheduled_by]
    assert expected in str(user_schedules_learning_rate(model, given))
    assert user_schedules_learning_rate(keras.Sequential([keras.Input((4,))])) is None


def _traced_steps(model: keras.Model) -> dict[str, int]:
    """Counts the traces of `model`'s training and evaluation steps (each trace runs the
    Python step once; compiled calls do not)."""
    traces = {"train": 0, "test": 0}
    for kind in traces:
        step = getattr(model, f"{kind}_step")

        def counted(data: Any, step: Any = step, kind: str = kind) -> Any:
            traces[kind] += 1
            return step(data)

        setattr(model, f"{kind}_step", counted)
    return traces


def _token_batches(x: np.ndarray, y: np.ndarray) -> Any:
    """Batches of several widths, as bucketed text reaches `fit` (hpo.data.batching)."""
    from hpo.data.batching import bucketed_dataset

    return bucketed_dataset(x, y, batch_size=16, seed=0)


def _token_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(50, 8, mask_zero=True)(inputs)
    hidden = keras.layers.GlobalAveragePooling1D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def _tokens() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, (96, 24)).astype("int32")
    x[np.arange(96) % 3 == 0, 12:] = 0  # a third of the rows half padding
    return x, (x[:, 0] > 25).astype("int32")


def test_the_training_step_is_traced_once_when_its_state_is_built_first() -> None:
    """Keras's TensorFlow trainer creates the metrics' and the optimizer's variables while it
    traces the first training step, and TensorFlow then traces it again; built before `fit`,
    the step is traced once and trains to the same weights."""
    from hpo.training.runner import build_step_state

    x, y = _tokens()
    plain = _token_model()
    plain_traces = _traced_steps(plain)
    plain.fit(_token_batches(x, y), validation_data=_token_batches(x, y), epochs=2, verbose=0)
    assert plain_traces == {"train": 2, "test": 1}  # what Keras does unaided

    built = _token_model()
    built_traces = _traced_steps(built)
    build_step_state(built, x, y)
    assert built.optimizer.built
    # The metrics' state is reset: nothing of the rows it was built on is counted.
    assert all(float(v) == 0 for v in built.metrics_variables)
    built.fit(_token_batches(x, y), validation_data=_token_batches(x, y), epochs=2, verbose=0)
    assert built_traces == {"train": 1, "test": 1}
    for ours, theirs in zip(built.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_model_with_a_training_step_of_its_own_is_left_to_fit() -> None:
    from hpo.training.runner import build_step_state

    class OwnStep(keras.Model):
        def train_step(self, data: Any) -> Any:
            return super().train_step(data)

    inputs = keras.Input((4,))
    model = OwnStep(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    build_step_state(model, np.zeros((2, 4), "float32"), np.zeros(2, "int32"))
    assert not model.optimizer.built
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    build_step_state(uncompiled, np.zeros((2, 4), "float32"), np.zeros(2, "int32"))
    assert not uncompiled.compiled and not uncompiled.metrics_variables


@pytest.mark.parametrize("leftover", ["link", "file"])
def test_a_link_or_file_in_a_trials_scratch_folders_place_is_named_and_kept(
    tmp_path: Path, leftover: str
) -> None:
    # "FileExistsError: [Errno 17] File exists: '.../trials/00002'" failed the trial.
    from hpo.errors import HpoError
    from hpo.training.runner import fresh_scratch_folder, scratch_folder

    config = StudyConfig(name="t", study_dir=tmp_path / "t")
    place = scratch_folder(config, 2)
    place.parent.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("not hpo's")
    if leftover == "link":
        place.symlink_to(target)
    else:
        place.write_text("not hpo's")
    what = r"a symbolic link \(to .*elsewhere\)" if leftover == "link" else "a file"
    with pytest.raises(HpoError, match=rf"^trial 2's scratch folder {place} is {what}.*mv {place}"):
        fresh_scratch_folder(config, 2)
    assert (target / "keep.txt").read_text() == "not hpo's"
    assert place.is_symlink() if leftover == "link" else place.read_text() == "not hpo's"
    # A folder an earlier run left (hpo's own) is emptied, as before.
    (scratch_folder(config, 3) / "old").mkdir(parents=True)
    assert list(fresh_scratch_folder(config, 3).iterdir()) == []


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_hypermodels_fit_that_passes_shuffle_false_trains_on_the_examples_in_order(
    shuffle: bool, tiny: tuple[StudyConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # KerasTuner's "tune data preprocessing" guide tunes model.fit(..., shuffle=hp.Boolean(
    # "shuffle")): hpo warned "fit arguments ['shuffle'] are not used", shuffled anyway, and
    # recorded the value as if it had chosen anything.
    import dataclasses

    from hpo.training import runner

    config, folder = tiny
    seeds: list[int | None] = []
    task = runner.study_task(config)

    def dataset(x: Any, y: Any, batch_size: int, seed: int | None = None, **kw: Any) -> Any:
        if y is not None and len(x) == len(task.trial_data(folder, PARAMS).x_train):
            seeds.append(seed)  # the training set's
        return task.dataset(x, y, batch_size, seed, **kw)

    monkeypatch.setattr(runner, "study_task", lambda c: dataclasses.replace(task, dataset=dataset))
    monkeypatch.setattr(runner, "_fit_arguments", lambda *a: {"shuffle": shuffle})
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    train_trial(trial, config, folder, tmp_path / "work")
    assert seeds and all((seed is not None) is shuffle for seed in seeds), seeds
