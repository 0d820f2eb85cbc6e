"""`hpo gc` and `keep_checkpoints`: what is kept, what goes, and that nothing needed goes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pytest
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState, create_trial

from hpo import artifacts as artifacts_module
from hpo.artifacts import (
    GC_ATTR_PREFIX,
    HOLD_ATTR_PREFIX,
    Collection,
    artifact_bytes,
    collect_garbage,
    has_checkpoint,
    held_checkpoints,
    holding,
    plan_collection,
    removed_checkpoints,
)
from hpo.command_options import open_study
from hpo.config import load_study_config
from hpo.contract import Attr, fetch_checkpoint
from hpo.ensemble import build as hpo_build
from hpo.ensemble.build import build_ensemble
from hpo.ensemble.weighting import Method
from hpo.search.identity import WorkerIdentity
from hpo.store import AtomicFileSystemArtifactStore, open_artifact_store, open_storage
from hpo.training.isolation import process_identity

from .conformance.test_text_models import hpo
from .test_caches import _DAY, _age, _leftover

if TYPE_CHECKING:
    import contextlib

    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

    from hpo.ensemble.selection import Candidate, Member
from .conftest import hold_readers, write_study

ROOT = Path(__file__).resolve().parents[1]


def _study_with_checkpoints(
    tmp_path: Path, values: list[float], storage: optuna.storages.BaseStorage | None = None
) -> tuple[optuna.Study, AtomicFileSystemArtifactStore]:
    """A study (in memory by default) whose COMPLETE trials have the given values and 1 kB
    checkpoints."""
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    (tmp_path / "artifacts").mkdir()
    study = optuna.create_study(direction="maximize", storage=storage)
    for value in values:
        trial = study.ask()
        artifact_id = upload_artifact(
            artifact_store=store, file_path=_file(tmp_path, trial.number), study_or_trial=trial
        )
        trial.set_user_attr(Attr.CHECKPOINT_ID, artifact_id)
        study.tell(trial, value)
    return study, store


def _file(tmp_path: Path, number: int) -> str:
    path = tmp_path / f"member-{number}.keras"
    path.write_bytes(bytes(1000))
    return str(path)


def _stored(study: optuna.Study, store: AtomicFileSystemArtifactStore) -> set[int]:
    return {
        t.number
        for t in study.get_trials(deepcopy=False)
        if Attr.CHECKPOINT_ID in t.user_attrs and store.size(t.user_attrs[Attr.CHECKPOINT_ID])
    }


def test_gc_keeps_the_best_ensemble_members_and_unfinished_trials(tmp_path: Path) -> None:
    study, store = _study_with_checkpoints(tmp_path, [0.70, 0.90, 0.60, 0.80, 0.50])
    study.set_user_attr("ensemble_top2", {"members": [2, 1], "weights": [0.5, 0.5]})
    running = study.ask()  # a worker storing its checkpoint right now
    artifact_id = upload_artifact(
        artifact_store=store, file_path=_file(tmp_path, running.number), study_or_trial=running
    )
    running.set_user_attr(Attr.CHECKPOINT_ID, artifact_id)

    dry = collect_garbage(study, store, keep=2, dry_run=True)
    assert sorted(dry.removed) == [0, 4]  # best two are 1 and 3; 2 is an ensemble member
    assert dry.freed_bytes == 2000
    assert _stored(study, store) == {0, 1, 2, 3, 4, 5}, "a dry run deleted something"
    assert removed_checkpoints(study) == {}

    done = collect_garbage(study, store, keep=2)
    assert sorted(done.removed) == [0, 4]
    assert done.kept == {
        5: "not finished",
        2: "member of ensemble_top2",
        1: "member of ensemble_top2",
        3: "among the best 2",
    }
    assert _stored(study, store) == {1, 2, 3, 5}
    assert set(removed_checkpoints(study)) == {0, 4}
    assert [has_checkpoint(t, removed_checkpoints(study)) for t in study.trials] == [
        False,
        True,
        True,
        True,
        False,
        True,
    ]
    # A second collection finds nothing more to do, and records nothing.
    attrs = dict(study.user_attrs)
    assert collect_garbage(study, store, keep=2).removed == {}
    assert study.user_attrs == attrs


def test_gc_survives_an_interrupted_collection_and_a_minimising_study(tmp_path: Path) -> None:
    study, store = _study_with_checkpoints(tmp_path, [0.3, 0.1, 0.2])
    minimising = optuna.create_study(direction="minimize")
    for trial in study.trials:
        minimising.add_trial(
            create_trial(value=trial.value, user_attrs=trial.user_attrs, state=TrialState.COMPLETE)
        )
    kept, doomed = plan_collection(minimising, keep=1)
    assert kept == {1: "among the best 1"}  # the lowest loss
    assert [t.number for t in doomed] == [0, 2]
    # A collection killed between its record and the deletions: the next one finishes the job.
    store.remove(study.trials[0].user_attrs[Attr.CHECKPOINT_ID])
    assert sorted(collect_garbage(minimising, store, keep=1).removed) == [0, 2]
    assert _stored(minimising, store) == {1}


def test_a_collection_stopped_after_its_record_has_its_files_deleted_by_the_next(
    tmp_path: Path,
) -> None:
    # Killed between recording trial 0's removal and deleting its file: the next collection
    # skipped trial 0 (recorded as removed) and its file stayed for good.
    study, store = _study_with_checkpoints(tmp_path, [0.1, 0.3, 0.2])
    study.set_user_attr(f"{GC_ATTR_PREFIX}stopped", {"removed": {"0": "not among the best"}})
    assert _stored(study, store) == {0, 1, 2}
    dry = collect_garbage(study, store, keep=5, dry_run=True)
    assert dry.removed == {0: "recorded as removed by a collection that was stopped"}
    assert dry.freed_bytes == 1000 and _stored(study, store) == {0, 1, 2}
    assert sorted(collect_garbage(study, store, keep=5).removed) == [0]
    assert _stored(study, store) == {1, 2}
    assert collect_garbage(study, store, keep=5).removed == {}


def test_a_studys_artifact_bytes_count_its_own_files_where_studies_share_a_folder(
    tmp_path: Path,
) -> None:
    # hpo status and hpo gc gave the whole folder's size, other studies' checkpoints with it.
    study, store = _study_with_checkpoints(tmp_path, [0.7, 0.9])
    other = optuna.create_study()
    trial = other.ask()
    big = tmp_path / "other.keras"
    big.write_bytes(bytes(5000))
    trial.set_user_attr(
        Attr.CHECKPOINT_ID,
        upload_artifact(artifact_store=store, file_path=str(big), study_or_trial=trial),
    )
    config = dataclasses.replace(
        load_study_config(write_study(tmp_path, tmp_path)),
        artifacts=str(tmp_path / "artifacts"),
    )
    assert artifact_bytes(config, study) == 2000
    assert artifact_bytes(config, other) == 5000
    # A study changed by hand: an upload's record naming a path (Optuna refused it with a
    # ValueError, which stopped hpo status and hpo gc), then one that is not Optuna's JSON.
    system = other._storage.set_study_system_attr
    record = {"artifact_id": "../../x", "filename": "r", "mimetype": "x", "encoding": None}
    system(other._study_id, "artifacts:../../x", json.dumps(record))
    assert artifact_bytes(config, other) == 5000
    system(other._study_id, "artifacts:bad", "{not json")
    assert artifact_bytes(config, other) == 5000
    shutil.rmtree(tmp_path / "artifacts")
    assert artifact_bytes(config, study) is None


def test_gc_command_dry_run_real_run_and_the_ensemble_after(study_copy: Path) -> None:
    config = load_study_config(study_copy)
    ensemble = hpo(
        "ensemble",
        "--study",
        str(study_copy),
        "--top",
        "2",
        "--method",
        "uniform",
        cwd=study_copy.parent,  # its ensembles/ there, not in the repository
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    members = set(study.user_attrs["ensemble_top2"]["members"])
    before = sorted(p.name for p in config.artifact_dir.iterdir())

    dry = hpo("gc", "--study", str(study_copy), "--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 2 checkpoint(s)" in dry.stdout
    assert sorted(p.name for p in config.artifact_dir.iterdir()) == before

    done = hpo("gc", "--study", str(study_copy), "--keep", "1")
    assert done.returncode == 0, done.stderr
    assert "removed 2 checkpoint(s)" in done.stdout
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    removed = removed_checkpoints(study)
    assert len(removed) == 2 and not members & set(removed)
    store = AtomicFileSystemArtifactStore(config.artifact_dir)
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        if trial.number in removed:
            assert store.size(trial.user_attrs[Attr.CHECKPOINT_ID]) == 0
        else:
            fetch_checkpoint(store, trial, config.study_dir)  # verifies its SHA-256

    status = hpo("status", "--study", str(study_copy), "--json")
    assert status.returncode == 0, status.stderr
    artifacts = json.loads(status.stdout)["artifacts"]
    assert artifacts["checkpoints"] == 2 and artifacts["removed_checkpoints"] == 2
    assert artifacts["bytes"] == sum(p.stat().st_size for p in config.artifact_dir.iterdir())
    again = hpo(
        "ensemble",
        "--study",
        str(study_copy),
        "--top",
        "3",
        "--method",
        "uniform",
        cwd=study_copy.parent,  # its ensembles/ there, not in the repository
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # 4 trials are COMPLETE; it said the study had only 2.
    assert "only 2 COMPLETE trials whose checkpoint hpo gc kept; using all" in again.stderr

    # Without --keep nor keep_checkpoints, every checkpoint stays and the caches are swept.
    stale = config.cache_dir / "imdb-ffffffffffffffff"
    (current,) = config.cache_dir.iterdir()
    shutil.copytree(current, stale)
    _age(stale, 2 * _DAY)
    leftover = _leftover(config.cache_dir, 2 * 3600)
    size = sum(p.stat().st_size for p in stale.iterdir())
    dry = hpo("gc", "--study", str(study_copy), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "kept every checkpoint" in dry.stdout and "keep_checkpoints" in dry.stdout
    assert f"would remove 2 folder(s) ({(size + 3000) / 1e6:.1f} MB); kept 1." in dry.stdout
    assert f"would remove {stale.name} ({size / 1e6:.1f} MB): not the current" in dry.stdout
    assert f"kept {current.name}: the cache of the study's current settings" in dry.stdout
    assert stale.is_dir() and leftover.is_dir()
    done = hpo("gc", "--study", str(study_copy))
    assert done.returncode == 0, done.stderr
    assert f"removed 2 folder(s) ({(size + 3000) / 1e6:.1f} MB freed)" in done.stdout
    assert sorted(config.cache_dir.iterdir()) == [current]
    assert len(removed_checkpoints(study)) == 2
    status = hpo("status", "--study", str(study_copy), "--json")
    cache = json.loads(status.stdout)["cache"]
    assert cache["bytes"] == sum(p.stat().st_size for p in current.iterdir()) > 0


SLOW_ASK = """
import time

