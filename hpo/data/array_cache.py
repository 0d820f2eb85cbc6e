"""Prepared data sets cached on disk as numpy arrays plus a JSON record, written atomically.

Each use of a cache refreshes its record's modification time (`mark_used`), which `hpo gc`
reads as its last use (`hpo.caches`); a writer holds a lock on its temporary folder while it
writes (`writer_alive`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo._json import read_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "META_NAME",
    "cache_folder",
    "cache_key",
    "cached",
    "discard",
    "fingerprint",
    "last_used",
    "load_arrays",
    "mark_used",
    "save_arrays",
    "unordered_fingerprint",
    "writer_alive",
]

META_NAME = "meta.json"
# The prefixes of the folders beside the caches that are not caches: one being written, one
# found damaged and one being deleted (each renamed aside first, then removed).
TEMP_PREFIX, DAMAGED_PREFIX, REMOVING_PREFIX = ".tmp", ".damaged", ".removing"
# Bump when a cached format changes in a way that invalidates existing caches.
_FORMAT = 1
_log = logging.getLogger(__name__)


def cache_key(settings: Mapping[str, Any]) -> str:
    """A short, stable key for a dict of JSON-serialisable settings."""
    blob = json.dumps({"format": _FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_folder(cache_dir: Path, name: str, settings: Mapping[str, Any]) -> Path:
    """The folder of the cache of `settings` (JSON-serialisable) in `cache_dir`:
    `<name>-<cache_key(settings)>`."""
    return cache_dir / f"{name}-{cache_key(settings)}"


def save_arrays(folder: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Writes `<name>.npy` per array and `meta.json`, into a temporary folder renamed into place.

    A crash leaves at most a stray temporary folder, never a half-written cache. If another
    process finished the same cache first, its copy is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f"{TEMP_PREFIX}-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with _holding(tmp):
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


@contextlib.contextmanager
def _holding(folder: Path) -> Iterator[None]:
    # A lock the file system drops when the process dies, however it dies; where it has none
    # (some network file systems), the writer goes on without and only the age protects it.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def writer_alive(folder: Path) -> bool:
    """Whether a live process holds `folder`, as `save_arrays` holds its temporary folder while
    it writes; False where the file system has no locks, or the folder is gone."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def cached(folder: Path) -> bool:
    """Whether `folder` holds a whole cache; a damaged one (a file cut short or garbled, on a
    disk that failed, say) is deleted, with a warning, so that it is written again.

    Checks the record and each array's header against its file's size (memory-mapped: no
    array is read). A folder that goes meanwhile (`hpo gc` renamed it away) is no cache, not a
    damaged one: nothing is deleted, nor is a folder another process put in its place.
    """
    try:
        checked = os.stat(folder)
    except OSError:
        return False
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        return False
    try:
        read_json(meta_path)
        for path in folder.glob("*.npy"):
            np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        if discard(folder, DAMAGED_PREFIX, keep=lambda aside: not _same(aside, checked)):
            _log.warning("%s is damaged (%s); deleted it to write it again", folder, exc)
        return False
    return mark_used(folder)


def _same(path: Path, checked: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), checked)
    except OSError:
        return False


def discard(
    folder: Path, prefix: str = REMOVING_PREFIX, *, keep: Callable[[Path], bool] | None = None
) -> bool:
    """Deletes the cache in `folder`: renamed aside first (`<prefix>-<name>-<random>`, beside
    it), in one step, so that a deletion stopped half way never leaves a folder of the cache's
    name without all of its files.

    Args:
        folder: The cache's folder.
        prefix: The name's start while it is deleted; defaults to `REMOVING_PREFIX`.
        keep: Asked of the renamed folder before anything in it goes, where given: true puts
            it back under its name (left aside, for `hpo gc`, if that name was taken meanwhile).
            Defaults to None: it goes.

    Returns:
        Whether it was deleted: False where `folder` was gone already, or `keep` kept it.
    """
    aside = folder.parent / f"{prefix}-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return False
    if keep is not None and keep(aside):
        with contextlib.suppress(OSError):
            os.rename(aside, folder)
        return False
    shutil.rmtree(aside, ignore_errors=True)
    return True


def mark_used(folder: Path) -> bool:
    """Records that the cache in `folder` is being used: its record's modification time is
    now. A cache that cannot be touched (a read-only disk) keeps its time.

    Returns:
        False where the record is gone (`hpo gc` renamed the folder away), else True.
    """
    try:
        os.utime(folder / META_NAME)
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


def last_used(folder: Path) -> float | None:
    """When the cache in `folder` was written or last used (`mark_used`), as a POSIX time;
    None where it has no record (it is not a whole cache)."""
    try:
        return (folder / META_NAME).stat().st_mtime
    except OSError:
        return None


def load_arrays(
    folder: Path, names: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and record `save_arrays` wrote, or None if there is no cache in `folder`."""
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    mark_used(folder)
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


def unordered_fingerprint(groups: Mapping[str, Sequence[np.ndarray]], extra: Any) -> str | None:
    """A hash of each group's examples in any order, and of `extra` (JSON-serialisable).

    A group is arrays of one example per row (inputs, labels, weights), hashed row by row
    together, so it depends on which rows go together and not on the order of the rows: the
    same examples reshuffled (an unseeded `Dataset.shuffle`) give the same hash, other
    examples, or the same ones split otherwise between groups, another.

    Returns:
        The hash (16 hex characters), or None where an array has no plain buffer (objects).
    """
    digest = hashlib.sha256(json.dumps(extra).encode())
    for name, arrays in groups.items():
        rows = []
        for array in arrays:
            array = np.ascontiguousarray(array)
            digest.update(f"{name}{array.shape[1:]}{array.dtype}".encode())
            try:
                rows.append(array.reshape(len(array), -1).view(np.uint8))
            except (TypeError, ValueError):
                return None
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise ValueError(f"group {name!r}: arrays of {sorted(lengths)} rows, not one each")
        row_digests = sorted(
            hashlib.blake2b(b"".join(r.tobytes() for r in row), digest_size=16).digest()
            for row in zip(*rows, strict=True)
        )
        digest.update(f"{name}{len(row_digests)}".encode())
        digest.update(b"".join(row_digests))
    return digest.hexdigest()[:16]
