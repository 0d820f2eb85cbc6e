"""Prepared data sets cached on disk as numpy arrays plus a JSON record, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["META_NAME", "cache_key", "cached", "fingerprint", "load_arrays", "save_arrays"]

META_NAME = "meta.json"
# Bump when a cached format changes in a way that invalidates existing caches.
_FORMAT = 1
_log = logging.getLogger(__name__)


def cache_key(settings: Mapping[str, Any]) -> str:
    """A short, stable key for a dict of JSON-serialisable settings."""
    blob = json.dumps({"format": _FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_arrays(folder: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Writes `<name>.npy` per array and `meta.json`, into a temporary folder renamed into place.

    A crash leaves at most a stray temporary folder, never a half-written cache. If another
    process finished the same cache first, its copy is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / META_NAME).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached(folder: Path) -> bool:
    """Whether `folder` holds a whole cache; a damaged one (a file cut short or garbled, on a
    disk that failed, say) is deleted, with a warning, so that it is written again.

    Checks the record and each array's header against its file's size (memory-mapped: no
    array is read).
    """
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        return False
    try:
        json.loads(meta_path.read_text(encoding="utf-8"))
        for path in folder.glob("*.npy"):
            np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        _log.warning("%s is damaged (%s); deleting it to write it again", folder, exc)
        aside = folder.parent / f".damaged-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
        return False
    return True


def load_arrays(
    folder: Path, names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and record `save_arrays` wrote, or None if there is no cache in `folder`."""
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return {name: np.load(folder / f"{name}.npy") for name in names}, meta


def fingerprint(arrays: Mapping[str, np.ndarray], extra: Any) -> str:
    """A hash of the arrays' contents and of `extra` (JSON-serialisable), 16 hex characters.

    It depends on the data itself, not on where it was read from: two caches with the same
    fingerprint hold the same examples in the same split.
    """
    digest = hashlib.sha256(json.dumps(extra).encode())
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        try:
            digest.update(array.data)  # the array's own buffer: tobytes() held a copy of it
        except (TypeError, ValueError, BufferError):  # a dtype without a plain buffer
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]