import optuna

_ask = optuna.Study.ask


def _slow_ask(self, *args, **kwargs):
    time.sleep(1.0)
    return _ask(self, *args, **kwargs)


optuna.Study.ask = _slow_ask
"""


@pytest.mark.slow
def test_keep_checkpoints_while_workers_run_loses_nothing_they_need(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study_file = write_study(tmp_path, fake_imdb, n_trials=4)
    study_file.write_text(
        study_file.read_text().replace("n_trials = 4\n", "n_trials = 4\nkeep_checkpoints = 1\n")
    )
    config = load_study_config(study_file)
    # Each trial made a second after a worker decided the study needs it: both workers deciding
    # in that second started one each, and the study ended "5 finished" of 4 (hpo.search.turns).
    shim = tmp_path / "slow-ask"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLOW_ASK)
    search = subprocess.Popen(
        [sys.executable, "-m", "hpo", "search", "--study", str(study_file), "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(shim)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    collected = 0
    try:
        # Besides the workers' own collections after each trial, a user's `hpo gc` in a loop.
        while search.poll() is None:
            try:
                storage = open_storage(config.storage_url, create=False, heartbeat=False)
                study = optuna.load_study(study_name=config.name, storage=storage)
            except Exception:  # the study is not created yet
                time.sleep(0.5)
                continue
            store = AtomicFileSystemArtifactStore(config.artifact_dir)
            collected += len(collect_garbage(study, store, keep=1).removed)
            time.sleep(0.3)
        out, err = search.communicate()
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    ended = [(t.number, t.state.name, t.user_attrs) for t in study.get_trials()]
    assert "4 finished, 0 failed" in out, (out[-3000:], err[-3000:], ended)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4, ended
    removed = removed_checkpoints(study)
    best = max(complete, key=lambda t: (t.value, -t.number))
    kept = [t for t in complete if has_checkpoint(t, removed)]
    # The last trial to complete collected with every trial finished: the best alone stays.
    assert kept == [best], [(t.number, t.value) for t in complete]
    store = AtomicFileSystemArtifactStore(config.artifact_dir)
    for trial in kept:
        fetch_checkpoint(store, trial, tmp_path)
    # The one checkpoint, and every trial's validation predictions; nothing half-written
    # (beside them the collections' lock file).
    assert sorted(p.name for p in config.artifact_dir.iterdir()) == sorted(
        [".collection.lock", best.user_attrs[Attr.CHECKPOINT_ID]]
        + [t.user_attrs[Attr.PREDICTIONS_ID] for t in complete]
    )


def test_gc_removes_what_stopped_trials_left_and_nothing_of_a_running_one(
    study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A trial stopped by SIGKILL or Ctrl-C left trials/00001/ (its checkpoints, 39 MB after one
    # Ctrl-C) for good: gc did not look at trials/. One killed right after storing its
    # checkpoint left it in artifacts/, named by no record, which gc kept and status counted.
    import uuid

    from hpo.training.runner import scratch_folder

    config = load_study_config(study_copy)
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    running = study.ask()  # a worker's, on this machine or another sharing the folder
    for number in (1, running.number):
        scratch_folder(config, number).mkdir(parents=True)
        (scratch_folder(config, number) / "training.keras").write_bytes(bytes(2_000_000))
    unnamed, uploading = (config.artifact_dir / str(uuid.uuid4()) for _ in range(2))
    for path in (unnamed, uploading):
        path.write_bytes(bytes(3_000_000))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={Attr.UPLOADS: [unnamed.name]}))
    running.set_user_attr(Attr.UPLOADS, [uploading.name])

    assert artifacts_module.main(["--study", str(study_copy), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 (2.0 MB)" in out
    assert "Files that stopped writers left: would remove 1 (3.0 MB)" in out
    assert scratch_folder(config, 1).is_dir() and unnamed.exists()
    assert artifacts_module.main(["--study", str(study_copy), "--keep", "4"]) == 0
    out = capsys.readouterr().out
    assert f"Scratch folders of finished trials in {config.study_dir / 'trials'}" in out
    assert "removed 1 (2.0 MB)" in out
    number = len(study.trials) - 1
    assert f"removed {unnamed} (3.0 MB): stored by trial {number}, which was stopped" in out
    assert not scratch_folder(config, 1).exists() and not unnamed.exists()
    assert scratch_folder(config, running.number).is_dir() and uploading.exists()


def test_gc_deletes_no_file_another_record_names_nor_one_that_is_not_an_artifact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A shared store's records are data: a doomed trial's checkpoint id that names a kept
    # trial's predictions, the study's own report, or a file by path must delete nothing.
    study, store = _study_with_checkpoints(tmp_path, [0.9, 0.8, 0.7, 0.6, 0.5])
    predictions = upload_artifact(
        artifact_store=store, file_path=_file(tmp_path, 90), study_or_trial=study
    )
    report = upload_artifact(
        artifact_store=store, file_path=_file(tmp_path, 91), study_or_trial=study
    )
    victim = tmp_path / "artifacts" / "precious.txt"
    victim.write_text("mine")
    tampered = optuna.create_study(direction="maximize")
    tampered._storage.set_study_system_attr(
        tampered._study_id, f"artifacts:{report}", json.dumps({"artifact_id": report})
    )
    for trial in study.trials:
        attrs = dict(trial.user_attrs)
        attrs[Attr.CHECKPOINT_ID] = {
            0: attrs[Attr.CHECKPOINT_ID],
            1: predictions,
            2: report,
            3: "precious.txt",
            4: 7,
        }[trial.number]
        if trial.number == 0:
            attrs[Attr.PREDICTIONS_ID] = predictions
        tampered.add_trial(create_trial(value=trial.value, user_attrs=attrs))
    with caplog.at_level("WARNING"):
        done = collect_garbage(tampered, store, keep=1)
    assert done.removed == {}
    assert victim.read_text() == "mine"
    assert store.size(predictions) and store.size(report)
    assert "trial 3's checkpoint_artifact_id is 'precious.txt', not an artifact id" in caplog.text
    assert "trial 4's checkpoint_artifact_id is 7" in caplog.text


def test_malformed_collection_records_are_passed_over(tmp_path: Path) -> None:
    study, _ = _study_with_checkpoints(tmp_path, [0.1, 0.2])
    study.set_user_attr(f"{GC_ATTR_PREFIX}a", {"removed": {"abc": "x", "1": "old"}})
    study.set_user_attr(f"{GC_ATTR_PREFIX}b", {"removed": [1, 2]})
    study.set_user_attr(f"{GC_ATTR_PREFIX}c", "junk")
    assert removed_checkpoints(study) == {1: "old"}


def test_gc_keeps_what_a_reader_holds_until_it_is_released_or_lapses(tmp_path: Path) -> None:
    study, store = _study_with_checkpoints(tmp_path, [0.70, 0.90, 0.60, 0.80, 0.50])
    with holding(study, [0, 4], "hpo ensemble") as removed:
        assert removed == {}
        assert hold_readers(held_checkpoints(study)) == dict.fromkeys([0, 4], "hpo ensemble")
        dry = collect_garbage(study, store, keep=1, dry_run=True)
        assert sorted(dry.removed) == [2, 3]
        assert hold_readers(dry.kept) == {0: "hpo ensemble", 1: "", 4: "hpo ensemble"}
        assert sorted(collect_garbage(study, store, keep=1).removed) == [2, 3]
        assert _stored(study, store) == {0, 1, 4}
    assert held_checkpoints(study) == {}
    assert sorted(collect_garbage(study, store, keep=1).removed) == [0, 4]
    assert _stored(study, store) == {1}
    # A hold whose reader was killed lapses; malformed ones are passed over.
    now = time.time()
    study.set_user_attr(f"{HOLD_ATTR_PREFIX}killed", {"trials": [1], "until": now - 1})
    study.set_user_attr(f"{HOLD_ATTR_PREFIX}alive", {"trials": [1, "2", True], "until": now + 60})
    study.set_user_attr(f"{HOLD_ATTR_PREFIX}junk", {"trials": 1, "until": now + 60})
    for i, until in enumerate((float("inf"), float("nan"), 1e30)):  # no time: no hold
        study.set_user_attr(f"{HOLD_ATTR_PREFIX}timeless{i}", {"trials": [2], "until": until})
    assert hold_readers(held_checkpoints(study)) == {1: "another command"}
    assert held_checkpoints(study, now=now + 61) == {}


def test_a_process_that_reads_many_times_leaves_one_hold_record_where_none_can_be_deleted(
    tmp_path: Path,
) -> None:
    # In memory, as through a gRPC proxy, a released hold cannot be deleted, only set to null:
    # a server that loaded a model 50,000 times left 50,000 records, read by every collection.
    study, store = _study_with_checkpoints(tmp_path, [0.9, 0.1, 0.2])

    def records() -> dict[str, Any]:
        return {k: v for k, v in study.user_attrs.items() if k.startswith(HOLD_ATTR_PREFIX)}

    for _ in range(5):
        with holding(study, [1], "Study.load_model"):
            assert hold_readers(held_checkpoints(study)) == {1: "Study.load_model"}
    assert list(records().values()) == [None]
    with holding(study, [1], "hpo ensemble"), holding(study, [2], "hpo export"):
        assert hold_readers(held_checkpoints(study)) == {1: "hpo ensemble", 2: "hpo export"}
        assert sorted(collect_garbage(study, store, keep=1).removed) == []
    assert len(records()) == 2 and not any(records().values())
    assert sorted(collect_garbage(study, store, keep=1).removed) == [1, 2]
    # A forked child's holds are its own: it never writes over its parent's.
    forked = """
