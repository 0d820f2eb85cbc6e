"""How to train one trial: build, fit, checkpoint, record. Runs inside the trial's own process."""

from __future__ import annotations

import math
import os
import resource
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.artifacts import upload_artifact

from hpo import metrics
from hpo.store import open_artifact_store, open_storage, sha256_file
from hpo.study import create_study
from hpo.tasks import get_task

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import keras

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = ["TrialJob", "TrialResult", "run_trial"]

CHECKPOINT_NAME = "best.keras"
PREDICTIONS_NAME = "val_predictions.npy"


@dataclass(frozen=True)
class TrialJob:
    """What a trial process needs: the study, which trial, and where its data is.

    Attributes:
        config: The study's configuration.
        trial_id: Storage id of the trial (already RUNNING, parameters sampled).
        data_folder: The prepared data (see `Task.prepare`).
        threads: CPU threads TensorFlow may use.
    """

    config: StudyConfig
    trial_id: int
    data_folder: Path
    threads: int = 0


@dataclass(frozen=True)
class TrialResult:
    """A completed trial's outcome; pruned and failed trials raise instead."""

    value: float


def run_trial(job: TrialJob) -> TrialResult:
    """Trains one trial and stores its best checkpoint and validation predictions.

    Reports the validation metric after every epoch so the pruner can stop the trial, and
    records on the trial: artifact ids, checkpoint checksum, validation accuracy and loss,
    epochs, parameter count, training seconds, peak memory and family.

    Raises:
        optuna.TrialPruned: The pruner or the chance-level check stopped the trial.
        FloatingPointError: The loss became NaN or infinite.
    """
    _configure_tensorflow(job.threads)
    config = job.config
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    study = create_study(config, storage, load_only=True)
    trial = optuna.Trial(study, job.trial_id)
    work = config.study_dir / "trials" / f"{trial.number:05d}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return train_trial(trial, config, job.data_folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train_trial(
    trial: optuna.Trial, config: StudyConfig, data_folder: Path, work: Path
) -> TrialResult:
    """Trains a trial whose parameters are already sampled, in this process.

    Args:
        trial: The running trial (its `params` hold every sampled parameter).
        config: The study's configuration.
        data_folder: The prepared data.
        work: An empty scratch folder for the checkpoint before it is uploaded.
    """
    import keras
    from optuna_integration import KerasPruningCallback

    from hpo.callbacks import AtomicModelCheckpoint, ChanceLevelStop, EpochCounter

    params = trial.params
    task = get_task(config.task)
    data = task.trial_data(data_folder, params)
    keras.utils.set_random_seed(config.sampler.seed + trial.number)
    model = build_model(task, params)
    trial.set_user_attr("family", params["family"])
    trial.set_user_attr("params_count", int(model.count_params()))

    checkpoint = work / CHECKPOINT_NAME
    epochs = EpochCounter()
    chance = max(float(np.mean(data.y_val)), 1 - float(np.mean(data.y_val)))
    callbacks: list[keras.callbacks.Callback] = [
        epochs,
        keras.callbacks.TerminateOnNaN(),
        ChanceLevelStop(
            task.monitor, chance, config.training.chance_epochs, config.training.chance_margin
        ),
        AtomicModelCheckpoint(checkpoint, monitor=task.monitor, mode="max"),
        keras.callbacks.EarlyStopping(
            monitor=task.monitor,
            mode="max",
            patience=config.training.patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=config.training.lr_factor,
            patience=config.training.lr_patience,
        ),
        KerasPruningCallback(trial, task.monitor),
    ]
    if config.tensorboard:
        log_dir = config.study_dir / "tensorboard" / f"trial-{trial.number:05d}"
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    started = time.perf_counter()
    try:
        history = model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            epochs=config.training.max_epochs,
            batch_size=params["batch_size"],
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        trial.set_user_attr("epochs", epochs.count)
        trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 1))
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        trial.set_user_attr("peak_memory_mb", round(peak_kib / 1024))
    losses = history.history.get("loss", [])
    if any(not math.isfinite(v) for v in losses):
        raise FloatingPointError(
            f"the training loss became {losses[-1]} at epoch {len(losses)}; "
            f"learning_rate={params['learning_rate']:.3g} is likely too high for this model."
        )
    if not checkpoint.exists():
        raise RuntimeError(f"no checkpoint was written to {checkpoint}")

    best = keras.models.load_model(checkpoint, safe_mode=True)
    predictions = np.asarray(
        best.predict(data.x_val, batch_size=1024, verbose=0), dtype=np.float32
    ).reshape(-1)
    np.save(work / PREDICTIONS_NAME, predictions)
    val_accuracy = metrics.accuracy(data.y_val, predictions)
    val_loss = metrics.log_loss(data.y_val, predictions)

    store = open_artifact_store(config.artifact_dir)
    attrs: dict[str, Any] = {
        "checkpoint_sha256": sha256_file(checkpoint),
        "checkpoint_artifact_id": upload_artifact(
            artifact_store=store, file_path=str(checkpoint), study_or_trial=trial
        ),
        "val_predictions_artifact_id": upload_artifact(
            artifact_store=store, file_path=str(work / PREDICTIONS_NAME), study_or_trial=trial
        ),
        "val_accuracy": round(val_accuracy, 6),
        "val_loss": round(val_loss, 6),
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return TrialResult(value=val_accuracy)


def build_model(task: Task, params: Mapping[str, Any]) -> keras.Model:
    """Builds the model of `params["family"]` and compiles it with the trial's optimizer."""
    model = task.families[params["family"]].build(params)
    model.compile(optimizer=make_optimizer(params), loss=task.loss, metrics=["accuracy"])
    return model


def make_optimizer(params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The optimizer named by `params["optimizer"]` at `params["learning_rate"]`."""
    import keras

    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[params["optimizer"]](learning_rate=params["learning_rate"])


def _configure_tensorflow(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
