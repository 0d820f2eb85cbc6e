from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import optuna

from hpo.contract import Attr
from hpo.search import identity
from hpo.search.identity import WorkerIdentity
from hpo.store import open_storage

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_recorded_identity_reads_back_whole_and_an_older_or_tampered_one_safely(
    tmp_path: Path,
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True, heartbeat=False)
    study = optuna.create_study(storage=storage)
    me = WorkerIdentity.current()
    assert me.pid == os.getpid()
    assert None not in (me.started, me.boot_id, me.pid_namespace)
    me.record(study.ask())
    study.ask().set_user_attr(Attr.WORKER, "old-host:42")
    tampered = study.ask()
    me.record(tampered)
    tampered.set_user_attr(Attr.WORKER_IDENTITY, {**dataclasses.asdict(me), "pid": "42"})
    recorded, legacy, broken = (WorkerIdentity.recorded(t) for t in study.get_trials())

    assert recorded == me
    assert study.trials[0].user_attrs[Attr.WORKER] == f"{me.host}:{me.pid}"
    assert legacy == WorkerIdentity(host="old-host", pid=42)
    assert not me.shares_processes_with(legacy)
    assert broken is None


def test_host_name_override_and_what_tells_two_containers_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_WORKER_HOST", "pod")
    here = WorkerIdentity.current()
    (tmp_path / "ns").symlink_to("pid:[4026599999]")
    monkeypatch.setattr(identity, "PID_NAMESPACE_PATH", tmp_path / "ns")
    there = dataclasses.replace(WorkerIdentity.current(), pid=here.pid, started=here.started)

    assert here.host == there.host == "pod"
    assert here.boot_id == there.boot_id
    assert there.pid_namespace == "pid:[4026599999]"
    assert here.shares_processes_with(here)
    assert not here.shares_processes_with(there)
    assert str(there) == f"pod:{here.pid} (boot {here.boot_id[:8]}, pid:[4026599999])"
