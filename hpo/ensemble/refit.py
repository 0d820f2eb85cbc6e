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

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from hpo._exception_text import exception_text
from hpo.backend import (
    Backend,
    backend_environment,
    keras_backend,
)
from hpo.contract import Attr
from hpo.disk import check_log_file
from hpo.errors import ConfigError, HpoError
from hpo.study import TRAINING_DEFAULTS
from hpo.tasks import study_task
from hpo.training.interface import member_model
from hpo.training.isolation import call_isolated
from hpo.training.runner import prepare_model, trial_process

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    import keras
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = [
    "FoldJob",
    "RefitJob",
    "Refitted",
    "best_epoch",
    "fold_rows",
    "in_trial_process",
    "out_of_fold",
    "predict_held_out",
    "refit_member",
    "refit_members",
]


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


def best_epoch(trial: FrozenTrial, maximize: bool = True) -> int:
    """The epoch (from 1) whose weights the trial's checkpoint holds: its best reported value
    (highest, or lowest for a minimized objective), the first of equals, as the checkpoint
    keeps only an improvement.

    Raises:
        ConfigError: The trial reported no epoch, so it cannot be refitted.
    """
    values = trial.intermediate_values
    if not values:
        raise ConfigError(
            f"trial {trial.number} reported no epoch, so --refit cannot tell how long to train "
            f"it; build the ensemble without --refit."
        )
    best = (max if maximize else min)(values.values())
    return min(step for step, value in values.items() if value == best) + 1


def refit_member(job: RefitJob) -> Refitted:
    """Trains the member's model from scratch on training + validation data for `job.epochs`
    epochs (in a trial's process) and saves it as its trial stored its member."""
    with _retrained(job.config, job.data_folder, job.trial, job.epochs, None) as fit:
        fit.member.save(job.out)
    return Refitted(job.trial.number, job.out, job.epochs, fit.examples, fit.seconds)


@dataclass(frozen=True)
class FoldJob:
    """One member trained without some training rows, to predict them: a cross-fitting fold."""

    config: StudyConfig
    data_folder: Path
    trial: FrozenTrial
    epochs: int
    held_out: np.ndarray


def predict_held_out(job: FoldJob) -> np.ndarray:
    """Trains the member's model from scratch on the training split without `job.held_out`
    for `job.epochs` epochs (in a trial's process), and gives its probabilities for those rows."""
    from hpo.ensemble.build import predict_member  # build imports this module

    with _retrained(job.config, job.data_folder, job.trial, job.epochs, job.held_out) as fit:
        return predict_member(fit.task, fit.member, fit.held_out, job.trial)


