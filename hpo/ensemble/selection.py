"""How to combine, step 1: the trials whose validation predictions verify (the pool), and the
members whose checkpoints verify and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

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
    import numpy as np
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial


__all__ = [
    "Candidate",
    "Member",
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


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, best validation value first (ties: earlier trial first),
    less those whose checkpoint `hpo gc` removed.

    Raises:
        StoreError: The study has no COMPLETE trial.
    """
    removed = removed_checkpoints(study)
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
        raise StoreError(
            f"study {study.study_name!r} has no COMPLETE trials yet. Run the search first: "
            f"python -m hpo.search --study <file>."
        )
    return best_first(study, complete)


def pool_candidates(
    ranked: Sequence[FrozenTrial],
    store: ArtifactStore,
    size: int,
    folder: Path,
    n_val: int,
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """The `size` best trials that record a checkpoint and whose validation predictions verify.

    Only the predictions are fetched here (a small file each); checkpoints are fetched and
    loaded by `load_member` for the members an ensemble uses.

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
            if len(predictions) != n_val:
                raise CheckpointError(
                    f"trial {trial.number}: {len(predictions)} validation predictions for "
                    f"{n_val} validation examples; it was trained on another split."
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
