"""How to combine, step 1: the best trials whose checkpoint and predictions verify and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from hpo.contract import (
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


__all__ = ["Member", "ranked_trials", "select_members"]

_log = logging.getLogger("hpo.ensemble")


@dataclass(frozen=True)
class Member:
    """A trial chosen for the ensemble, with its verified checkpoint and validation predictions."""

    trial: FrozenTrial
    checkpoint: Path
    val_predictions: np.ndarray
    model: keras.Model


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, best validation value first (ties: earlier trial first).

    Raises:
        StoreError: The study has no COMPLETE trial.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StoreError(
            f"study {study.study_name!r} has no COMPLETE trials yet. Run the search first: "
            f"python -m hpo.search --study <file>."
        )
    return sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))


def select_members(
    ranked: Sequence[FrozenTrial],
    store: ArtifactStore,
    top: int,
    folder: Path,
    n_val: int,
) -> tuple[list[Member], list[dict[str, Any]]]:
    """Takes the `top` best trials whose checkpoints verify, skipping broken ones.

    Returns:
        The members, best first, and the skipped trials with the reason.

    Raises:
        StoreError: No trial has a usable checkpoint.
    """
    if top > len(ranked):
        _log.warning(
            "--top %d, but the study has only %d COMPLETE trials; using all of them.",
            top,
            len(ranked),
        )
    members: list[Member] = []
    skipped: list[dict[str, Any]] = []
    for trial in ranked:
        if len(members) == top:
            break
        try:
            checkpoint = fetch_checkpoint(store, trial, folder)
            predictions = fetch_predictions(store, trial, folder)
            if len(predictions) != n_val:
                raise CheckpointError(
                    f"trial {trial.number}: {len(predictions)} validation predictions for "
                    f"{n_val} validation examples; it was trained on another split."
                )
            # A checkpoint can pass its checksum and still not load (a layer this version of
            # Keras cannot build, say): that trial is skipped like a missing one.
            model = load_checkpoint(checkpoint, trial.number)
        except CheckpointError as exc:
            _log.warning("skipping trial %d, the next best takes its place: %s", trial.number, exc)
            skipped.append({"trial": trial.number, "reason": str(exc)})
            continue
        members.append(
            Member(trial=trial, checkpoint=checkpoint, val_predictions=predictions, model=model)
        )
    if not members:
        raise StoreError(
            f"none of the {len(ranked)} COMPLETE trials has a usable checkpoint, so there is no "
            f"ensemble to build (the warnings above give each reason). The best one: "
            f"{skipped[0]['reason']}"
        )
    return members, skipped
