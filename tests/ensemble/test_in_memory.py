"""`hpo.Tuner.ensemble()`'s `Ensemble`, from Python: what it reports of its members."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hpo.ensemble.in_memory import Ensemble
from hpo.ensemble.regression import FittedRegression

# Trial 0 ranked best, 1 second, 3 third and left at weight 0 by the ensemble's fit.
WEIGHTS = np.array([0.6, 0.4, 0.0])
LABELS = np.array([1, 0, 1, 0])
PREDICTIONS = np.array(
    [
        [0.9, 0.2, 0.4, 0.1],  # trial 0: 3 of 4 right
        [0.8, 0.3, 0.7, 0.2],  # trial 1: all right
        [0.1, 0.9, 0.1, 0.9],  # trial 3: none right
    ]
)


def _members() -> list[Any]:
    return [
        SimpleNamespace(trial=SimpleNamespace(number=n, params={}), model=None) for n in (0, 1, 3)
    ]


@pytest.fixture(autouse=True)
def _inputs_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Ensemble, "_inputs", lambda self, x: np.asarray(x))


def test_evaluate_scores_the_members_that_carry_weight_beside_the_best_trial() -> None:
    # print(ensemble) showed members=[0, 1], and evaluate's "members" held 0, 1 and 3.
    fitted: Any = SimpleNamespace(
        members=_members(),
        choice=SimpleNamespace(
            weights=WEIGHTS, temperature=1.0, predict=lambda m: np.tensordot(WEIGHTS, m, 1)
        ),
        val_matrix=PREDICTIONS,
        member_predictions=lambda x: PREDICTIONS,
    )
    ensemble = Ensemble(fitted)
    assert ensemble.members == [0, 1]
    scores = ensemble.evaluate(np.zeros((4, 2)), LABELS)
    assert scores["members"] == {0: 0.75, 1: 1.0}
    assert scores["best_member_accuracy"] == 0.75  # trial 0's, ranked best
    assert scores["accuracy"] == 1.0


def test_a_regression_ensembles_evaluate_scores_the_members_that_carry_weight() -> None:
    class Fitted(FittedRegression):
        def member_predictions(self, x: np.ndarray) -> np.ndarray:
            return PREDICTIONS

    targets = LABELS.astype("float32") + 0.5  # no class labels: targets
    fitted = Fitted(None, Path(), _members(), WEIGHTS, PREDICTIONS, targets, [])  # type: ignore[arg-type]
    ensemble = Ensemble(fitted)
    assert ensemble.members == [0, 1]
    scores = ensemble.evaluate(np.zeros((4, 2)), targets)
    assert list(scores["members"]) == [0, 1]
    assert scores["best_member_mean_squared_error"] == scores["members"][0]
