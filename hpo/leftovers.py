"""How to combine, what it draws on: the files that writers killed part way left in a study's
folders, which `hpo gc` removes.

- **A trial's artifact that no record names.** Optuna stores a file first and returns its id
  after, so a trial's process killed in between (SIGKILL, the out-of-memory killer) left a
  whole checkpoint in the artifact folder that neither the trial nor the study names. A trial
  records each artifact's id before it stores it (`Attr.UPLOADS`, `store_trial_artifacts`):
  once the trial is finished (complete, pruned or failed: its process has ended), an id there
  that no trial records as its checkpoint or predictions, nor the study among its own
  artifacts, is such a file. It goes, and so does a partial file of it
  (`.<id>.<random>.partial`, `AtomicFileSystemArtifactStore.write`). A running or waiting
  trial's stay, whichever machine runs it: it may be storing them right now.
- **A partial file of any other upload**, and a partial figure or page of `hpo report` in the
  study's `reports/` (`.<name>.<pid>-<random>.part`, `hpo.disk.replacing`), once nothing
  wrote to it for `STALE_AFTER`: a live writer finishes one in seconds.

The artifact folder may be shared by several studies (`artifacts = "/shared/..."`), so a whole
file that this study's trials never recorded stays: it may be another study's, and only that
study can tell. Files stored before trials recorded `Attr.UPLOADS` (by an older hpo) are not
known, and stay. Only a file-system artifact store is looked at: an S3 bucket would take
requests at every collection.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.artifacts import named_artifacts, stored_id
from hpo.budget import format_duration
from hpo.contract import Attr

if TYPE_CHECKING:
    import optuna

    from hpo.config import StudyConfig

__all__ = ["STALE_AFTER", "Leftover", "sweep_leftovers"]

# Seconds after its last write that a partial file whose writer cannot be told is taken as left.
STALE_AFTER = 3600.0
# `AtomicFileSystemArtifactStore.write`'s partial file, and `hpo.disk.replacing`'s.
_PARTIAL = re.compile(r"\.(?P<id>.+)\.[0-9a-f]{8}\.partial")
_PART = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.part")


@dataclass(frozen=True)
class Leftover:
    """A file a stopped writer left, which `sweep_leftovers` removed (or would).

    Attributes:
        path: The file.
        size: Its bytes.
        why: Why it goes.
    """

    path: Path
    size: int
    why: str


def sweep_leftovers(
    config: StudyConfig, study: optuna.Study, *, reports: bool = True, dry_run: bool = False
) -> list[Leftover]:
    """Removes what stopped writers left in the study's artifact folder and, where `reports`,
    its `reports/`, by the rules this module's docstring gives.

    Args:
        config: The study's settings: its artifact folder and study folder.
        study: The study: its trials' records of what they stored.
        reports: Whether the study's folder is known to be this study's, so that its
            `reports/` may be swept. Default True.
        dry_run: Only say what would be removed.

    Returns:
        What was removed (or would be).
    """
    now = time.time()
    found: list[Leftover] = []
    if not config.artifact_location.startswith("s3://"):
        found += _artifact_leftovers(Path(config.artifact_location), study, now)
    if reports:
        found += [
            Leftover(path, size, f"part of a figure or page of hpo report, {why}")
            for path, size, why in _stale(config.study_dir / "reports", _PART, now)
        ]
    if dry_run:
        return found
    removed = []
    for leftover in found:
        try:
            leftover.path.unlink()
        except FileNotFoundError:  # another collection's
            continue
        except OSError:
            continue  # not this user's to remove, or not now: the next collection tries again
        removed.append(leftover)
    return removed


def _artifact_leftovers(folder: Path, study: optuna.Study, now: float) -> list[Leftover]:
    """The unrecorded uploads of finished trials in the artifact `folder`, their partial
    files, and other partial files that are stale."""
    named = named_artifacts(study)
    unrecorded: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        uploads = trial.user_attrs.get(Attr.UPLOADS)
        if not (trial.state.is_finished() and isinstance(uploads, list)):
            continue
        for value in uploads:
            if (artifact := stored_id(value)) is not None and artifact not in named:
                unrecorded[artifact] = trial.number
    found = []
    for path, size in _files(folder):
        if path.name in unrecorded:
            why = f"stored by trial {unrecorded[path.name]}, which was stopped before recording it"
            found.append(Leftover(path, size, why))
        elif (match := _PARTIAL.fullmatch(path.name)) and match["id"] in unrecorded:
            why = f"part of an upload of trial {unrecorded[match['id']]}, which was stopped"
            found.append(Leftover(path, size, why))
    found += [
        Leftover(path, size, f"part of an upload, {why}")
        for path, size, why in _stale(folder, _PARTIAL, now)
        if path not in {leftover.path for leftover in found}
    ]
    return found


def _stale(folder: Path, name: re.Pattern[str], now: float) -> list[tuple[Path, int, str]]:
    """The files in `folder` whose name is `name` unchanged for `STALE_AFTER` or longer, with
    their size and, for messages, how long."""
    stale = []
    for path, size in _files(folder):
        try:
            unchanged = now - path.stat().st_mtime
        except OSError:
            continue
        if name.fullmatch(path.name) and unchanged >= STALE_AFTER:
            stale.append((path, size, f"unchanged for {format_duration(unchanged)}"))
    return stale


def _files(folder: Path) -> list[tuple[Path, int]]:
    """The plain files in `folder` (not links, nor folders), with their sizes."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    files = []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                files.append((Path(entry.path), entry.stat(follow_symlinks=False).st_size))
        except OSError:
            continue
    return files
