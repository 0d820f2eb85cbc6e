from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import optuna
import pytest

from hpo.contract import Attr, CheckpointError
from hpo.ensemble import selection
from hpo.ensemble.selection import check_predictions, pool_candidates

if TYPE_CHECKING:
    from pathlib import Path

BINARY = np.array([0, 1] * 30)
THREE = np.array([0, 1, 2] * 20)


@pytest.mark.parametrize(
    ("labels", "predictions", "problem"),
    [
        (BINARY, np.full(60, np.nan), "NaN or infinite"),
        (BINARY, np.full(60, np.inf), "NaN or infinite"),
        (BINARY, np.full((60, 5), 0.2), r"shape \(60, 5\) for 2 classes, where hpo stores \(60,\)"),
        (BINARY, np.full(60, 1.5), r"outside \[0, 1\]"),
        (THREE, np.full(60, 0.5), r"shape \(60,\) for 3 classes"),
        (THREE, np.full((60, 2), 0.5), r"shape \(60, 2\) for 3 classes"),
        (BINARY, np.full(10, 0.5), "10 validation predictions for 60"),
    ],
)
def test_predictions_that_do_not_fit_the_labels_are_refused(
    labels: np.ndarray, predictions: np.ndarray, problem: str
) -> None:
    with pytest.raises(CheckpointError, match=f"trial 4: .*{problem}"):
        check_predictions(4, predictions, labels)


def test_predictions_that_fit_are_taken() -> None:
    check_predictions(4, np.full(60, 0.5), BINARY)
    check_predictions(4, np.full((60, 3), 1 / 3), THREE)
    check_predictions(4, np.full((60, 4), 0.25), THREE, open_classes=True)
    check_predictions(4, np.full((60, 3), 1 / 3), BINARY, open_classes=True)
    check_predictions(4, np.full(60, 7.5), BINARY, regression=True)


def test_the_pool_skips_a_trial_whose_predictions_do_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = np.linspace(0.1, 0.9, 60)
    stored = {0: np.full(60, np.nan), 1: np.full((60, 5), 0.2), 2: good, 3: good}
    monkeypatch.setattr(
        selection, "fetch_predictions", lambda _store, trial, _folder: stored[trial.number]
    )
    ranked = [
        optuna.trial.create_trial(value=0.9 - n / 10, user_attrs={Attr.CHECKPOINT_ID: "x"})
        for n in range(4)
    ]
    for number, trial in enumerate(ranked):
        trial.number = number
    candidates, skipped = pool_candidates(ranked, None, 3, tmp_path, BINARY)  # type: ignore[arg-type]
    assert [c.trial.number for c in candidates] == [2, 3]
    assert [s["trial"] for s in skipped] == [0, 1]
    assert "skipping trial 1" in caplog.text


def test_the_pool_skips_a_trial_whose_output_is_another_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With open classes an output may be wider than the labels need, but a pool is one width.
    stored = {0: np.full((60, 3), 1 / 3), 1: np.full((60, 4), 0.25)}
    monkeypatch.setattr(
        selection, "fetch_predictions", lambda _store, trial, _folder: stored[trial.number]
    )
    ranked = [
        optuna.trial.create_trial(value=0.9, user_attrs={Attr.CHECKPOINT_ID: "x"}),
        optuna.trial.create_trial(value=0.8, user_attrs={Attr.CHECKPOINT_ID: "x"}),
    ]
    ranked[0].number, ranked[1].number = 0, 1
    candidates, skipped = pool_candidates(ranked, None, 2, tmp_path, THREE, open_classes=True)  # type: ignore[arg-type]
    assert [c.trial.number for c in candidates] == [0]
    assert "where the better trials' have (60, 3)" in skipped[0]["reason"]


def test_a_study_of_no_complete_trial_says_why_and_what_to_do() -> None:
    from hpo.ensemble.selection import ranked_trials
    from hpo.errors import StoreError

    study = optuna.create_study(study_name="s")
    with pytest.raises(StoreError, match=r"no COMPLETE trials yet\. Run the search first: hpo "):
        ranked_trials(study)
    # Every trial pruned (a loss that diverged): it said to run the search first, as if none had.
    for number in range(2):
        trial = study.ask()
        trial.set_user_attr(Attr.PRUNE_REASON, f"diverged: the loss is nan at epoch {number}")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(StoreError) as caught:
        ranked_trials(study)
    assert str(caught.value) == (
        "study 's' has no COMPLETE trials: its 3 finished trials were all stopped (2 PRUNED and "
        "1 FAIL); the last, trial 2, failed. See each trial's reason (hpo status, or "
        "tuner.results_summary()), mend the model or its search space, and search again."
    )
    last = study.ask()
    last.set_user_attr(Attr.PRUNE_REASON, "diverged: the loss is nan at epoch 1")
    study.tell(last, state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(StoreError, match=r"trial 3, was pruned \(diverged: the loss is nan at"):
        ranked_trials(study)
