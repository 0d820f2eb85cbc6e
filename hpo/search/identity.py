"""Which worker runs a trial, in a form that two machines or containers cannot share.

A host name alone is not unique: containers and pods often share one, and some machines are all
called `localhost`. A process id is only meaningful in the PID namespace it was counted in. So a
worker records its host name (to read), its process id and start time (which, together, no later
process shares) and where those were counted: the kernel's boot id (one per machine and boot) and
its PID namespace (one per container on that kernel). Only a worker with the same host, boot id
and PID namespace can look a recorded process up and find it gone.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.contract import Attr
from hpo.training.isolation import process_alive, process_identity

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["BOOT_ID_PATH", "HOST_VAR", "PID_NAMESPACE_PATH", "WorkerIdentity"]

HOST_VAR = "HPO_WORKER_HOST"
# Module constants so that a test can point them elsewhere and play another kernel or container.
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE_PATH = Path("/proc/self/ns/pid")


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    """A worker process as a trial records it (`Attr.WORKER` and `Attr.WORKER_IDENTITY`).

    Attributes:
        host: $HPO_WORKER_HOST when set (tests that play several machines, Slurm tasks on one
            node), else the machine's host name. Readable, not unique.
        pid: The worker's process id.
        started: Its start time in clock ticks after boot (/proc/PID/stat); None without /proc.
        boot_id: The kernel's boot id; None without /proc (or from a version before it).
        pid_namespace: The worker's PID namespace, as the kernel names it (`pid:[4026531836]`);
            None without /proc (or from a version before it).
    """

    host: str
    pid: int
    started: str | None = None
    boot_id: str | None = None
    pid_namespace: str | None = None

    @classmethod
    def current(cls) -> WorkerIdentity:
        """This process's identity."""
        pid, started = process_identity(os.getpid())
        return cls(
            host=os.environ.get(HOST_VAR) or socket.gethostname(),
            pid=pid,
            started=started,
            boot_id=_read(BOOT_ID_PATH.read_text),
            pid_namespace=_read(lambda: os.readlink(PID_NAMESPACE_PATH)),
        )

    @classmethod
    def recorded(cls, trial: FrozenTrial) -> WorkerIdentity | None:
        """The identity `record` stored in `trial`, or None where it holds none.

        A trial recorded by a version before `Attr.WORKER_IDENTITY` has only `host:pid`; it comes
        back without start time, boot id and namespace, so no worker judges it locally.
        """
        fields = trial.user_attrs.get(Attr.WORKER_IDENTITY)
        if isinstance(fields, dict):
            return cls.from_fields(fields)
        host, _, pid = str(trial.user_attrs.get(Attr.WORKER, "")).rpartition(":")
        return cls(host=host, pid=int(pid)) if host and pid.isdigit() else None

    @classmethod
    def from_fields(cls, fields: object) -> WorkerIdentity | None:
        """The identity whose fields (`dataclasses.asdict`) a store holds, or None where they
        are not one (the store's word: missing fields or other types)."""
        if not isinstance(fields, dict):
            return None
        try:
            return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls)})._checked()
        except (KeyError, TypeError):
            return None

    def record(self, trial: optuna.Trial) -> None:
        """Stores this identity in `trial`: `host:pid` to read, all of it to compare."""
        trial.set_user_attr(Attr.WORKER, f"{self.host}:{self.pid}")
        trial.set_user_attr(Attr.WORKER_IDENTITY, dataclasses.asdict(self))

    def shares_processes_with(self, other: WorkerIdentity) -> bool:
        """Whether `other` counted its process id where this worker does, so that this worker
        can look it up: the same host, boot id and PID namespace, all of them known."""
        known = None not in (self.started, self.boot_id, self.pid_namespace, other.started)
        return known and (self.host, self.boot_id, self.pid_namespace) == (
            other.host,
            other.boot_id,
            other.pid_namespace,
        )

    def is_gone(self) -> bool:
        """Whether this worker's process has ended; only meaningful to a worker that
        `shares_processes_with` it."""
        return not process_alive((self.pid, self.started))

    def __str__(self) -> str:
        if self.boot_id is None:
            return f"{self.host}:{self.pid}"
        return f"{self.host}:{self.pid} (boot {self.boot_id[:8]}, {self.pid_namespace})"

    def _checked(self) -> WorkerIdentity:
        # Read back from a store: the types are the store's word, not ours.
        texts = (self.started, self.boot_id, self.pid_namespace)
        if not isinstance(self.host, str) or not isinstance(self.pid, int):
            raise TypeError
        if not all(value is None or isinstance(value, str) for value in texts):
            raise TypeError
        return self


def _read(read: Callable[[], str]) -> str | None:
    try:
        return read().strip() or None
    except OSError:
        return None
