"""Decoded image splits cached on disk as uint8 arrays, once per study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.data import array_cache
from hpo.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

__all__ = ["ImageSplits", "fingerprint", "load_cached", "save_cached"]

_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


@dataclass(frozen=True)
class ImageSplits:
    """Decoded train and validation images, as cached for a study.

    Attributes:
        x_train, y_train, x_val, y_val: uint8 images [n, h, w, 3] and int32 class indices.
        classes: Class names, index = label.
        skipped: Unreadable files left out while reading the source.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    skipped: int


def save_cached(folder: Path, splits: ImageSplits, settings: dict[str, Any]) -> None:
    """Writes the decoded splits atomically (see `hpo.data.array_cache.save_arrays`)."""
    array_cache.save_arrays(
        folder,
        {name: getattr(splits, name) for name in _ARRAYS},
        {"settings": settings, "classes": splits.classes, "skipped": splits.skipped},
    )


def load_cached(folder: Path) -> ImageSplits | None:
    """Loads a cache written by `save_cached`, or returns None if there is none."""
    loaded = array_cache.load_arrays(folder, _ARRAYS)
    if loaded is None:
        return None
    arrays, meta = loaded
    return ImageSplits(**arrays, classes=meta["classes"], skipped=meta["skipped"])


def fingerprint(folder: Path) -> str:
    """A hash of the cached images, labels and class names (16 hex characters), not of where
    they came from: equal fingerprints mean the same examples in the same split."""
    splits = load_cached(folder)
    if splits is None:
        raise DataError(f"no cached images in {folder}; write them with save_cached first.")
    return array_cache.fingerprint(
        {name: getattr(splits, name) for name in _ARRAYS}, splits.classes
    )
