"""How to combine, last: each member trained again on training + validation data (`--refit`).

AutoGluon's `refit_full`. The members, weights and temperature are chosen on validation
predictions as always; then every member with a weight is trained from scratch, in its own
process as its trial was (its parameters, seed, precision and batch size), on the training and
validation examples together, for as many epochs as its trial's best epoch (the epoch its
checkpoint holds, from the validation accuracy it reported each epoch). No validation data is
left to cut the learning rate on a plateau or to stop early, so a refit keeps its trial's
starting learning rate throughout. The refitted members take the original weights and
temperature. Nothing here reads the test set.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from hpo.backend import (
    Backend,
    backend_environment,
    compiles_per_shape,
    configure_threads,
    gpu_capability,
    keras_backend,
)
from hpo.contract import Attr
from hpo.data.batching import use_width_ladder
from hpo.errors import ConfigError, HpoError
from hpo.precision import resolve_precision
from hpo.study import TRAINING_DEFAULTS
from hpo.tasks import study_task
from hpo.training.interface import member_model
from hpo.training.isolation import call_isolated
from hpo.training.runner import global_policy, prepare_model

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig

__all__ = ["RefitJob", "Refitted", "best_epoch", "refit_member", "refit_members"]


@dataclass(frozen=True)
class RefitJob:
    """One member's refit: its study, data, trial, epochs and where the refitted model goes."""

    config: StudyConfig
    data_folder: Path
    trial: FrozenTrial
    epochs: int
    out: Path


@dataclass(frozen=True)
class Refitted:
    """A refitted member: where it is, what it learned from and how long that took."""

    trial: int
    path: Path
    epochs: int
    examples: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """What the ensemble's report records of it."""
        return {
            "trial": self.trial,
            "epochs": self.epochs,
            "examples": self.examples,
            "seconds": self.seconds,
        }


def best_epoch(trial: FrozenTrial) -> int:
    """The epoch (from 1) whose weights the trial's checkpoint holds: its best reported value,
    the first of equals, as the checkpoint keeps only an improvement.

    Raises:
        ConfigError: The trial reported no epoch, so it cannot be refitted.
    """
    values = trial.intermediate_values
    if not values:
        raise ConfigError(
            f"trial {trial.number} reported no epoch, so --refit cannot tell how long to train "
            f"it; build the ensemble without --refit."
        )
    best = max(values.values())
    return min(step for step, value in values.items() if value == best) + 1


def refit_member(job: RefitJob) -> Refitted:
    """Trains the member's model from scratch on training + validation data for `job.epochs`
    epochs (in a trial's process) and saves it as its trial stored its member."""
    import keras

    configure_threads(0)
    use_width_ladder(compiles_per_shape(keras_backend(), gpu_capability() is not None))
    config, trial = job.config, job.trial
    task = study_task(config)
    params = {**trial.params, **task.build_context(job.data_folder)}
    data = task.trial_data(job.data_folder, params)
    # Everything learned from the training split (the `nbsvm` family's ratios too) now comes
    # from training + validation data.
    data = dataclasses.replace(
        data,
        x_train=np.concatenate([data.x_train, data.x_val]),
        y_train=np.concatenate([data.y_train, data.y_val]),
    )
    precision = resolve_precision(config.training.precision, params["family"], gpu_capability())
    with global_policy(precision.value):
        keras.utils.set_random_seed(config.sampler.seed + trial.number)
        # A hypermodel builds from the values its trial sampled.
        model, interface = prepare_model(
            task,
            params,
            data,
            optuna.trial.FixedTrial(dict(trial.params)),  # type: ignore[arg-type]
        )
        x, y = data.x_train, data.y_train
        batch_size = params.get("batch_size") or TRAINING_DEFAULTS["batch_size"]
        started = time.perf_counter()
        model.fit(
            task.dataset(
                x,
                interface.encode_labels(y, int(params["classes"])),
                batch_size,
                config.sampler.seed + trial.number,
                bucketed=interface.bucketed,
            ),
            epochs=job.epochs,
            shuffle=False,  # the dataset shuffles, each epoch anew
            verbose=0,
        )
        seconds = time.perf_counter() - started
        member_model(model, interface.output, data.x_val[:1]).save(job.out)
    return Refitted(trial.number, job.out, job.epochs, len(y), round(seconds, 1))


def refit_members(
    config: StudyConfig,
    data_folder: Path,
    trials: Sequence[FrozenTrial],
    folder: Path,
    log: Any = None,
) -> dict[int, Refitted]:
    """Refits each trial in its own process, one after the other, into `folder`.

    Args:
        log: Called with a line before each refit (`logging.Logger.info`, say).
    """
    # The members train on the backend this process loaded: the study's recorded one.
    env = backend_environment(Backend(keras_backend() or Backend.TENSORFLOW.value))
    refitted = {}
    for trial in trials:
        epochs = best_epoch(trial)
        if log is not None:
            log(
                "refitting trial %d (%s) on training + validation data for %d epoch(s)",
                trial.number,
                trial.user_attrs.get(Attr.FAMILY, trial.params.get("family")),
                epochs,
            )
        job = RefitJob(config, data_folder, trial, epochs, folder / f"refit-{trial.number}.keras")
        log_path = config.study_dir / "logs" / f"refit-{trial.number:05d}.log"
        try:
            refitted[trial.number] = call_isolated(refit_member, job, log_path=log_path, env=env)
        except HpoError:
            raise
        except Exception as exc:
            raise HpoError(
                f"refitting trial {trial.number} failed ({type(exc).__name__}: "
                f"{str(exc)[:300]}); its output is in {log_path}. Build the ensemble without "
                f"--refit meanwhile."
            ) from exc
    return refitted
