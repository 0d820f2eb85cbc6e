"""How to combine, step 1: the trials whose validation predictions verify (the pool), and the
members whose checkpoints verify and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import TrialState

from hpo._exception_text import exception_text
from hpo.artifacts import best_first, removed_checkpoints
from hpo.contract import (
    Attr,
    CheckpointError,
    fetch_checkpoint,
    fetch_predictions,
    load_checkpoint,
)
from hpo.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import keras
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial


__all__ = [
    "Candidate",
    "Member",
    "check_predictions",
    "load_member",
    "pool_candidates",
    "ranked_trials",
    "skip",
]

_log = logging.getLogger("hpo.ensemble")


@dataclass(frozen=True)
class Candidate:
    """A trial in the ensemble's pool: its verified validation predictions, no model yet."""

    trial: FrozenTrial
    val_predictions: np.ndarray


@dataclass(frozen=True)
class Member:
    """A trial chosen for the ensemble, with its verified checkpoint and validation predictions."""

    trial: FrozenTrial
    checkpoint: Path
    val_predictions: np.ndarray
    model: keras.Model


def ranked_trials(study: optuna.Study, *, keep_removed: bool = False) -> list[FrozenTrial]:
    """The study's COMPLETE trials, best validation value first (ties: earlier trial first),
    less those whose checkpoint `hpo gc` removed, unless `keep_removed` (KerasTuner's results
    rank every completed trial: only their models are gone).

    Raises:
        StoreError: The study has no COMPLETE trial.
    """
    removed = {} if keep_removed else removed_checkpoints(study)
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.number not in removed
    ]
    if not complete and removed:
        raise StoreError(
            f"every COMPLETE trial of study {study.study_name!r} had its checkpoint removed by "
            f"hpo gc; there is nothing to ensemble. Run more trials: hpo search --study <file>."
        )
    if not complete:
        raise StoreError(f"study {study.study_name!r} has no COMPLETE trials{_why_none(study)}")
    return best_first(study, complete)


def _why_none(study: optuna.Study) -> str:
    """Why a study has no COMPLETE trial, and what to do, for `ranked_trials`' error: its
    trials all pruned or failed (the last one's reason), or none has run."""
    ended = study.get_trials(deepcopy=False, states=(TrialState.PRUNED, TrialState.FAIL))
    if not ended:
        return (
            " yet. Run the search first: hpo search --study FILE, or tuner.search(...) from Python."
        )
    last = ended[-1]
    reason = last.user_attrs.get(Attr.PRUNE_REASON) or last.user_attrs.get(Attr.FAIL_REASON)
    counts = {
        state: sum(t.state == state for t in ended)
        for state in (TrialState.PRUNED, TrialState.FAIL)
    }
    said = " and ".join(f"{n} {state.name}" for state, n in counts.items() if n)
    because = f" ({exception_text(reason)})" if reason else ""
    return (
        f": its {len(ended)} finished trials were all stopped ({said}); the last, trial "
        f"{last.number}, {'was pruned' if last.state == TrialState.PRUNED else 'failed'}"
        f"{because}. See each trial's reason (hpo "
        f"status, or tuner.results_summary()), mend the model or its search space, and search "
        f"again."
    )


