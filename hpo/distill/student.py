"""How to combine, after the ensemble: train the student on the ensemble's soft labels.

Runs in its own process, as a trial does (`hpo.training.isolation`), and trains as a trial
trains (`hpo.training.runner.fit_best_epoch`): the study's epochs, patience, learning-rate
schedule and precision, its best epoch by validation accuracy checkpointed and restored. What
differs is the target: the ensemble's probabilities on the training inputs, with a
cross-entropy against them; validation keeps its true labels, so early stopping watches the
metric the study optimizes. Nothing here reads the test set.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from hpo.contract import load_keras_file
from hpo.errors import ConfigError
from hpo.study import TRAINING_DEFAULTS
from hpo.tasks import study_task
from hpo.training.interface import Padding, check_padding, member_model, members_model
from hpo.training.runner import (
    CHECKPOINT_NAME,
    EVAL_BATCH,
    build_step_state,
    epoch_logs,
    fit_best_epoch,
    prepare_model,
    probe_rows,
    recorded,
    trial_process,
)

if TYPE_CHECKING:
    from pathlib import Path

    import keras

    from hpo.config import StudyConfig
    from hpo.tasks import Task, TrialData

__all__ = ["STUDENT_NAME", "Refit", "StudentJob", "StudentResult", "train_student"]

STUDENT_NAME = "student.keras"  # the best epoch, probabilities in hpo's shape
SEARCHED_NAME = "student-early-stopped.keras"  # with a refit: the best epoch by validation


@dataclass(frozen=True)
class StudentJob:
    """What the student's process needs.

    Attributes:
        config: The study's configuration (epochs, patience, precision, seed).
        data_folder: The study's prepared data.
        params: The student's parameters, family included.
        targets: A `.npy` file of the ensemble's probabilities on the training inputs.
        work: An empty folder for the checkpoint and the student.
        max_epochs: The most epochs (the study's `max_epochs` unless overridden).
        threads: CPU threads the backend may use (0: its default).
        augment: Altered copies of the training inputs after them (`Task.augmented`, with the
            study's seed), as many as `targets` holds rows for.
        sampled: Whether `params` are a trial's values, which a family that samples as it
            builds (a KerasTuner hypermodel) is then given (else it builds at its defaults).
        start: A `.keras` model (a member, as the ensemble takes it) whose weights the student
            starts from (`hpo distill --warm-start`); None: the family's initial weights.
        start_rate: The learning rate the student starts at with `start` (that model's at its
            best epoch), unless its optimizer schedules its own; None: the optimizer's own.
        refit_targets: A `.npy` file of the ensemble's probabilities on the validation inputs.
            Given, the early-stopped student is trained again from scratch on the training and
            validation inputs (and the copies) for its best epoch count (`hpo distill
            --refit`), and that model is the student; None: the early-stopped one is.
    """

    config: StudyConfig
    data_folder: Path
    params: dict[str, Any]
    targets: Path
    work: Path
    max_epochs: int
    threads: int = 0
    augment: int = 0
    sampled: bool = False
    start: Path | None = None
    start_rate: float | None = None
    refit_targets: Path | None = None


@dataclass(frozen=True)
class Refit:
    """The student trained again on training + validation inputs, and the early-stopped one.

    Attributes:
        searched: The early-stopped student (its best epoch by validation), saved as the
            student is: the model the validation scores are of.
        epochs: The epochs it trained: the early-stopped student's best epoch.
        examples: The inputs it learned, validation and altered copies included.
        seconds: Its training time.
        learning_rates: The rate of each epoch, the early-stopped student's at that epoch;
            empty where its optimizer schedules its own, which starts over.
    """

    searched: Path
    epochs: int
    examples: int
    seconds: float
    learning_rates: list[float]

    def as_dict(self) -> dict[str, Any]:
        """What the distillation's report records of it."""
        return {
            "epochs": self.epochs,
            "examples": self.examples,
            "seconds": self.seconds,
            "learning_rates": self.learning_rates,
        }


@dataclass(frozen=True)
class StudentResult:
    """The trained student: where it is and how its training went (with `refit`, of the
    early-stopped student, which chose how long the refit trains)."""

    path: Path
    bucketed: bool
    precision: str
    epochs: int
    best_epoch: int
    epoch_seconds: float
    train_seconds: float
    stop_reason: str | None
    params_count: int
    peak_memory_mb: int
    history: dict[str, list[Any]]  # as a trial's record keeps them (`epoch_logs`)
    start_rate: float | None = None
    refit: Refit | None = None


def train_student(job: StudentJob) -> StudentResult:
    """Trains the student on the soft labels and saves its best epoch as `STUDENT_NAME`."""
    with trial_process(job.config, job.params["family"], job.threads) as precision:
        return _train(job, precision.value)


def start_from(model: keras.Model, path: Path) -> None:
    """Sets `model`'s weights to those of the member saved at `path` (the model it was made
    from, under the `Probabilities` layer a member may have on top).

    Raises:
        ConfigError: The member's weights do not fit the model (another architecture).
    """
    source = members_model(load_keras_file(path))
    given = [w.shape for w in source.get_weights()]
    wanted = [tuple(w.shape) for w in model.weights]
    if given != wanted:
        raise ConfigError(
            f"--warm-start: the model in {path} has {len(given)} weights of other shapes than "
            f"the student's {len(wanted)} (its family built it otherwise from the same "
            f"parameters: a build that is not deterministic). Leave --warm-start out to train "
            f"the student from scratch."
        )
    model.set_weights(source.get_weights())


def set_rate(model: keras.Model, rate: float | None) -> float | None:
    """Sets the learning rate of `model`'s optimizer (the one a loss-scale optimizer wraps) to
    `rate`, unless it is None or the optimizer schedules its own (a `LearningRateSchedule`,
    which then starts over); returns the rate it trains at first, None where scheduled."""
    import keras

    from hpo.training.callbacks import rate_optimizer, user_schedules_learning_rate

    if user_schedules_learning_rate(model):
        return None
    optimizer = rate_optimizer(model)
    assert optimizer is not None, "prepare_model compiles the student"
    if rate is not None:
        optimizer.learning_rate = rate
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _train(job: StudentJob, precision: str) -> StudentResult:
    import keras

    from hpo.training.callbacks import EpochClock

    config = job.config
    task = study_task(config)
    params = {**job.params, **task.build_context(job.data_folder)}
    data = task.trial_data(job.data_folder, params)
    x_train = data.x_train
    if job.augment:
        assert task.augmented is not None
        extra = task.augmented(job.data_folder, params, job.augment, config.sampler.seed)
        x_train = np.concatenate([x_train, extra])
    soft = np.load(job.targets)
    if len(soft) != len(x_train):
        raise ValueError(f"{len(soft)} soft labels for {len(x_train)} training inputs")
    keras.utils.set_random_seed(config.sampler.seed)
    # A hypermodel builds from the values its trial sampled, as the trial built it.
    trial = optuna.trial.FixedTrial(dict(job.params)) if job.sampled else None
    model, interface = prepare_model(task, params, data, trial, soft_targets=True)
    start_rate = None
    if job.start is not None:
        start_from(model, job.start)
        start_rate = set_rate(model, job.start_rate)
    classes = int(params["classes"])
    checkpoint = job.work / CHECKPOINT_NAME
    clock = EpochClock()
    started = time.perf_counter()
    targets = interface.encode_probabilities(soft)
    history = fit_best_epoch(
        model,
        task.dataset(
            x_train,
            targets,
            params.get("batch_size") or TRAINING_DEFAULTS["batch_size"],
            config.sampler.seed,
            bucketed=interface.bucketed,
        ),
        task.dataset(
            data.x_val,
            interface.encode_labels(data.y_val, classes),
            EVAL_BATCH,
            None,
            bucketed=interface.bucketed,
        ),
        monitor=task.monitor,
        training=config.training,
        checkpoint=checkpoint,
        clock=clock,
        epochs=job.max_epochs,
        learning_rate=f"learning_rate={start_rate or params.get('learning_rate')}",
        example=(x_train, targets),
    )
    train_seconds = time.perf_counter() - started
    # As a trial stores its member: the best epoch, uncompiled, probabilities in hpo's shape.
    best = member_model(load_keras_file(checkpoint), interface.output, data.x_val[:1])
    if interface.bucketed and task.padded:
        # The export pads every text to seq_len: a student that does not ignore padding is
        # predicted padded, as the export will predict it.
        padding, reason = check_padding(best, data.x_val[probe_rows(data.y_val)])
        if padding is Padding.FIXED:
            interface = dataclasses.replace(interface, padding=padding, padding_reason=reason)
    path = job.work / STUDENT_NAME
    monitored = history.history.get(task.monitor, [])
    best_epoch = int(np.argmax(monitored)) + 1 if monitored else clock.count
    refit = None
    if job.refit_targets is None:
        best.save(path)
    else:
        searched = job.work / SEARCHED_NAME
        best.save(searched)
        del best
        rates = [float(r) for r in history.history.get("learning_rate", [])[:best_epoch]]
        best, refit = _refit(job, task, params, data, trial, x_train, targets, best_epoch, rates)
        best = member_model(best, interface.output, data.x_val[:1])
        best.save(path)
    return StudentResult(
        path=path,
        bucketed=interface.bucketed,
        precision=precision,
        epochs=clock.count,
        best_epoch=best_epoch if monitored else 0,
        epoch_seconds=round(float(np.mean(clock.durations)), 2) if clock.durations else 0.0,
        train_seconds=round(train_seconds, 1),
        stop_reason=clock.stop_reason,
        params_count=int(best.count_params()),
        peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        history=epoch_logs(history.history),
        start_rate=start_rate,
        refit=refit,
    )


def _refit(
    job: StudentJob,
    task: Task,
    params: dict[str, Any],
    data: TrialData,
    trial: optuna.trial.FixedTrial | None,
    x_train: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    rates: list[float],
) -> tuple[keras.Model, Refit]:
    """The student built again (same seed, same start) and trained from scratch on the training
    inputs and copies with `targets`, and the validation inputs with the ensemble's soft labels
    on them, for `epochs` epochs at the early-stopped student's `rates` (as `hpo ensemble
    --refit` refits a member: no validation is left to stop on or to cut the rate on)."""
    import keras

    from hpo.training.callbacks import user_schedules_learning_rate

    assert job.refit_targets is not None
    # What a family learns from the training split as it is built (the `nbsvm` family's
    # ratios) now comes from training + validation data too, as in `hpo ensemble --refit`.
    everything = dataclasses.replace(
        data,
        x_train=np.concatenate([data.x_train, data.x_val]),
        y_train=np.concatenate([data.y_train, data.y_val]),
    )
    keras.utils.set_random_seed(job.config.sampler.seed)
    model, interface = prepare_model(task, params, everything, trial, soft_targets=True)
    if job.start is not None:
        start_from(model, job.start)
        set_rate(model, job.start_rate)
    x = np.concatenate([x_train, data.x_val])
    y = np.concatenate([targets, interface.encode_probabilities(np.load(job.refit_targets))])
    if len(y) != len(x):
        raise ValueError(f"{len(y)} targets for {len(x)} training and validation inputs")
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    scheduled = bool(user_schedules_learning_rate(model))
    if rates and not scheduled:
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[epoch]))
    build_step_state(model, x, y)
    started = time.perf_counter()
    history = model.fit(
        task.dataset(
            x,
            y,
            params.get("batch_size") or TRAINING_DEFAULTS["batch_size"],
            job.config.sampler.seed,
            bucketed=interface.bucketed,
        ),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles, each epoch anew
        verbose=0,
    )
    seconds = round(time.perf_counter() - started, 1)
    losses = history.history.get("loss", [])
    if len(losses) < epochs or not all(np.isfinite(losses)):
        raise FloatingPointError(
            f"refitting the student on training + validation inputs, its training loss became "
            f"{losses[-1] if losses else None} at epoch {len(losses)} of {epochs}; learning_rate="
            f"{rates[0] if rates else params.get('learning_rate')} is likely too high for it. "
            f"Leave --refit out to keep the early-stopped student."
        )
    logged = [] if scheduled else [recorded(rate) for rate in rates]
    refit = Refit(job.work / SEARCHED_NAME, epochs, len(x), seconds, logged)
    return model, refit
