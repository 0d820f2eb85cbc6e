"""Fetching a trial's checkpoint and predictions from the artifact store, verified and safely."""

from __future__ import annotations

import json
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.artifacts import download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from hpo.errors import HpoError
from hpo.store import sha256_file

if TYPE_CHECKING:
    from pathlib import Path

    import keras
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

__all__ = [
    "CheckpointError",
    "fetch_checkpoint",
    "fetch_predictions",
    "load_checkpoint",
    "load_keras_file",
]

_UNSAFE_LAYERS = {"Lambda"}


class CheckpointError(HpoError):
    """A trial's checkpoint is missing, corrupt or unsafe; callers skip that trial."""


def fetch_checkpoint(store: ArtifactStore, trial: FrozenTrial, folder: Path) -> Path:
    """Downloads a trial's checkpoint into `folder` and verifies it against its recorded checksum.

    Raises:
        CheckpointError: No checkpoint recorded, missing from the store, checksum mismatch
            (torn or tampered file), or it holds a layer that runs arbitrary Python code.
    """
    path = _download(
        store, trial, "checkpoint_artifact_id", folder / f"trial-{trial.number:05d}.keras"
    )
    expected = trial.user_attrs.get("checkpoint_sha256")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"trial {trial.number}: checkpoint checksum {actual[:12]}... does not match the "
            f"recorded {str(expected)[:12]}...; the file is truncated or was changed since."
        )
    refuse_unsafe_layers(path, f"trial {trial.number}")
    return path


def refuse_unsafe_layers(path: Path, what: str) -> None:
    """Raises CheckpointError if a `.keras` file holds a `Lambda` layer (arbitrary Python code)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"{what}: {path.name} is not a readable .keras file ({exc})."
        ) from exc
    found = sorted(_class_names(config) & _UNSAFE_LAYERS)
    if found:
        raise CheckpointError(
            f"{what}: {path.name} contains a {found[0]} layer, which runs arbitrary "
            f"Python code when loaded; refusing to load it. Only built-in, serialisable layers "
            f"are allowed."
        )


def load_keras_file(path: Path | str) -> keras.Model:
    """Loads a `.keras` file with Keras safe mode on, hpo's own layers registered, uncompiled."""
    import keras

    import hpo.models._masking  # noqa: F401  (registers the padding-aware layers)

    return keras.models.load_model(path, safe_mode=True, compile=False)


def load_checkpoint(path: Path, number: int) -> keras.Model:
    """Loads a verified checkpoint with Keras safe mode on."""
    try:
        return load_keras_file(path)
    except Exception as exc:
        raise CheckpointError(f"trial {number}: cannot load checkpoint {path.name}: {exc}") from exc


def fetch_predictions(store: ArtifactStore, trial: FrozenTrial, folder: Path) -> np.ndarray:
    """Downloads a trial's cached validation predictions (float32, one per validation example)."""
    path = _download(
        store, trial, "val_predictions_artifact_id", folder / f"trial-{trial.number:05d}-val.npy"
    )
    expected = trial.user_attrs.get("val_predictions_sha256")
    # Trials from before predictions were checksummed record none; their files are used as is.
    if expected is not None and sha256_file(path) != expected:
        raise CheckpointError(
            f"trial {trial.number}: validation predictions checksum {sha256_file(path)[:12]}... "
            f"does not match the recorded {str(expected)[:12]}...; the file was changed."
        )
    try:
        return np.load(path).astype(np.float32).reshape(-1)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"trial {trial.number}: unreadable validation predictions ({exc})."
        ) from exc


def _download(store: ArtifactStore, trial: FrozenTrial, key: str, target: Path) -> Path:
    artifact_id = trial.user_attrs.get(key)
    if not artifact_id:
        raise CheckpointError(
            f"trial {trial.number} records no {key}; it finished before checkpoints existed?"
        )
    target.unlink(missing_ok=True)
    try:
        download_artifact(artifact_store=store, file_path=str(target), artifact_id=artifact_id)
    except ArtifactNotFound as exc:
        raise CheckpointError(
            f"trial {trial.number}: artifact {artifact_id} ({key}) is missing from the "
            f"artifact store."
        ) from exc
    return target


def _class_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            names.add(node["class_name"])
        for value in node.values():
            names |= _class_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _class_names(value)
    return names