def pool_candidates(
    ranked: Sequence[FrozenTrial],
    store: ArtifactStore,
    size: int,
    folder: Path,
    y_val: np.ndarray,
    *,
    regression: bool = False,
    open_classes: bool = False,
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """The `size` best trials that record a checkpoint and whose validation predictions verify
    and fit the validation labels `y_val` (`check_predictions`).

    Only the predictions are fetched here (a small file each); checkpoints are fetched and
    loaded by `load_member` for the members an ensemble uses.

    Args:
        regression: The trials predict targets, not probabilities.
        open_classes: An output may have more columns than the labels have classes
            (`hpo.tasks.Task.open_classes`).

    Returns:
        The candidates, best first, and the skipped trials with the reason.

    Raises:
        StoreError: No trial has usable predictions.
    """
    candidates: list[Candidate] = []
    skipped: list[dict[str, Any]] = []
    for trial in ranked:
        if len(candidates) == size:
            break
        try:
            if not trial.user_attrs.get(Attr.CHECKPOINT_ID):
                raise CheckpointError(f"trial {trial.number} records no checkpoint.")
            predictions = fetch_predictions(store, trial, folder)
            check_predictions(trial.number, predictions, y_val, regression, open_classes)
            if candidates and predictions.shape != candidates[0].val_predictions.shape:
                raise CheckpointError(
                    f"trial {trial.number}: validation predictions of shape "
                    f"{predictions.shape}, where the better trials' have "
                    f"{candidates[0].val_predictions.shape}; they cannot be combined."
                )
        except CheckpointError as exc:
            skip(skipped, trial, exc)
            continue
        candidates.append(Candidate(trial=trial, val_predictions=predictions))
    if not candidates:
        raise StoreError(
            f"none of the {len(ranked)} COMPLETE trials has usable validation predictions, so "
            f"there is no ensemble to build (the warnings above give each reason)."
        )
    return candidates, skipped


def check_predictions(
    number: int,
    predictions: np.ndarray,
    y_val: np.ndarray,
    regression: bool = False,
    open_classes: bool = False,
) -> None:
    """Raises CheckpointError unless a trial's validation predictions (a file that verified,
    but was written by another worker or version) fit the labels: a row per example, finite,
    and for a classifier probabilities of hpo's shape, `[n]` for two classes, `[n, classes]`
    otherwise (at least `classes` columns with `open_classes`)."""
    n_val = len(y_val)
    if len(predictions) != n_val:
        raise CheckpointError(
            f"trial {number}: {len(predictions)} validation predictions for "
            f"{n_val} validation examples; it was trained on another split."
        )
    if not np.isfinite(predictions).all():
        raise CheckpointError(
            f"trial {number}: its validation predictions hold NaN or infinite values; its "
            f"model diverged, or the file was written by something else."
        )
    if regression:
        return
    if predictions.size and not (predictions.min() >= 0 and predictions.max() <= 1):
        raise CheckpointError(
            f"trial {number}: its validation predictions hold values outside [0, 1], so they "
            f"are not probabilities."
        )
    classes = max(2, int(np.max(y_val, initial=0)) + 1)
    if classes == 2:
        fits = predictions.ndim == 1 or (open_classes and predictions.ndim == 2)
    else:
        fits = predictions.ndim == 2 and predictions.shape[1] >= classes
    if not fits:
        expected = f"({n_val},)" if classes == 2 else f"({n_val}, {classes})"
        raise CheckpointError(
            f"trial {number}: validation predictions of shape {predictions.shape} for "
            f"{classes} classes, where hpo stores {expected}; the file was written by "
            f"something else."
        )


def load_member(candidate: Candidate, store: ArtifactStore, folder: Path) -> Member:
    """Fetches, verifies and loads a candidate's checkpoint.

    Raises:
        CheckpointError: It is missing, changed, unsafe, or does not load.
    """
    checkpoint = fetch_checkpoint(store, candidate.trial, folder)
    # A checkpoint can pass its checksum and still not load (a layer this version of Keras
    # cannot build, say): that trial is skipped like a missing one.
    model = load_checkpoint(checkpoint, candidate.trial.number)
    return Member(
        trial=candidate.trial,
        checkpoint=checkpoint,
        val_predictions=candidate.val_predictions,
        model=model,
    )


def skip(skipped: list[dict[str, Any]], trial: FrozenTrial, exc: CheckpointError) -> None:
    """Logs and records a trial left out of the ensemble."""
    _log.warning("skipping trial %d, the next best takes its place: %s", trial.number, exc)
    skipped.append({"trial": trial.number, "reason": str(exc)})
