"""Scratch folders in the system's temporary folder, named by the process that makes them.

`hpo ensemble`, `hpo export`, `hpo distill` and each trial copy checkpoints into a scratch folder
and remove it when they end. A process killed with SIGKILL (or by the out-of-memory killer)
cannot: its folder, megabytes of checkpoints, stays. So each folder's name holds its process's
id, and every new one first removes those whose process is gone: the next hpo command sweeps
what a killed one left.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from hpo.training.isolation import process_alive

__all__ = ["machine_tag", "scratch_folder", "sweep_scratch"]

# hpo-<kind>-<pid>-<machine>-<tempfile's random part>: the random part never holds a "-". The
# machine (`machine_tag`) keeps apart the processes of machines or containers that share a
# temporary folder, as a worker's identity does (`hpo.search.identity`).
_NAME = re.compile(r"hpo-[a-z]+-(?P<pid>\d+)-(?P<machine>[0-9a-f]{12})-[^-]+\Z")


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


@functools.cache
def machine_tag() -> str:
    """Twelve hex digits that differ between machines, boots and PID namespaces (containers)
    that share a temporary folder: of the host name, the kernel's boot id and the namespace."""
    from hpo.search.identity import WorkerIdentity

    me = WorkerIdentity.current()
    seen = f"{me.host}\0{me.boot_id}\0{me.pid_namespace}"
    return hashlib.sha256(seen.encode()).hexdigest()[:12]