import os, optuna
from hpo.artifacts import holding
study = optuna.create_study()
with holding(study, [0], "parent"):
    if os.fork() == 0:
        with holding(study, [0], "child"):
            print(*sorted(k for k, v in study.user_attrs.items() if v), flush=True)
        os._exit(0)
    os.wait()
"""
    run = subprocess.run([sys.executable, "-c", forked], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    keys = run.stdout.split()
    assert len(keys) == 2 and len({key.rpartition("-")[0] for key in keys}) == 2, keys


def test_gc_tidying_a_released_hold_leaves_the_live_hold_written_since_under_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader through a gRPC proxy releases a hold as null and writes its next hold under the
    # same key; a collection that read the null and then deleted the key took the live hold.
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, store = _study_with_checkpoints(tmp_path, [0.9, 0.1, 0.2], storage)
    key = f"{HOLD_ATTR_PREFIX}proxyreader-0"
    study.set_user_attr(key, None)  # released, as through the proxy
    live = {"trials": [2], "by": "hpo export", "until": time.time() + 3600}
    deleting = artifacts_module.delete_study_attr

    def reader_holds_first(study: optuna.Study, key: str, **kwargs: Any) -> bool:
        study.set_user_attr(key, live)  # between the collection's read and its delete
        return deleting(study, key, **kwargs)

    monkeypatch.setattr(artifacts_module, "delete_study_attr", reader_holds_first)
    assert sorted(collect_garbage(study, store, keep=1).removed) == [1]
    monkeypatch.undo()
    assert study.user_attrs[key] == live
    assert hold_readers(held_checkpoints(study)) == {2: "hpo export"}
    assert collect_garbage(study, store, keep=1).removed == {}
    assert _stored(study, store) == {0, 2}


def test_a_reader_that_holds_between_a_collections_plan_and_record_keeps_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, store = _study_with_checkpoints(tmp_path, [0.70, 0.90, 0.60])
    planned = plan_collection
    holds: list[contextlib.AbstractContextManager[dict[int, str]]] = []
    seen: list[dict[int, str]] = []

    def plan_then_a_reader_holds(
        study: optuna.Study, keep: int, **kwargs: Any
    ) -> tuple[dict[int, str], list[FrozenTrial]]:
        plan = planned(study, keep, **kwargs)
        # An `hpo ensemble` begins here: it holds trial 0 and sees no removal recorded yet.
        holds.append(holding(study, [0], "hpo ensemble"))
        seen.append(holds[-1].__enter__())
        return plan

    monkeypatch.setattr("hpo.artifacts.plan_collection", plan_then_a_reader_holds)
    done = collect_garbage(study, store, keep=1)
    assert seen == [{}]
    assert done.removed == {2: "not among the best 1 complete trials nor in a recorded ensemble"}
    assert hold_readers(done.kept) == {0: "hpo ensemble", 1: ""}
    assert done.freed_bytes == 1000
    assert _stored(study, store) == {0, 1}
    assert removed_checkpoints(study) == {2: done.removed[2]}
    # A reader that holds after a collection's record sees the removal, and passes it over.
    with holding(study, [0, 2], "hpo export") as removed:
        assert removed == {2: done.removed[2]}
    holds[0].__exit__(None, None, None)
    assert held_checkpoints(study) == {}


def test_gc_while_an_ensemble_loads_its_members_removes_none_of_its_pool(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, study = open_study(study_copy, None, None)
    loading = hpo_build.load_member
    collections: list[Collection] = []

    def gc_then_load(candidate: Candidate, store: ArtifactStore, folder: Path) -> Member:
        # Another process's `hpo gc --keep 0`, while the ensemble fetches its members.
        other = optuna.load_study(study_name=config.name, storage=config.storage_url)
        collections.append(collect_garbage(other, open_artifact_store(config.artifact_location), 0))
        return loading(candidate, store, folder)

    monkeypatch.setattr(hpo_build, "load_member", gc_then_load)
    result = build_ensemble(config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "e")
    assert collections and all(c.removed == {} for c in collections)
    assert not result.report["skipped"], result.report["skipped"]
    assert len(result.report["members"]) == 2
    members = set(study.user_attrs["ensemble_top2"]["members"])
    # Released once built: a collection now keeps the members the ensemble recorded.
    monkeypatch.undo()
    after = collect_garbage(study, open_artifact_store(config.artifact_location), 0)
    assert after.removed and members.isdisjoint(after.removed)
    assert held_checkpoints(study) == {}


# Prepared data: `hpo gc` sweeps the study's cache folder (`hpo.caches`).


def test_the_hold_of_a_reader_that_ended_on_this_machine_keeps_nothing_and_is_deleted(
    tmp_path: Path,
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, store = _study_with_checkpoints(tmp_path, [0.9, 0.1, 0.2, 0.3], storage)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid, started = process_identity(child.pid)
    child.kill()
    child.wait()
    here = dataclasses.asdict(WorkerIdentity.current())
    until = time.time() + 3600
    for key, trial, reader in (
        ("killed", 1, {**here, "pid": pid, "started": started}),  # `hpo export`, killed
        ("alive", 2, here),
        ("elsewhere", 3, {**here, "boot_id": "another machine's"}),  # cannot be looked up
    ):
        record = {"trials": [trial], "by": "hpo export", "reader": reader, "until": until}
        study.set_user_attr(f"{HOLD_ATTR_PREFIX}{key}", record)
    assert hold_readers(held_checkpoints(study)) == {2: "hpo export", 3: "hpo export"}
    assert sorted(collect_garbage(study, store, keep=1).removed) == [1]
    assert _stored(study, store) == {0, 2, 3}
    holds = [key for key in study.user_attrs if key.startswith(HOLD_ATTR_PREFIX)]
    assert sorted(holds) == [f"{HOLD_ATTR_PREFIX}alive", f"{HOLD_ATTR_PREFIX}elsewhere"]


def test_a_stopped_collections_record_of_a_trial_kept_since_is_undone_and_its_file_stays(
    tmp_path: Path,
) -> None:
    # Stopped between its record and its deletions, while an ensemble that had not seen the
    # record took trial 0 as a member: the next collection deleted the member's file.
    study, store = _study_with_checkpoints(tmp_path, [0.1, 0.3, 0.2])
    study.set_user_attr(f"{GC_ATTR_PREFIX}stopped", {"removed": {"0": "old", "2": "old"}})
    study.set_user_attr("ensemble_top1", {"members": [0], "weights": [1.0]})
    done = collect_garbage(study, store, keep=5)
    assert done.removed == {2: "recorded as removed by a collection that was stopped"}
    assert done.kept[0] == "member of ensemble_top1"
    assert _stored(study, store) == {0, 1}
    assert removed_checkpoints(study) == {2: "old"}


def test_an_ensemble_holds_its_members_until_it_is_recorded(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, study = open_study(study_copy, None, None)
    exporting = hpo_build.write_exports

    def gc_then_export(*args: Any, **kwargs: Any) -> dict[str, Any]:
        # A `keep_checkpoints` of a running search, while the ensemble writes its exports.
        other = optuna.load_study(study_name=config.name, storage=config.storage_url)
        collect_garbage(other, open_artifact_store(config.artifact_location), 0)
        return exporting(*args, **kwargs)

    monkeypatch.setattr(hpo_build, "write_exports", gc_then_export)
    build_ensemble(config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "e")
    members = study.user_attrs["ensemble_top2"]["members"]
    store = open_artifact_store(config.artifact_location)
    for trial in study.get_trials(deepcopy=False):
        if trial.number in members:
            fetch_checkpoint(store, trial, tmp_path)  # there, and verifies
    assert not set(members) & set(removed_checkpoints(study))


def test_a_collection_after_a_trial_that_the_store_refuses_costs_disk_not_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Optuna's database storage raises StorageInternalError for an SQL error in its sessions
    # (SQLite locked past its busy timeout): it left the callback and ended the worker's search.
    def locked(*_: object, **__: object) -> Collection:
        raise optuna.exceptions.StorageInternalError("database is locked")

    monkeypatch.setattr(artifacts_module, "collect_garbage", locked)
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    config = dataclasses.replace(
        load_study_config(write_study(tmp_path, tmp_path)), keep_checkpoints=1
    )
    with caplog.at_level("WARNING"):
        artifacts_module.KeepBest(config, 1)(study, study.trials[-1])
    assert "could not remove old checkpoints (database is locked)" in caplog.text


def test_a_removal_another_collection_records_meanwhile_is_not_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two collections at once (a worker's `keep_checkpoints = 1`, a user's `hpo gc --keep 2`):
    the second read the records once to plan and again to find removals left half done. One
    recorded by the first in between, of a trial the second keeps, it took out of the first's
    record, whose file the first then deleted: a checkpoint recorded as there and gone."""
    study, store = _study_with_checkpoints(tmp_path, [0.9, 0.5])
    plan = artifacts_module.plan_collection

    def planned_then_the_other_records(*args: Any, **kwargs: Any) -> Any:
        result = plan(*args, **kwargs)
        other = {"keep": 1, "at": "now", "removed": {"1": "not among the best 1"}}
        study.set_user_attr(f"{GC_ATTR_PREFIX}other", other)
        return result

    monkeypatch.setattr(artifacts_module, "plan_collection", planned_then_the_other_records)
    assert collect_garbage(study, store, keep=2).removed == {}
    # The first collection's record stands, as its deletion of the file will.
    assert removed_checkpoints(study) == {1: "not among the best 1"}


