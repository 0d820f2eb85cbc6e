"""How to combine, after the ensemble: the exported ensemble as a teacher, and its soft labels.

The soft labels are the ensemble's own probabilities: its members, weights and temperature are
read back from the verified `ensemble.keras` (`hpo.ensemble.export.exported_members`), each member
predicts the study's training and validation inputs as it was evaluated, and they are blended as
the export blends them. Their validation scores must match the ones `hpo ensemble` recorded,
which shows they are that ensemble's predictions and not another's.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo._json import read_json
from hpo.ensemble.build import predict_member
from hpo.ensemble.calibration import apply_temperature
from hpo.ensemble.export import exported_members
from hpo.ensemble.refit import out_of_fold
from hpo.errors import ConfigError, HpoError, StoreError

if TYPE_CHECKING:
    from pathlib import Path

    import keras
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = [
    "SoftLabels",
    "TeacherMember",
    "augmented_labels",
    "blend",
    "check_still_teacher",
    "check_teacher",
    "cross_fitted",
    "soft_labels",
    "teacher_identity",
    "teacher_members",
]

# How far the recomputed validation scores may differ from the recorded ones: the report rounds
# to 6 places and the export's weights are float32.
CHECK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TeacherMember:
    """A member of the exported ensemble: its trial, its model (from the export) and weight."""

    trial: FrozenTrial
    model: keras.Model
    weight: float


@dataclass(frozen=True)
class SoftLabels:
    """The ensemble's probabilities on the study's training and validation inputs.

    Attributes:
        folds: 0 when the training labels are the members' own predictions (on rows they
            learned from), else the folds they were cross-fitted on (`cross_fitted`).
        seconds: The cross-fitting's training time.
        label_weight: The true labels' share of the student's training targets (`targets`).
        augmented: The ensemble's probabilities on altered copies of the training inputs
            (`augmented_labels`), after the training rows in the student's targets.
    """

    train: np.ndarray
    val: np.ndarray
    temperature: float | None
    folds: int = 0
    seconds: float = 0.0
    label_weight: float = 0.0
    augmented: np.ndarray | None = None

    def targets(self, y_train: np.ndarray) -> np.ndarray:
        """The student's training targets: `label_weight` x the true labels + the rest x the
        soft labels, then the augmented rows' soft labels. Hinton et al. (2015) weigh a
        cross-entropy with the labels and one with the soft labels; the cross-entropy is linear
        in its target, so this is the same loss."""
        train = self._mixed(self.train, y_train)
        if self.augmented is not None:
            train = np.concatenate([train, self.augmented])
        return np.asarray(train, dtype=np.float32)

    def val_targets(self, y_val: np.ndarray) -> np.ndarray:
        """The validation inputs' targets for a student trained on them too (`hpo distill
        --refit`), mixed with their labels as the training rows' are. The members did not learn
        these inputs, so their soft labels are not nearly the labels, as the training rows' are."""
        return np.asarray(self._mixed(self.val, y_val), dtype=np.float32)

    def _mixed(self, soft: np.ndarray, y: np.ndarray) -> np.ndarray:
        w = self.label_weight
        if not w:
            return soft
        labels = np.asarray(y)
        hard = labels.astype(np.float32) if soft.ndim == 1 else np.eye(soft.shape[1])[labels]
        return w * hard + (1.0 - w) * soft


def teacher_members(
    export: keras.Model, study: optuna.Study
) -> tuple[list[TeacherMember], float | None]:
    """The export's members with their trials, and its temperature (None: not calibrated).

    Raises:
        ConfigError: The model is not an ensemble export.
        StoreError: A member's trial is not in `study`.
    """
    members, temperature = exported_members(export)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    missing = [m.trial for m in members if m.trial not in trials]
    if missing:
        raise StoreError(
            f"the ensemble's member trial {missing[0]} is not in study {study.study_name!r}; "
            f"pass the study the ensemble was built from (--study FILE)."
        )
    return [TeacherMember(trials[m.trial], m.model, m.weight) for m in members], temperature


def soft_labels(
    task: Task, data_folder: Path, members: list[TeacherMember], temperature: float | None
) -> SoftLabels:
    """The ensemble's probabilities on every training and validation input of the study."""
    train, val = [], []
    for member in members:
        data = task.trial_data(data_folder, member.trial.params)
        train.append(predict_member(task, member.model, data.x_train, member.trial))
        val.append(predict_member(task, member.model, data.x_val, member.trial))
    return SoftLabels(
        train=blend(members, train, temperature),
        val=blend(members, val, temperature),
        temperature=temperature,
    )


def cross_fitted(
    config: StudyConfig,
    data_folder: Path,
    soft: SoftLabels,
    members: list[TeacherMember],
    folds: int,
    log: Any = None,
) -> SoftLabels:
    """`soft` with training labels the members did not fit: each row's from the members'
    configurations trained without its fold (`hpo.ensemble.refit.out_of_fold`), blended with
    the ensemble's weights and temperature. The validation labels stay the ensemble's own.

    A member predicts the rows it learned from almost as their labels, so the ensemble's own
    soft labels on the training split are nearly hard; these carry what it is unsure of.
    """
    started = time.perf_counter()
    predictions = out_of_fold(config, data_folder, [m.trial for m in members], folds, log)
    train = blend(members, [predictions[m.trial.number] for m in members], soft.temperature)
    seconds = round(time.perf_counter() - started, 1)
    return dataclasses.replace(soft, train=train, folds=folds, seconds=seconds)


def augmented_labels(
    task: Task,
    data_folder: Path,
    soft: SoftLabels,
    members: list[TeacherMember],
    copies: int,
    seed: int,
) -> SoftLabels:
    """`soft` with the ensemble's probabilities on `copies` altered copies of the training
    inputs (`Task.augmented`, the same copies for every member and for the student)."""
    assert task.augmented is not None
    predictions = [
        predict_member(
            task,
            member.model,
            task.augmented(data_folder, member.trial.params, copies, seed),
            member.trial,
        )
        for member in members
    ]
    return dataclasses.replace(soft, augmented=blend(members, predictions, soft.temperature))


def blend(
    members: list[TeacherMember], predictions: list[np.ndarray], temperature: float | None
) -> np.ndarray:
    """The members' predictions blended as the export blends them: weights, then temperature."""
    blended = metrics.blend(np.array([m.weight for m in members]), np.stack(predictions))
    return blended if temperature is None else apply_temperature(blended, temperature)


def check_teacher(
    val: np.ndarray, y_val: np.ndarray, recorded: dict[str, Any], ensemble_dir: Path
) -> dict[str, float]:
    """The soft labels' validation scores, checked against those the ensemble's report holds.

    Raises:
        ConfigError: They differ: the folder's report and export do not belong together, or
            the study's data changed since.
    """
    scores = {
        "accuracy": round(metrics.accuracy(y_val, val), 6),
        "log_loss": round(metrics.log_loss(y_val, val), 6),
    }
    for name, value in scores.items():
        if abs(value - float(recorded[name])) > CHECK_TOLERANCE:
            raise ConfigError(
                f"the ensemble in {ensemble_dir} scores validation {name} {value:.6f} here, but "
                f"its report.json recorded {float(recorded[name]):.6f}: its export and report do "
                f"not belong together or the data changed. Rebuild it with hpo ensemble."
            )
    return scores


def check_still_teacher(ensemble_dir: Path, recorded: dict[str, Any]) -> None:
    """Checks that the ensemble in `ensemble_dir` is still the one whose report was `recorded`
    as the student's teacher: built at the same time, with the same export. Under the folder's
    lock nothing replaces it; this catches a replace the lock cannot see (another machine's on a
    file system without locks, a folder whose parent cannot hold the lock file).

    Raises:
        HpoError: It was replaced or removed.
    """
    try:
        now = read_json(ensemble_dir / "report.json")
    except (OSError, ValueError):
        now = None
    if not isinstance(now, dict) or teacher_identity(now) != teacher_identity(recorded):
        found = f"one built {now.get('created')}" if isinstance(now, dict) else "none"
        raise HpoError(
            f"the ensemble in {ensemble_dir} was replaced while its student was distilled: the "
            f"student learned the ensemble built {recorded.get('created')}, and the folder now "
            f"holds {found}. The student was not written; distil the ensemble there now: hpo "
            f"distill --ensemble {ensemble_dir}."
        )


def teacher_identity(report: dict[str, Any]) -> tuple[object, object]:
    """What tells one ensemble from another in its report: when it was built and its export's
    SHA-256 (an `hpo export` adding formats to it changes neither)."""
    return report.get("created"), (report.get("export") or {}).get("sha256")
