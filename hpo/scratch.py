"""Scratch folders: in the system's temporary folder, named by the process that makes them, and
each trial's in its study's `trials/`, named by the trial.

`hpo ensemble`, `hpo export`, `hpo distill` and each trial copy checkpoints into a scratch folder
and remove it when they end. A process killed with SIGKILL (or by the out-of-memory killer)
cannot: its folder, megabytes of checkpoints, stays. So each folder's name holds its process's
id, and every new one first removes those whose process is gone: the next hpo command sweeps
what a killed one left.

A trial's folder (`trials/00012/`, its checkpoint until it is stored) is named by its trial
instead, whose state in the study says whether it may still be written: the next search and
`hpo gc` remove those of finished trials (`sweep_trial_scratch`), on any machine sharing the
study's folder, and never one of a trial still RUNNING.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.training.isolation import process_alive

if TYPE_CHECKING:
    import optuna

__all__ = ["machine_tag", "scratch_folder", "sweep_scratch", "sweep_trial_scratch", "trial_scratch"]

# hpo-<kind>-<pid>-<machine>-<tempfile's random part>: the random part never holds a "-". The
# machine (`machine_tag`) keeps apart the processes of machines or containers that share a
# temporary folder, as a worker's identity does (`hpo.search.identity`).
_NAME = re.compile(r"hpo-[a-z]+-(?P<pid>\d+)-(?P<machine>[0-9a-f]{12})-[^-]+\Z")
# A trial's folder in `trials/`: its number, five digits or more (`trial_scratch`).
_TRIAL = re.compile(r"\d{5,}")


def scratch_folder(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A new scratch folder for `kind` of work ("ensemble", "export"), removed when its
    context ends; the scratch folders of processes that have died are removed first."""
    sweep_scratch()
    return tempfile.TemporaryDirectory(prefix=f"hpo-{kind}-{os.getpid()}-{machine_tag()}-")


def sweep_scratch() -> list[Path]:
    """Removes this user's hpo scratch folders whose process, on this machine, no longer runs.

    Returns:
        The folders removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or match["machine"] != machine_tag():
            continue  # not hpo's, or another machine's: this one cannot tell if it runs
        if process_alive((int(match["pid"]), None)):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue  # another user's: theirs to sweep
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def trial_scratch(study_dir: Path, number: int) -> Path:
    """Where trial `number` of the study in `study_dir` keeps its checkpoint until it is
    uploaded; its process removes it when it ends."""
    return study_dir / "trials" / f"{number:05d}"


def sweep_trial_scratch(
    study_dir: Path, study: optuna.Study, *, dry_run: bool = False
) -> dict[Path, int]:
    """Removes the scratch folders (`trial_scratch`) of the study's finished trials.

    A trial's process removes its own as it ends; one stopped first (SIGKILL, the out-of-memory
    killer, Ctrl-C landing as it was ended) left it, checkpoints of tens of MB, and its retry
    runs under a new number. A finished trial (COMPLETE, PRUNED, FAIL) writes nothing more:
    its worker records the end after its process has ended, and a trial failed by another
    worker (a heartbeat gone stale) can no longer record a result. A RUNNING or WAITING trial's
    folder stays, whatever machine runs it, as does any folder of a number the study has no
    trial of, or of a name or kind (a link, a file) hpo does not make there.

    Args:
        study_dir: The study's folder.
        study: The study.
        dry_run: Only say what would be removed.

    Returns:
        Each folder removed (or that would be) -> the bytes it held.
    """
    try:
        entries = list(os.scandir(study_dir / "trials"))
    except OSError:
        return {}
    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    removed: dict[Path, int] = {}
    for entry in entries:
        if not (_TRIAL.fullmatch(entry.name) and int(entry.name) in finished):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        size = _bytes_in(folder)
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                continue  # not ours to remove (another user's files), or not now
        removed[folder] = size
    return removed


def _bytes_in(folder: Path) -> int:
    """What the files under `folder` take (those that can be read)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total


@functools.cache
def machine_tag() -> str:
    """Twelve hex digits that differ between machines, boots and PID namespaces (containers)
    that share a temporary folder: of the host name, the kernel's boot id and the namespace."""
    from hpo.search.identity import WorkerIdentity

    me = WorkerIdentity.current()
    seen = f"{me.host}\0{me.boot_id}\0{me.pid_namespace}"
    return hashlib.sha256(seen.encode()).hexdigest()[:12]
