"""Keras callbacks of the trial runner. Importing this module loads TensorFlow."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import optuna
from optuna_integration import KerasPruningCallback

from hpo.disk import writing
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from hpo.config import TrainingConfig

__all__ = [
    "AtomicModelCheckpoint",
    "ChanceLevelStop",
    "EpochClock",
    "EpochLogs",
    "PruningCallback",
    "RequireMonitor",
    "logged_value",
    "missing_metric",
    "schedule_callbacks",
    "trial_tensorboards",
    "user_schedules_learning_rate",
    "variable_bytes",
]


class EpochClock(keras.callbacks.Callback):
    """Counts and times epochs, and ends training before an epoch that would overrun a deadline.

    After each epoch the next one is assumed to take as long as the last (validation included);
    if it would end past a deadline, training stops here and keeps its best checkpoint. So a
    trial overruns a deadline by at most the error of that guess.

    Args:
        deadlines: (Unix time, why) pairs, for example the study's budget and the trial's cap.
    """

    def __init__(self, deadlines: list[tuple[float, str]] | None = None) -> None:
        super().__init__()
        self.deadlines = sorted(deadlines or [])
        self.durations: list[float] = []
        self.stop_reason: str | None = None
        self._started = 0.0

    @property
    def count(self) -> int:
        """Finished epochs, including those of a trial that is pruned or stopped."""
        return len(self.durations)

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self._started = time.time()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._started = time.time()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        now = time.time()
        self.durations.append(now - self._started)
        # A training loop of a hypermodel's own may call on_epoch_end alone: the next epoch
        # starts as this one ends.
        self._started = now
        if _last_epoch(self, epoch):
            return  # fit's last epoch: no other follows to stop
        for deadline, why in self.deadlines:
            if now + self.durations[-1] > deadline:
                self.stop_reason = (
                    f"stopped after epoch {epoch + 1}: another epoch "
                    f"({self.durations[-1]:.0f} s) would end past {why}"
                )
                self.model.stop_training = True
                return


def schedule_callbacks(
    monitor: str,
    training: TrainingConfig,
    mode: str = "max",
    *,
    model: keras.Model | None = None,
    given: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """Early stopping on `monitor` (`mode` "max" or "min"; best weights restored) and the
    learning rate cut on a validation-loss plateau, as the study's `[training]` sets them: how
    every trial trains, and the benchmarks' KerasTuner legs with it.

    The cut is left out where the learning rate is the user's to schedule: `model`'s optimizer
    follows a `LearningRateSchedule` (its rate cannot be set: Keras raises a TypeError), or a
    callback among `given` sets it (`ReduceLROnPlateau`, `LearningRateScheduler`).
    """
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=training.patience, restore_best_weights=True
        )
    ]
    if user_schedules_learning_rate(model, given) is None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=training.lr_factor, patience=training.lr_patience
            )
        )
    return callbacks


def rate_optimizer(model: keras.Model | None) -> keras.optimizers.Optimizer | None:
    """The optimizer whose learning rate `model` trains at: its own, or the one a
    LossScaleOptimizer (mixed float16) wraps; None for a model not compiled."""
    optimizer = getattr(model, "optimizer", None)
    while optimizer is not None and hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def user_schedules_learning_rate(
    model: keras.Model | None, given: Sequence[keras.callbacks.Callback] = ()
) -> str | None:
    """What schedules the learning rate in the user's stead, if anything: the model's
    optimizer's `LearningRateSchedule` (or a function it calls for its rate) or a callback of
    `given` that sets the rate, named."""
    setters = (keras.callbacks.ReduceLROnPlateau, keras.callbacks.LearningRateScheduler)
    for callback in given:
        if isinstance(callback, setters):
            return f"the callback {type(callback).__name__}"
    rate = getattr(rate_optimizer(model), "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return f"the optimizer's {type(rate).__name__}"
    if callable(rate):
        return "the optimizer's learning-rate function"
    return None


class EpochLogs(keras.callbacks.Callback):
    """Each epoch's logs, by name, as `model.fit`'s `History` keeps them, from `on_epoch_end`
    alone (a training loop of a hypermodel's own calls only that)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[Any]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(logged_value(value))


def logged_value(value: Any) -> float | list[float]:
    """A value in an epoch's logs as a number (a tensor a loop of the user's own logged, too),
    or a list of them: a metric of one value a class (`F1Score(average=None)`)."""
    try:
        return float(value)
    except TypeError:
        return np.asarray(value, dtype=float).reshape(-1).tolist()


class RequireMonitor(keras.callbacks.Callback):
    """Stops training at the first epoch's end if Keras does not log the monitored metric
    (an objective the model is not compiled to measure), naming what it does log.

    Without it, early stopping and the checkpoint would only warn, every epoch, and the trial
    would end with no checkpoint.
    """

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logged = sorted(logs or {})
        if self.monitor not in logged:
            raise ConfigError(missing_metric(self.monitor, logged))
        value = logged_value((logs or {})[self.monitor])
        if isinstance(value, list):
            raise ConfigError(
                f"the objective {self.monitor!r} is {len(value)} values an epoch (a metric of one "
                f"value a class, such as keras.metrics.F1Score(average=None)); trials are ranked "
                f"by one number: give the metric an average (F1Score(average='macro')), or "
                f"choose another objective."
            )


def missing_metric(monitor: str, logged: Sequence[str]) -> str:
    """Why an objective is not measured, and the fix: what the model logs instead."""
    return (
        f"the objective {monitor!r} is not among what the model logs "
        f"({', '.join(logged) or 'nothing'}): compile the model with the metric it names "
        f"(metrics=[keras.metrics.AUC(name='auc')] is logged as 'auc' and 'val_auc'), or "
        f"choose one of those as the objective."
    )


class ChanceLevelStop(keras.callbacks.Callback):
    """Prunes a trial whose validation metric is still at chance level after a few epochs.

    Some settings never leave chance (a separable-conv model with rmsprop at 1e-3, for one);
    such a trial would otherwise use its whole patience before early stopping ends it. It is
    judged once, after `epochs` epochs and at least `MIN_STEPS` optimizer steps: on a few
    thousand rows two epochs of large batches are a few dozen steps, too few to tell a model
    that learns slowly from one that never will.

    Learning is beating `chance` by `margin`, or by twice `margin` of the error that chance
    leaves (1 - chance) where that is less: on 98% of one class, chance + 0.02 would be out of
    reach of a perfect model, and every trial was pruned. Where no class holds more than half
    of the examples, it is chance + margin. `settings` names in the message what sets the check
    (the study file's keys by default).
    """

    MIN_STEPS = 100

    def __init__(
        self,
        monitor: str,
        chance: float,
        epochs: int,
        margin: float,
        settings: str = "training.chance_margin",
    ) -> None:
        super().__init__()
        self.monitor, self.chance, self.epochs, self.margin = monitor, chance, epochs, margin
        self.settings = settings
        # margin < 0.5 (`TrainingConfig`) keeps it below 1 where the error left is above 0.
        self.threshold = chance + min(margin, 2 * margin * (1 - chance))
        self.best = -math.inf
        self.judged = False

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.best = max(self.best, float((logs or {}).get(self.monitor, -math.inf)))
        if not self.epochs or self.judged or epoch + 1 < self.epochs:
            return
        steps = (self.params or {}).get("steps") or 0
        if steps and (epoch + 1) * steps < self.MIN_STEPS:
            return
        self.judged = True
        if _last_epoch(self, epoch):
            return  # trained all it will: stopping it saves nothing, and would lose its model
        if self.chance >= 1:
            return  # validation rows of one class: no accuracy is above chance, a perfect one too
        if self.best <= self.threshold:
            raise optuna.TrialPruned(
                f"{self.monitor} {self.best:.4g} is still at chance level ({self.chance:.4g}) "
                f"after {epoch + 1} epochs: learning is above {self.threshold:.4g} "
                f"({self.settings})"
            )


class PruningCallback(KerasPruningCallback):
    """Optuna's Keras pruning callback (`optuna_integration`), except after fit's last epoch.

    Then the trial has trained all it will: pruning it would save no time and lose its model
    (an hpo.Tuner search of `epochs=2` would otherwise end with no complete trial to return or
    ensemble). The epoch's value is still reported, for the pruner to compare later trials with.
    """

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if not _last_epoch(self, epoch):
            try:
                super().on_epoch_end(epoch, logs)
            except optuna.TrialPruned as exc:
                # Optuna's "pruned at epoch 0" counts from 0; the trial's epochs count from 1.
                raise optuna.TrialPruned(
                    f"pruned by the study's pruner after epoch {epoch + 1} "
                    f"({self.monitor} {value:.4f})"
                ) from exc
            return
        if value is not None:
            self.trial.report(float(value), step=epoch)


def _last_epoch(callback: keras.callbacks.Callback, epoch: int) -> bool:
    return epoch + 1 >= (callback.params or {}).get("epochs", math.inf)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that writes to a temporary file and renames it into place.

    A crash or kill while saving leaves the previous best checkpoint intact.
    """

    def __init__(self, filepath: Path, when_logged: bool = False, **kwargs: Any) -> None:
        self.final_path = Path(filepath)
        # Only at an epoch that logs the monitor, without Keras's warning at the others (a
        # hypermodel's fit whose score may come at its end instead).
        self.when_logged = when_logged
        partial = self.final_path.with_name(f"{self.final_path.stem}.partial.keras")
        super().__init__(str(partial), save_best_only=True, **kwargs)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.when_logged and self.monitor not in (logs or {}):
            return
        partial = Path(self.filepath)
        # A failed save (a full disk) leaves no partial file and the previous checkpoint as is.
        with writing(partial, variable_bytes(self.model)):
            super().on_epoch_end(epoch, logs)
        if partial.exists():
            os.replace(partial, self.final_path)


def trial_tensorboards(
    callbacks: Sequence[keras.callbacks.Callback], number: int, params: Mapping[str, Any]
) -> list[keras.callbacks.Callback]:
    """The user's callbacks for trial `number`, each `TensorBoard` writing into a folder of
    the trial's own under its `log_dir` (`trial-00003`), as KerasTuner gives each trial one;
    on TensorFlow also with the trial's values for TensorBoard's HParams dashboard."""
    result = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.TensorBoard):
            continue
        callback.log_dir = os.path.join(callback.log_dir, f"trial-{number:05d}")
        if keras.backend.backend() != "tensorflow":
            continue
        try:
            from tensorboard.plugins.hparams import api as hparams_api
        except ImportError:
            continue
        result.append(
            hparams_api.KerasCallback(
                writer=callback.log_dir, hparams=dict(params), trial_id=f"trial-{number:05d}"
            )
        )
    return result


def variable_bytes(model: keras.Model) -> int:
    """About the bytes of a model's saved file: its variables and its optimizer's, as float32."""
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    return 4 * sum(math.prod(v.shape) for v in variables)
