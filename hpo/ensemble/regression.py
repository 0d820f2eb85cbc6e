"""Ensembles of regression models (`hpo.Tuner` on float targets), fitted on validation only.

The best trials by the study's objective are the candidates; their weights come from Caruana
selection on the validation mean squared error of the weighted average (`--method caruana`, the
default), their inverse validation errors (`score`) or equal shares (`uniform`). There is no
temperature: the export is the members' weighted average, as `hpo.ensemble.export` builds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.contract import Attr, CheckpointError
from hpo.ensemble.build import open_pool, running_on, stacked_predictions, verify_member
from hpo.ensemble.export import check_rows, export_ensemble
from hpo.ensemble.selection import Member, load_member, ranked_trials, skip
from hpo.ensemble.weighting import Method, squared_error_selection
from hpo.errors import StoreError
from hpo.training.interface import PROBE_ROWS, Labels

if TYPE_CHECKING:
    from pathlib import Path

    import keras
    import optuna

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = ["FittedRegression", "fit_regression", "is_regression"]

_log = logging.getLogger("hpo.ensemble")


def is_regression(study: optuna.Study) -> bool:
    """Whether the study's models predict regression targets (as its best trial recorded)."""
    return bool(ranked_trials(study)[0].user_attrs.get(Attr.LABELS) == Labels.TARGETS.value)


@dataclass(frozen=True)
class FittedRegression:
    """Regression members (best first) and their weights, fitted on validation predictions.

    Attributes:
        val_matrix: The members' validation predictions, `[members, n(, targets)]`.
        y_val: The validation targets.
        skipped: Trials left out (a checkpoint that does not verify or load), with the reason.
    """

    task: Task
    data_folder: Path
    members: list[Member]
    weights: np.ndarray
    val_matrix: np.ndarray
    y_val: np.ndarray
    skipped: list[dict[str, Any]]

    def member_predictions(self, x: np.ndarray) -> np.ndarray:
        """Each member's predictions for `x`, stacked: `[members, n(, targets)]`."""
        return stacked_predictions(self.task, self.members, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The weighted average of the members' predictions for `x`, in the shape of the
        search's targets (`[n]` or `[n, 1]` for one target, `[n, targets]`): a user's
        `y - ensemble.predict(x)` must not broadcast `[n, 1]` against `[n]` into `[n, n]`."""
        predicted = self.blend(self.member_predictions(x))
        return predicted.reshape((len(predicted), *self.y_val.shape[1:]))

    def blend(self, matrix: np.ndarray) -> np.ndarray:
        """The weighted average of stacked member predictions."""
        return metrics.blend(self.weights, matrix)

    def export(self) -> keras.Model:
        """One Keras model: the inputs, each weighted member, their sum."""
        return export_ensemble(
            self.task,
            self.data_folder,
            self.members,
            [m.model for m in self.members],
            self.weights,
        )


def fit_regression(
    config: StudyConfig, study: optuna.Study, scratch: Path, *, top: int, method: Method
) -> FittedRegression:
    """The `top` best trials with a usable checkpoint, weighted by `method` on validation.

    Raises:
        StoreError: No COMPLETE trial has a usable checkpoint.
    """
    with open_pool(config, study, scratch) as opened:
        candidates, skipped = opened.candidates, opened.skipped
        y_val = np.asarray(opened.y_val, dtype=np.float64)
        rows, here = check_rows(y_val, PROBE_ROWS), running_on()
        members: list[Member] = []
        for candidate in candidates:
            if len(members) == top:
                break
            try:
                member = load_member(candidate, opened.store, scratch)
                x_val = opened.task.trial_data(opened.data_folder, candidate.trial.params).x_val
                verify_member(opened.task, x_val, member, rows, here)
                members.append(member)
            except CheckpointError as exc:
                skip(skipped, candidate.trial, exc)
        if not members:
            raise StoreError(
                f"none of the {len(candidates)} COMPLETE trials has a usable checkpoint, so there "
                f"is no ensemble to build (the warnings above give each reason)."
            )
    matrix = np.stack([m.val_predictions for m in members]).astype(np.float64)
    if method is Method.CARUANA:
        weights, _ = squared_error_selection(matrix, y_val)
    elif method is Method.SCORE:
        errors = np.array([metrics.squared_error(y_val, p) for p in matrix])
        inverse = 1.0 / np.maximum(errors, 1e-12)
        weights = inverse / inverse.sum()
    else:
        weights = np.full(len(members), 1 / len(members))
    return FittedRegression(
        opened.task, opened.data_folder, members, weights, matrix, y_val, skipped
    )
