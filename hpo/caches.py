"""Delete the prepared data a study no longer uses (--dry-run lists it): `hpo gc`'s other half.

How to train one trial, what it reads. A search prepares the study's data once into
`<study>/cache/<task>-<key>`, the key a hash of the data settings and of the source's file
sizes and times (`Task.cache_folder`); other settings, changed data or an upgrade of hpo that
changes the format prepare a new folder and leave the old one. A sweep of the study's cache
folder removes:

- a cache that is not the one the study's current settings use (its study file's, on the data
  source its last search recorded) and that nothing has used for a day (`STALE_AFTER`), nor since
  a day before its oldest RUNNING trial began. Each preparation that finds a cache and each
  trial that loads it refreshes its record's time (`array_cache.mark_used`), so a search still
  running on older settings (another worker, another machine sharing the folder) keeps its own;
- a folder left by a writer or a deletion that stopped (`.tmp-*`, `.damaged-*`, `.removing-*`,
  or a cache's folder without its record), once nothing in it changed for an hour
  (`LEFTOVER_AFTER`) and no live process holds it (a writer locks its folder while it writes,
  where the file system has locks).

A folder goes only where it holds nothing but what hpo writes in a cache (`<array>.npy` files,
the record `meta.json`; a leftover may be empty): a folder of the user's of a cache's name,
say in a folder the study's `cache/` is a link to, with photos in it, stays, however old.

Where the current cache cannot be worked out (the recorded data are gone, the settings do not
hold), no cache goes, only the leftovers. Trial hyperparameters never choose a cache: a text
study's is tokenized at the largest vocabulary and length its space allows and each trial
derives its own inputs from it.

A cache goes renamed aside first, then deleted, so that a deletion stopped half way never
leaves a folder that looks whole; one that a search marked used between the sweep's reading of
its time and that renaming goes back under its name. A sweep reads only names, times and sizes
in the folder: nothing in it is opened, let alone run.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo.budget import format_duration
from hpo.data import array_cache
from hpo.errors import DataError, HpoError

if TYPE_CHECKING:
    from pathlib import Path

    import optuna

    from hpo.config import StudyConfig

__all__ = ["LEFTOVER_AFTER", "STALE_AFTER", "Sweep", "cache_bytes", "current_cache", "sweep_caches"]

STALE_AFTER = 24 * 3600.0
LEFTOVER_AFTER = 3600.0
# The names hpo gives what it writes in a cache folder (`array_cache`); anything else there is
# left alone.
_CACHE = re.compile(r"[a-z][a-z0-9_]*-[0-9a-f]{16}")
_LEFTOVER = re.compile(
    rf"({re.escape(array_cache.TEMP_PREFIX)}|{re.escape(array_cache.DAMAGED_PREFIX)}"
    rf"|{re.escape(array_cache.REMOVING_PREFIX)})-[a-z][a-z0-9_]*-[0-9a-f]{{16}}-[0-9a-f]{{8}}"
)


@dataclass(frozen=True)
class Sweep:
    """What a sweep of a study's cache folder keeps and removes.

    Args:
        kept: Folder name -> why it stays.
        removed: Folder name -> why it goes.
        sizes: Folder name -> what it takes on disk, in bytes, for each of `removed`.
        unknown: Why the current cache could not be worked out (no cache went), or None.
    """

    kept: dict[str, str]
    removed: dict[str, str]
    sizes: dict[str, int]
    unknown: str | None = None

    @property
    def freed_bytes(self) -> int:
        """What the removed folders took."""
        return sum(self.sizes.values())


def current_cache(config: StudyConfig, study: optuna.Study) -> Path:
    """The cache folder the study's current settings use: the study file's, on the data source
    its last search recorded, worked out without reading the data (`Task.cache_folder`).

    Raises:
        HpoError: The study records no data source that still exists, or the settings do not
            hold (an unknown task, a `[space]` entry outside the task's space).
        OSError: The data cannot be listed.
    """
    from hpo.data import provenance
    from hpo.study import shared_space
    from hpo.tasks import get_task

    recorded = provenance.recorded_source(study)
    if recorded is None:
        raise DataError(
            f"study {study.study_name!r} records no data source that still exists (no search "
            f"prepared its data, or the data moved)"
        )
    task = get_task(config.task)
    source = task.locate(config, recorded)
    return task.cache_folder(config, source, shared_space(task, config.space))


def sweep_caches(config: StudyConfig, study: optuna.Study, *, dry_run: bool = False) -> Sweep:
    """Removes the caches and leftovers in the study's cache folder that no search of its
    current settings needs, by the rule this module's docstring gives.

    Args:
        config: The study's settings; its `cache_dir` is swept.
        study: The study: the data source its search recorded, its running trials.
        dry_run: Only say what would be removed.
    """
    try:
        current, unknown = current_cache(config, study).resolve(), None
    except (HpoError, OSError) as exc:
        current, unknown = None, str(exc)
    now = time.time()
    cutoff = now - STALE_AFTER
    started = [
        t.datetime_start.timestamp()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is not None
    ]
    if started:
        cutoff = min(cutoff, min(started) - STALE_AFTER)
    kept: dict[str, str] = {}
    removed: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for folder in _folders(config.cache_dir):
        size, changed = _size_and_change(folder)
        cache = _CACHE.fullmatch(folder.name) is not None
        used = array_cache.last_used(folder) if cache else None
        if not _holds_only_ours(folder, empty=not cache):
            kept[folder.name] = (
                "not hpo's: it holds files other than a cache's (<array>.npy, "
                f"{array_cache.META_NAME})"
            )
            continue
        if used is not None:
            if current is None:
                kept[folder.name] = "the study's current cache is unknown"
                continue
            if folder.resolve() == current:
                kept[folder.name] = "the cache of the study's current settings"
                continue
            if used > cutoff:
                kept[folder.name] = f"used {format_duration(now - used)} ago"
                continue
            why = f"not the current settings' cache, unused for {format_duration(now - used)}"
        else:
            if changed > now - LEFTOVER_AFTER:
                kept[folder.name] = f"changed {format_duration(now - changed)} ago"
                continue
            if array_cache.writer_alive(folder):
                kept[folder.name] = "a live process is writing it"
                continue
            unchanged = format_duration(now - changed)
            why = f"left by a writer or a deletion that stopped, unchanged for {unchanged}"
        if not dry_run:
            try:
                if used is None:
                    shutil.rmtree(folder)
                elif not _discard_unused(folder, used):
                    if folder.exists():
                        kept[folder.name] = "used while the sweep removed it"
                    continue
            except FileNotFoundError:  # another sweep's
                continue
            except OSError as exc:
                kept[folder.name] = f"could not be removed ({exc})"
                continue
        removed[folder.name], sizes[folder.name] = why, size
    return Sweep(kept, removed, sizes, unknown)


def _discard_unused(folder: Path, used: float) -> bool:
    """Deletes the cache in `folder` unless its record's time is no longer `used`: a search
    marked it used between the sweep's reading of that time and its renaming (then it stays);
    False where it stays or was gone already."""
    return array_cache.discard(folder, keep=lambda aside: array_cache.last_used(aside) != used)


def cache_bytes(config: StudyConfig) -> int | None:
    """What the study's cache folder holds on disk; None where it has none on this machine."""
    if not config.cache_dir.is_dir():
        return None
    return _size_and_change(config.cache_dir)[0]


def _folders(cache_dir: Path) -> list[Path]:
    """The folders hpo wrote in `cache_dir` (by their names; not links), in name order."""
    try:
        with os.scandir(cache_dir) as entries:
            names = [
                e.name
                for e in entries
                if e.is_dir(follow_symlinks=False)
                and (_CACHE.fullmatch(e.name) or _LEFTOVER.fullmatch(e.name))
            ]
    except FileNotFoundError:
        return []
    return [cache_dir / name for name in sorted(names)]


def _holds_only_ours(folder: Path, *, empty: bool) -> bool:
    """Whether all `folder` holds is files (not links, not folders) of the names hpo writes in
    a cache; an empty folder is one where `empty` (a leftover, whose deletion stopped)."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name if e.is_file(follow_symlinks=False) else "" for e in entries]
    except OSError:  # removed meanwhile, or unreadable: nothing to tell it is hpo's
        return False
    ours = all(name == array_cache.META_NAME or name.endswith(".npy") for name in names)
    return ours and (empty or bool(names))


def _size_and_change(folder: Path) -> tuple[int, float]:
    """The bytes of the files under `folder` and the last time any of them, or the folder, was
    written (a writer at work writes one file after another)."""
    size, changed = 0, 0.0
    for root, _dirs, files in os.walk(folder):
        for path in (root, *(os.path.join(root, name) for name in files)):
            try:
                stat = os.lstat(path)
            except OSError:  # removed meanwhile
                continue
            changed = max(changed, stat.st_mtime)
            if path != root:
                size += stat.st_size
    return size, changed
