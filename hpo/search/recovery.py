"""Recovering from killed workers and stopping cleanly on signals."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.contract import Attr
from hpo.store import STALE_TRIAL_RETRIES

if TYPE_CHECKING:
    import optuna

__all__ = [
    "WORKER_ATTR",
    "raise_keyboard_interrupt_on_sigterm",
    "sweep_dead_local_trials",
    "worker_id",
]

WORKER_ATTR = Attr.WORKER


def worker_id() -> str:
    """Identifies this process across machines: `host:pid`.

    The host is $HPO_WORKER_HOST when set (containers that share a hostname, tests that play
    several machines), else the machine's hostname.
    """
    return f"{_host()}:{os.getpid()}"


def _host() -> str:
    return os.environ.get("HPO_WORKER_HOST") or socket.gethostname()


def sweep_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fails RUNNING trials whose worker ran on this machine and is gone, and re-queues them.

    Heartbeats find such trials too, but only after their grace period; on one machine a dead
    process id is certain at once. Trials of workers on other machines are left to heartbeats.

    Returns:
        Numbers of the trials that were failed (each re-queued as a new trial).
    """
    host = _host()
    storage = study._storage
    retry = RetryHeartbeatStaleTrialCallback(max_retry=STALE_TRIAL_RETRIES)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        storage.set_trial_user_attr(
            trial._trial_id, Attr.FAIL_REASON, f"its worker {owner} died; re-queued by the next run"
        )
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            failed.append(trial.number)
            frozen = storage.get_trial(trial._trial_id)
            for key in (WORKER_ATTR, Attr.FAIL_REASON):
                frozen.user_attrs.pop(key, None)
            retry(study, frozen)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def raise_keyboard_interrupt_on_sigterm() -> None:
    """Makes SIGTERM behave like Ctrl-C: the running trial is marked FAIL and the process exits."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