def _recorded_report(tmp_path: Path, out: Path, members: list[tuple[int, float]]) -> dict[str, Any]:
    """The fields of an `hpo ensemble` report that `record_in_study` reads; report.json in
    `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text("{}")
    scores = {"accuracy": 0.9, "log_loss": 0.3}
    return {
        "members": [
            {"trial": n, "weight": w, "family": "f", "val": scores, "test": scores}
            for n, w in members
        ],
        "test": {"ensemble": scores, "best_member": scores},
        "method": "caruana",
        "kept": "pool",
        "calibration": {"temperature": 1.0},
        "test_data": {"sha256": "0" * 64},
        "test_examples": 10,
        "created": "2026-12-06T10:00:00+00:00",
        "artifact_dir": str(tmp_path / "artifacts"),
    }


def test_gc_keeps_every_recorded_ensembles_members_and_its_best_member(tmp_path: Path) -> None:
    # A second ensemble of the same size in another folder replaced the first's record, and gc
    # then removed the first's members; and the pool's best member, which the ensemble weighed
    # 0 and hpo distill loads to compare its student with, was removed too.
    from hpo.ensemble.report import record_in_study

    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    values = [0.90, 0.70, 0.60, 0.80, 0.50, 0.40]
    study, _ = _study_with_checkpoints(tmp_path, values, storage)
    first, second = tmp_path / "ensembles" / "a", tmp_path / "ensembles" / "b"
    record_in_study(study, first, _recorded_report(tmp_path, first, [(0, 0.0), (2, 1.0)]), 2)
    record_in_study(study, second, _recorded_report(tmp_path, second, [(3, 0.5), (4, 0.5)]), 2)
    assert study.user_attrs["ensemble_top2"]["out_dir_resolved"] == os.path.realpath(second)
    # The first folder's ensemble built again: the latest again, its earlier record gone.
    record_in_study(study, first, _recorded_report(tmp_path, first, [(0, 0.0), (1, 1.0)]), 2)
    keys = sorted(k for k in study.user_attrs if k.startswith("ensemble_top"))
    assert keys == ["ensemble_top2", f"ensemble_top2:{os.path.realpath(second)}"]
    assert study.user_attrs["ensemble_top2"]["out_dir_resolved"] == os.path.realpath(first)
    assert study.user_attrs["ensemble_top2"]["best_member"] == 0
    kept, doomed = plan_collection(study, keep=0)
    assert sorted(kept) == [0, 1, 3, 4]
    assert [t.number for t in doomed] == [2, 5]


def test_collections_of_a_file_system_store_take_turns(tmp_path: Path) -> None:
    # A collection that found another's recorded removals with their files still there took
    # them for a stopped collection's and undid the record of one a reader held meanwhile,
    # while the other deleted its file: the study named a checkpoint that was gone.
    import fcntl
    import threading

    study, store = _study_with_checkpoints(tmp_path, [0.70, 0.90, 0.60])
    done = threading.Event()

    def collect() -> None:
        collect_garbage(study, store, keep=1)
        done.set()

    with open(tmp_path / "artifacts" / ".collection.lock", "ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # another collection, under way
        thread = threading.Thread(target=collect)
        thread.start()
        assert not done.wait(1.0)
        assert collect_garbage(study, store, keep=1, dry_run=True).removed  # a dry run reads
    thread.join(30)
    assert done.is_set() and sorted(removed_checkpoints(study)) == [0, 2]