def fold_rows(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """The training split's rows in `folds` disjoint, seeded parts of (nearly) equal size."""
    if not 2 <= folds <= n:
        raise ConfigError(f"cross-fitting needs 2 to {n} folds, got {folds}; use 2 or 5.")
    return [
        np.sort(part) for part in np.array_split(np.random.default_rng(seed).permutation(n), folds)
    ]


@dataclass
class _Fit:
    task: Task
    member: keras.Model
    held_out: np.ndarray
    examples: int
    seconds: float


@contextlib.contextmanager
def _retrained(
    config: StudyConfig,
    data_folder: Path,
    trial: FrozenTrial,
    epochs: int,
    held_out: np.ndarray | None,
) -> Iterator[_Fit]:
    """The trial's model trained from scratch as its trial trained it (parameters, seed,
    precision, batch size), for `epochs` epochs, in this process: on training + validation data
    (`held_out` None), else on the training rows not in `held_out`. Inside, Keras's dtype policy
    is the trial's, so the model predicts as it trained."""
    import keras

    task = study_task(config)
    params = {**trial.params, **task.build_context(data_folder)}
    data = task.trial_data(data_folder, params)
    if held_out is None:
        # Everything learned from the training split (the `nbsvm` family's ratios too) now
        # comes from training + validation data.
        held = data.x_val[:0]
        data = dataclasses.replace(
            data,
            x_train=np.concatenate([data.x_train, data.x_val]),
            y_train=np.concatenate([data.y_train, data.y_val]),
        )
    else:
        keep = np.ones(len(data.y_train), dtype=bool)
        keep[held_out] = False
        held = data.x_train[held_out]
        data = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    with trial_process(config, params["family"]):
        keras.utils.set_random_seed(config.sampler.trial_seed(trial.number))
        # A hypermodel builds from the values its trial sampled.
        model, interface = prepare_model(
            task,
            params,
            data,
            optuna.trial.FixedTrial(dict(trial.params)),
        )
        batch_size = params.get("batch_size") or TRAINING_DEFAULTS["batch_size"]
        started = time.perf_counter()
        model.fit(
            task.dataset(
                data.x_train,
                interface.encode_labels(data.y_train, int(params["classes"])),
                batch_size,
                config.sampler.trial_seed(trial.number),
                bucketed=interface.bucketed,
            ),
            epochs=epochs,
            shuffle=False,  # the dataset shuffles, each epoch anew
            verbose=0,
        )
        seconds = round(time.perf_counter() - started, 1)
        member = member_model(model, interface.output, data.x_val[:1])
        yield _Fit(task, member, held, len(data.y_train), seconds)


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
    _check_families(config, trials, "--refit")
    refitted = {}
    for trial in trials:
        epochs = best_epoch(trial, config.training.maximize)
        if log is not None:
            log(
                "refitting trial %d (%s) on training + validation data for %d epoch(s)",
                trial.number,
                _family(trial),
                epochs,
            )
        job = RefitJob(config, data_folder, trial, epochs, folder / f"refit-{trial.number}.keras")
        refitted[trial.number] = _isolated(
            refit_member, job, f"refit-{trial.number:05d}", "refitting", "--refit"
        )
    return refitted


def out_of_fold(
    config: StudyConfig,
    data_folder: Path,
    trials: Sequence[FrozenTrial],
    folds: int,
    log: Any = None,
) -> dict[int, np.ndarray]:
    """Each trial's predictions for the training split, every row from a model that did not
    learn from it: per fold, the trial's configuration trained from scratch on the other folds
    for its best epoch count, in its own process.

    Args:
        folds: Parts of the training split (`fold_rows`, seeded by the study's seed).
        log: Called with a line before each fold.
    """
    _check_families(config, trials, "--cross-fit 0")
    predictions = {}
    for trial in trials:
        epochs = best_epoch(trial, config.training.maximize)
        parts: list[np.ndarray] = []
        rows = fold_rows(_training_rows(config, data_folder, trial), folds, config.sampler.seed)
        for k, held_out in enumerate(rows):
            if log is not None:
                log(
                    "cross-fitting trial %d (%s), fold %d of %d: %d epoch(s) without %d rows",
                    trial.number,
                    _family(trial),
                    k + 1,
                    folds,
                    epochs,
                    len(held_out),
                )
            job = FoldJob(config, data_folder, trial, epochs, held_out)
            parts.append(
                _isolated(
                    predict_held_out,
                    job,
                    f"crossfit-{trial.number:05d}-{k}",
                    "cross-fitting",
                    "--cross-fit 0",
                )
            )
        full = np.empty((sum(len(r) for r in rows), *parts[0].shape[1:]), dtype=np.float32)
        for held_out, part in zip(rows, parts, strict=True):
            full[held_out] = part
        predictions[trial.number] = full
    return predictions


def _check_families(config: StudyConfig, trials: Sequence[FrozenTrial], way_out: str) -> None:
    """Refuses, before any retraining starts, a trial whose recorded family the study does not
    have (a changed record, or a family since taken out of the study file): its build would
    fail in a trial's process with a bare KeyError."""
    families = study_task(config).families
    for trial in trials:
        family = trial.params.get("family")
        if family not in families:
            raise ConfigError(
                f"trial {trial.number} records model family {family!r}, which study "
                f"{config.name!r} does not have (its families: {', '.join(sorted(families))}), "
                f"so it cannot be trained again. If the family is one of your own, pass the "
                f"study file that names it (--study FILE); else build the ensemble without "
                f"{way_out}."
            )


def _training_rows(config: StudyConfig, data_folder: Path, trial: FrozenTrial) -> int:
    task = study_task(config)
    return len(task.trial_data(data_folder, dict(trial.params)).y_train)


def _family(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(Attr.FAMILY, trial.params.get("family")))


def in_trial_process(
    function: Callable[[Any], Any], job: Any, log_path: Path, failed: str, hint: str = ""
) -> Any:
    """`function(job)` in a trial's process on the backend this process loaded (the study's
    recorded one), its output in `log_path`; a failure other than hpo's own is raised as an
    HpoError that starts with `failed`, names the log and ends with `hint`."""
    env = backend_environment(Backend(keras_backend() or Backend.TENSORFLOW.value))
    check_log_file(log_path)
    try:
        return call_isolated(function, job, log_path=log_path, env=env)
    except HpoError:
        raise
    except Exception as exc:
        raise HpoError(
            f"{failed} ({type(exc).__name__}: {exception_text(exc)}); its output is in {log_path}."
            + (f" {hint}" if hint else "")
        ) from exc


def _isolated(function: Callable[[Any], Any], job: Any, name: str, what: str, way_out: str) -> Any:
    """A member's retraining in a trial's process, its log in the study's logs folder."""
    log_path = job.config.study_dir / "logs" / f"{name}.log"
    return in_trial_process(
        function,
        job,
        log_path,
        f"{what} trial {job.trial.number} failed",
        f"Run without {way_out} meanwhile.",
    )
