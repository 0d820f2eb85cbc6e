"""Recovering from killed workers and stopping cleanly on signals."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState

from hpo.contract import Attr
from hpo.search.identity import WorkerIdentity
from hpo.search.progress import FINISHED
from hpo.store import STALE_TRIAL_RETRIES, may_retry
from hpo.study import fail_queued

if TYPE_CHECKING:
    import optuna

__all__ = [
    "dead_workers_way_out",
    "raise_keyboard_interrupt_on_sigterm",
    "requeue",
    "retire_retries",
    "sweep_dead_local_trials",
]

# What a trial held when it was queued, which its retry keeps: whether it is a family's default.
_QUEUED_ATTRS = (Attr.SEEDED,)
# Why a queued retry was never trained (`retire_retries`).
NOT_RUN = "not run: n_trials={n_trials} reached (retry of trial {failed})"


def sweep_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fails RUNNING trials whose worker ran where this one runs and is gone, and re-queues them.

    Heartbeats find such trials too, but only after their grace period; where a process id can be
    looked up, a dead one is certain at once. "Where this one runs" is the same host, kernel boot
    and PID namespace (`WorkerIdentity.shares_processes_with`): a container that shares the host
    name cannot see the other's processes and leaves its trials to heartbeats, as it leaves
    trials of other machines, trials of a version that recorded only `host:pid`, and every trial
    where /proc is missing.

    Returns:
        Numbers of the trials that were failed (each re-queued as a new trial).
    """
    me = WorkerIdentity.current()
    storage = study._storage
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = WorkerIdentity.recorded(trial)
        if owner is None or not me.shares_processes_with(owner) or not owner.is_gone():
            continue
        # Its reason is written while it runs: a finished trial takes no more attributes.
        again = may_retry(trial, STALE_TRIAL_RETRIES)
        reason = (
            f"its worker {owner} died; re-queued by the next run"
            if again
            else f"its worker {owner} died, as the workers of its {STALE_TRIAL_RETRIES} "
            f"earlier tries did; not queued again"
        )
        try:
            storage.set_trial_user_attr(trial._trial_id, Attr.FAIL_REASON, reason)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # failed meanwhile by another run (its heartbeat)
            continue
        failed.append(trial.number)
        if again:
            requeue(study, trial._trial_id)
    return failed


def dead_workers_way_out(study: optuna.Study) -> str:
    """What to do about the study's RUNNING trials if their workers died, for a message.

    Heartbeats fail a dead worker's trial after their grace period; the storage proxy has none,
    and its workers' trials record none for a worker on the database to find stale: only the
    local sweep of a run on the dead worker's machine, or a hand, fails them.
    """
    if is_heartbeat_enabled(study._storage):
        return (
            "if those workers died elsewhere, their trials are queued again once their "
            "heartbeat is stale: run the same command then."
        )
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trials = ", ".join(
        f"{t.number} (worker {t.user_attrs.get(Attr.WORKER, 'unknown')})" for t in running
    )
    return (
        f"if those workers died, nothing fails their trials ({trials}): this storage has no "
        f"heartbeats (the gRPC storage proxy). Run the same command on the machine a dead "
        f"worker ran on, which fails its trials and queues them again; where that machine is "
        f"gone, fail them by hand as docs/scale-out.md shows (a worker that died behind the "
        f"proxy), then run this again."
    )


def requeue(study: optuna.Study, trial_id: int, limit: int | None = STALE_TRIAL_RETRIES) -> bool:
    """Queues a trial that did not finish again, with the parameters it had (at most `limit`
    times; None: always): Optuna's retry of a trial whose heartbeat went stale, with none of
    what the trial recorded as it ran (its worker, scores, checkpoint), only whether it was a
    family's default. The next run trains it before sampling new trials, after those queued
    before it (Optuna runs its queue in order).

    Returns:
        Whether it was queued (not, after `limit` tries).
    """
    frozen = study._storage.get_trial(trial_id)
    if not may_retry(frozen, limit):
        return False
    kept = {k: v for k, v in frozen.user_attrs.items() if k in _QUEUED_ATTRS}
    frozen.user_attrs.clear()
    frozen.user_attrs.update(kept)
    RetryHeartbeatStaleTrialCallback()(study, frozen)
    return True


def retire_retries(study: optuna.Study, n_trials: int) -> dict[int, int]:
    """Marks FAIL the retries still queued once the study holds `n_trials` finished trials.

    A retry (`requeue`, or Optuna's of a trial whose heartbeat went stale) stands in for a
    failed trial, which n_trials does not count. Once the study holds its n_trials without it,
    no run to that n_trials trains it, and left WAITING it would show as waiting for ever
    (`hpo status`, the dashboard, `hpo gc`). Trials queued otherwise (the family defaults, the
    user's `enqueue_trial`) stay queued for a run with a larger n_trials.

    Returns:
        The retries marked FAIL: each one's number -> the number of the trial it retried.
    """
    trials = study.get_trials(deepcopy=False)
    if sum(t.state in FINISHED for t in trials) < n_trials:
        return {}
    storage = study._storage
    retired: dict[int, int] = {}
    for trial in trials:
        failed = trial.system_attrs.get("failed_trial")
        if trial.state != TrialState.WAITING or failed is None:
            continue
        if fail_queued(storage, trial._trial_id, NOT_RUN.format(n_trials=n_trials, failed=failed)):
            retired[trial.number] = failed
    return retired


def raise_keyboard_interrupt_on_sigterm() -> None:
    """Makes SIGTERM behave like Ctrl-C: the running trial is marked FAIL and the process exits."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
