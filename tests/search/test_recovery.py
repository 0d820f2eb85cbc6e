"""Kills, signals and concurrency: nothing finished is ever lost or torn."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config import load_study_config
from hpo.contract import Attr, fetch_checkpoint, load_keras_file
from hpo.models import conv1d
from hpo.search import identity, run_search
from hpo.search.identity import WorkerIdentity
from hpo.search.recovery import sweep_dead_local_trials
from hpo.search.workers import INTERRUPTED
from hpo.store import STALE_TRIAL_RETRIES, AtomicFileSystemArtifactStore, open_storage, sha256_file
from hpo.training import isolation
from hpo.training.callbacks import AtomicModelCheckpoint
from hpo.training.isolation import WATCH_INTERVAL_S, process_alive, process_identity

from ..conftest import assert_each_trial_trained_once, resize_disk, small_disk, write_study

if TYPE_CHECKING:
    from collections.abc import Callable

    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig

ROOT = Path(__file__).resolve().parents[2]


def _slow_study(folder: Path, data: Path, n_trials: int) -> Path:
    path = write_study(folder, data, n_trials=n_trials)
    path.write_text(
        path.read_text().replace(
            "[training]\nmax_epochs = 2\npatience = 1\n",
            "[training]\nmax_epochs = 8\npatience = 8\n",
        )
    )
    return path


def _load(config: StudyConfig) -> optuna.Study:
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    return optuna.load_study(study_name=config.name, storage=storage)


def _wait_for(
    condition: Callable[[], bool],
    timeout: float = 480,
    process: subprocess.Popen[str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(
                f"the search exited early ({process.returncode}): "
                f"{(out or '')[-1000:]} {(err or '')[-3000:]}"
            )
        try:
            if condition():
                return
        except Exception:  # the database may not exist yet
            pass
        time.sleep(0.5)
    raise AssertionError("condition not reached in time")


def _mid_training(config: StudyConfig) -> bool:
    study = _load(config)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    running = study.get_trials(states=(TrialState.RUNNING,))
    return bool(complete) and any(t.intermediate_values for t in running)


def _finished(trials: list[FrozenTrial]) -> set[int]:
    """The trials that trained to an end."""
    return {t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


def _search(study_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.search", "--study", str(study_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As in a terminal: a shell that starts jobs in the background ignores SIGINT for them.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _verify_complete_checkpoints(config: StudyConfig, scratch: Path) -> int:
    store = AtomicFileSystemArtifactStore(config.artifact_dir)
    complete = _load(config).get_trials(states=(TrialState.COMPLETE,))
    for trial in complete:
        path = fetch_checkpoint(store, trial, scratch)
        load_keras_file(path)
    return len(complete)


@pytest.mark.slow
def test_killed_worker_trial_is_failed_requeued_and_finished_work_kept(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # More trials than it runs before the kill: each after the first is a window of a few
    # seconds, and a loaded machine has let all of three pass between polls.
    config = load_study_config(_slow_study(tmp_path, fake_imdb, n_trials=6))
    process = _search(config.study_dir.parent / "tiny.toml")
    try:
        _wait_for(lambda: _mid_training(config), process=process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    study = _load(config)
    interrupted = study.get_trials(states=(TrialState.RUNNING,))
    assert len(interrupted) == 1
    finished_before = {
        t.number: t.user_attrs[Attr.CHECKPOINT_SHA256]
        for t in study.get_trials(states=(TrialState.COMPLETE,))
    }

    again = _search(config.study_dir.parent / "tiny.toml")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert "marked FAIL and re-queued" in out
    study = _load(config)
    states = {t.number: t.state for t in study.trials}
    assert states[interrupted[0].number] == TrialState.FAIL
    assert "died" in study.trials[interrupted[0].number].user_attrs[Attr.FAIL_REASON]
    assert TrialState.RUNNING not in states.values()
    retried = [
        t for t in study.trials if t.system_attrs.get("failed_trial") == interrupted[0].number
    ]
    assert len(retried) == 1
    assert retried[0].state == TrialState.COMPLETE
    assert retried[0].params == interrupted[0].params
    for number, digest in finished_before.items():
        assert study.trials[number].user_attrs[Attr.CHECKPOINT_SHA256] == digest
    assert _verify_complete_checkpoints(config, tmp_path) >= 3


@pytest.mark.parametrize("how", ["sigterm-main", "sigint-group"])
def test_signal_fails_the_running_trial_and_exits_promptly(
    fake_imdb: Path, tmp_path: Path, how: str
) -> None:
    # More trials than it runs: each trial after the first is a window of a few seconds in
    # which to signal, and a loaded machine has let two of them pass between polls.
    config = load_study_config(_slow_study(tmp_path, fake_imdb, n_trials=6))
    process = _search(config.study_dir.parent / "tiny.toml")
    try:
        _wait_for(lambda: _mid_training(config), process=process)
        if how == "sigterm-main":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert "Run the same command again to resume" in err
    study = _load(config)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    [failed] = study.get_trials(states=(TrialState.FAIL,))
    # The group's SIGINT also reaches the trial's process, which may end first.
    if how == "sigterm-main":
        assert failed.user_attrs[Attr.FAIL_REASON] == INTERRUPTED
        # Queued again, as a killed worker's trial is: the next run trains it first.
        [queued] = [
            t
            for t in study.get_trials(states=(TrialState.WAITING,))
            if t.system_attrs.get("failed_trial") == failed.number
        ]
        assert queued.params == failed.params
    else:
        assert failed.user_attrs[Attr.FAIL_REASON]
    assert _verify_complete_checkpoints(config, tmp_path) >= 1


@pytest.mark.slow
def test_four_workers_share_sqlite_without_locking_errors(fake_imdb: Path, tmp_path: Path) -> None:
    path = write_study(tmp_path, fake_imdb, n_trials=8, enqueue=False)
    path.write_text(path.read_text().replace("max_epochs = 2", "max_epochs = 1"))
    config = load_study_config(path).with_overrides(workers=4)
    summary = run_search(config, progress=False)
    study = _load(config)
    states = [t.state for t in study.trials]
    assert summary.finished >= 8
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, [
        t.user_attrs.get(Attr.FAIL_REASON) for t in study.trials if t.state == TrialState.FAIL
    ]
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    # Each worker samples with its own seed: no two trials share every parameter.
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == len(keys)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 4
    assert_each_trial_trained_once(study.trials, config.artifact_dir)
    database = config.storage_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


BREAKABLE = """
import keras
from keras import layers


def build(hp):
    if hp.Boolean("broken"):
        raise RuntimeError("broken on purpose")
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 8, mask_zero=True)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
"""


def test_a_queued_trial_outside_the_space_fails_saying_so(fake_imdb: Path, tmp_path: Path) -> None:
    # Queued by another worker or an older run of a wider space: Optuna refuses the value as
    # the trial asks for it, and the trial failed with no reason and no log.
    config = load_study_config(write_study(tmp_path / "q", fake_imdb, n_trials=2, enqueue=False))
    storage = open_storage(config.storage_url, create=True)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    study.enqueue_trial({"optimizer": "sgd"})
    run_search(config, progress=False)
    first, *others = _load(config).trials
    assert first.state == TrialState.FAIL
    reason = first.user_attrs[Attr.FAIL_REASON]
    assert (
        reason.startswith("queued with a value outside the study's space (") and "'sgd'" in reason
    )
    assert TrialState.COMPLETE in {t.state for t in others}


def test_a_diverging_trial_is_pruned_a_broken_one_fails_alone_and_failures_stop_the_search(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(write_study(tmp_path / "nan", fake_imdb, n_trials=2, enqueue=False))
    storage = open_storage(config.storage_url, create=True)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    study.enqueue_trial({"learning_rate": 1e12, "optimizer": "rmsprop"})
    with pytest.warns(UserWarning, match="out of range"):
        summary = run_search(config, progress=False)
    trials = _load(config).trials
    # Diverged: an outcome of its values, which the sampler learns from (it leaves failed
    # trials out); pruned trials count as finished.
    assert trials[0].state == TrialState.PRUNED
    reason = trials[0].user_attrs[Attr.PRUNE_REASON]
    assert reason.startswith("diverged: ") and "likely too high" in reason, reason
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE]
    assert summary.stopped_by_failures is None

    from hpo.search import main

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "breakable.py").write_text(BREAKABLE)
    broken = write_study(folder, fake_imdb, n_trials=5, enqueue=False, families='["mine"]')
    broken.write_text(
        "max_failures = 2\n" + broken.read_text() + '\n[families]\nmine = "breakable:build"\n'
    )
    broken_config = load_study_config(broken)
    study = optuna.create_study(
        study_name=broken_config.name,
        storage=open_storage(broken_config.storage_url, create=True),
        direction="maximize",
    )
    study.enqueue_trial({"family": "mine", "broken": False})
    for _ in range(3):
        study.enqueue_trial({"family": "mine", "broken": True})
    assert main(["--study", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "2 consecutive trials failed; the last: RuntimeError: broken on purpose" in err
    trials = _load(broken_config).trials
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert "log: " in trials[1].user_attrs[Attr.FAIL_REASON]

    # An artifact folder that cannot be made is an error before any trial, not a failure in each.
    unusable = write_study(tmp_path / "unusable", fake_imdb, n_trials=5, enqueue=False)
    unusable.write_text('artifacts = "/proc/no-such-dir/artifacts"\n' + unusable.read_text())
    assert main(["--study", str(unusable)]) == 2
    assert "the artifact folder /proc/no-such-dir/artifacts cannot be created" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "unusable" / "tiny" / "study.db").exists()


@pytest.mark.slow
def test_a_full_artifact_disk_stops_the_search_cleanly_and_it_resumes_once_there_is_room(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.search import main

    study_file = write_study(tmp_path, fake_imdb, n_trials=3, enqueue=False)
    config = load_study_config(study_file)
    # The database and the trials' scratch folder have room; the artifact folder has none.
    with small_disk(config.artifact_dir, "64k") as disk:
        assert main(["--study", str(study_file)]) == 2
        err = capsys.readouterr().err
        stopped = "error: search stopped, the disk is still full: no space left on device writing"
        assert f"{stopped} {disk}/" in err
        assert "Traceback" not in err
        trials = _load(config).trials
        assert [t.state for t in trials] == [TrialState.FAIL]  # not one failure per trial
        assert "DiskFull: no space left on device" in trials[0].user_attrs[Attr.FAIL_REASON]
        assert sorted(disk.iterdir()) == []
        assert sorted((config.study_dir / "trials").iterdir()) == []
        with sqlite3.connect(config.study_dir / "study.db") as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        resize_disk(disk, "8m")
        assert main(["--study", str(study_file), "--n-trials", "1"]) == 0
        study = _load(config)
        assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
        (tmp_path / "scratch").mkdir()
        assert _verify_complete_checkpoints(config, tmp_path / "scratch") == 1


def _write_slowly(partial: Path) -> None:
    model = conv1d.build(
        {**conv1d.DEFAULTS, "vocab_size": 30, "seq_len": 12, "filters": 8, "embedding_dim": 8}
    )
    final = partial.with_name("best.keras")
    callback = AtomicModelCheckpoint(final, monitor="val_accuracy", mode="max")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.6})
    # The watcher waits for this: the first save (a real, fast one) is complete.
    partial.with_name("first-saved").touch()

    def slow_save(filepath: str, *args: object, **kwargs: object) -> None:
        with open(filepath, "wb") as handle:
            for _ in range(600):
                handle.write(b"x" * 1024)
                handle.flush()
                time.sleep(0.05)

    model.save = slow_save  # type: ignore[method-assign]
    callback.on_epoch_end(1, {"val_accuracy": 0.7})


def _upload_slowly(folder: Path) -> None:
    class Slow:
        def read(self, size: int = -1) -> bytes:
            time.sleep(0.05)
            return b"y" * 1024

    AtomicFileSystemArtifactStore(folder).write("artifact-id", Slow())  # type: ignore[arg-type]


def _kill_when_exists(
    target: Callable[[Path], None], arg: Path, watch: Callable[[], list[Path]]
) -> None:
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=target, args=(arg,))
    process.start()
    _wait_for(lambda: bool(watch()) and watch()[0].stat().st_size > 4096, timeout=120)
    os.kill(process.pid or 0, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL


def test_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path: Path) -> None:
    partial = tmp_path / "best.partial.keras"
    first = tmp_path / "first-saved"
    _kill_when_exists(
        _write_slowly, partial, lambda: [partial] if first.exists() and partial.exists() else []
    )
    final = tmp_path / "best.keras"
    assert load_keras_file(final).count_params() > 0
    assert sha256_file(final) != sha256_file(partial)


def test_kill_while_uploading_an_artifact_never_leaves_it_torn(tmp_path: Path) -> None:
    _kill_when_exists(
        _upload_slowly, tmp_path, lambda: sorted(tmp_path.glob(".artifact-id.*.partial"))
    )
    assert not (tmp_path / "artifact-id").exists()


def _study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True, heartbeat=False)
    return optuna.create_study(storage=storage)


def _running(study: optuna.Study, worker: WorkerIdentity | str) -> int:
    """A RUNNING trial recorded by `worker` (a string: as a version before identities did)."""
    trial = study.ask()
    if isinstance(worker, str):
        trial.set_user_attr(Attr.WORKER, worker)
    else:
        worker.record(trial)
    return trial.number


def _ended_process() -> tuple[int, str | None]:
    """The id and start time of a process that has ended."""
    process = subprocess.Popen(["sleep", "60"])
    ended = process_identity(process.pid)
    process.kill()
    process.wait()
    return ended


def _states(study: optuna.Study) -> dict[int, TrialState]:
    return {t.number: t.state for t in study.get_trials()}


def test_sweep_requeues_only_ended_workers_of_this_host_kernel_and_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_WORKER_HOST", "localhost")
    study = _study(tmp_path)
    me = WorkerIdentity.current()
    pid, started = _ended_process()
    alive = _running(study, me)
    remote = _running(study, dataclasses.replace(me, host="another-machine", pid=pid))
    dead = _running(study, dataclasses.replace(me, pid=pid, started=started))
    # The id of a live process (this one), but it started at another time: not the worker's.
    reused = _running(study, dataclasses.replace(me, started="1"))
    # An older version's record: a dead pid on a host of our name, but in which container?
    legacy = _running(study, f"localhost:{pid}")

    assert sweep_dead_local_trials(study) == [dead, reused]
    states = _states(study)
    assert states[alive] == states[remote] == states[legacy] == TrialState.RUNNING
    assert states[dead] == states[reused] == TrialState.FAIL
    retried = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["failed_trial"] for t in retried] == [dead, reused]
    assert all(Attr.WORKER_IDENTITY not in t.user_attrs for t in retried)
    assert f"its worker localhost:{pid} (boot " in study.trials[dead].user_attrs[Attr.FAIL_REASON]


@pytest.mark.parametrize("differs", ["pid namespace", "boot id"])
def test_two_containers_of_one_host_name_never_requeue_each_others_live_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, differs: str
) -> None:
    """Container A's worker runs a trial; its process id means nothing in container B, which has
    the same host name and (for a PID namespace of its own) the same kernel."""
    monkeypatch.setenv("HPO_WORKER_HOST", "localhost")
    study = _study(tmp_path)
    pid, started = _ended_process()
    # Seen from here the pid is gone, as a live process of another container would be.
    in_a = _running(study, dataclasses.replace(WorkerIdentity.current(), pid=pid, started=started))

    if differs == "pid namespace":
        (tmp_path / "ns").symlink_to("pid:[4026599999]")
        monkeypatch.setattr(identity, "PID_NAMESPACE_PATH", tmp_path / "ns")
    else:
        (tmp_path / "boot_id").write_text("0c0ffee0-0000-4000-8000-000000000000\n")
        monkeypatch.setattr(identity, "BOOT_ID_PATH", tmp_path / "boot_id")
    assert WorkerIdentity.current().host == "localhost"
    assert sweep_dead_local_trials(study) == []  # container B
    assert _states(study)[in_a] == TrialState.RUNNING

    monkeypatch.undo()
    monkeypatch.setenv("HPO_WORKER_HOST", "localhost")
    assert sweep_dead_local_trials(study) == [in_a]  # container A, where it did die
    assert _states(study)[in_a] == TrialState.FAIL


def test_without_proc_no_trial_is_judged_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(tmp_path)
    pid, started = _ended_process()
    dead = _running(study, dataclasses.replace(WorkerIdentity.current(), pid=pid, started=started))
    monkeypatch.setattr(identity, "BOOT_ID_PATH", tmp_path / "missing")
    monkeypatch.setattr(identity, "PID_NAMESPACE_PATH", tmp_path / "missing")
    assert WorkerIdentity.current().boot_id is None
    assert sweep_dead_local_trials(study) == []
    assert _states(study)[dead] == TrialState.RUNNING


def _descendants(pid: int) -> set[tuple[int, str]]:
    """Every process below `pid`, as (pid, start time) from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
    except OSError:
        return "(gone)"


def _still_running(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {p for p in processes if process_alive(p)}


@pytest.mark.slow
def test_a_search_killed_with_sigkill_leaves_no_process_behind(
    fake_imdb: Path, tmp_path: Path
) -> None:
    config = load_study_config(_slow_study(tmp_path, fake_imdb, n_trials=40))
    study_file = str(config.study_dir.parent / "tiny.toml")
    # Output to a file, as from a terminal: a pipe that closes with the test's end of it would
    # end the survivors with their next write.
    log = (tmp_path / "search.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.search", "--study", study_file, "--workers", "2"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        # Both workers mid-trial: the main one's and the helper's trial processes exist.
        _wait_for(
            lambda: (
                sum(
                    bool(t.intermediate_values)
                    for t in _load(config).get_trials(states=(TrialState.RUNNING,))
                )
                == 2
            ),
            process=process,
        )
        below = _descendants(process.pid)
        assert len(below) >= 4, below  # helper, fork servers, trial processes
        process.kill()  # the search process alone, as the OOM killer or `kill -9` would
        killed_at = time.time()
        process.wait()
        before = _load(config).get_trials(deepcopy=False)
        # A helper ends its trial as Ctrl-C would: SIGTERM to the trial's process, SIGKILL after
        # the grace period if that is not enough, then the trial marked FAIL. On a loaded
        # machine that takes more than the second its watcher needs to notice.
        deadline = time.monotonic() + WATCH_INTERVAL_S + isolation._TERMINATE_GRACE_S + 20
        while _still_running(below) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {p: _command_line(p[0]) for p in _still_running(below)}
        # An orphan would go on finishing trials (and starting new ones) that the budget of a
        # resumed run does not know of.
        time.sleep(WATCH_INTERVAL_S * 3)
        later = _load(config).get_trials(deepcopy=False)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already, as it should be
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
    assert not left, f"processes of the killed search still running: {left}"
    # A trial that was training ends as it would have if it finishes in the second before the
    # helper's watcher sees the search gone; none that started later does.
    late = {t.number: t for t in later if t.number in _finished(later) - _finished(before)}
    running = {t.number for t in before if t.state is TrialState.RUNNING}
    assert set(late) <= running, late
    for trial in late.values():
        assert trial.datetime_complete is not None
        assert trial.datetime_complete.timestamp() < killed_at + WATCH_INTERVAL_S + 5, trial
    # In the second before its watcher sees the search gone, the helper may have asked for the
    # next trial: SIGTERM stops it before it trains (failed as interrupted, or left RUNNING for
    # the next run's sweep if it came while Optuna created it). Nothing more starts.
    # A trial stopped so is queued again for the next run (WAITING): no trial starts.
    requeued = [t for t in later[len(before) :] if "failed_trial" in t.system_attrs]
    assert all(t.state is TrialState.WAITING for t in requeued), requeued
    assert all(later[t.system_attrs["failed_trial"]].state is TrialState.FAIL for t in requeued)
    asked = [t for t in later[len(before) :] if t not in requeued]
    assert len(asked) <= 1, asked
    assert all(
        t.state in (TrialState.FAIL, TrialState.RUNNING) and not t.intermediate_values
        for t in asked
    ), asked


def test_a_requeued_trial_keeps_its_parameters_only_and_an_interrupted_one_is_always_requeued() -> (
    None
):
    from hpo.search.recovery import requeue

    study = optuna.create_study(direction="maximize")
    rate = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)

    def failed(tries: list[int]) -> int:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.FAIL,
                params={"learning_rate": 0.003},
                distributions={"learning_rate": rate},
                user_attrs={Attr.SEEDED: "family default", "epochs": 4, Attr.CHECKPOINT_ID: "x"},
                system_attrs={"retry_history": tries} if tries else {},
            )
        )
        return study.trials[-1]._trial_id

    assert requeue(study, failed([]))
    queued = study.trials[-1]
    assert queued.state == TrialState.WAITING and queued.params == {"learning_rate": 0.003}
    # What it recorded as it ran (scores, a checkpoint) is no part of the retry.
    assert queued.user_attrs == {Attr.SEEDED: "family default"}
    # A worker that died so often is not retried again; an interrupted trial always is.
    tried = list(range(STALE_TRIAL_RETRIES))
    assert not requeue(study, failed(tried))
    assert requeue(study, failed(tried), limit=None)
    assert study.trials[-1].state == TrialState.WAITING


def _interrupted(study: optuna.Study, like: FrozenTrial) -> int:
    """Records a trial with `like`'s parameters failed as Ctrl-C leaves one, queued again;
    returns its number. Its learning rate is its own, so that its retry is not a repeat of
    `like` (which hpo prunes untrained, `hpo.repeats`)."""
    from hpo.search.recovery import requeue

    rate = like.distributions["learning_rate"]
    assert isinstance(rate, optuna.distributions.FloatDistribution)
    own = rate.low * (1 + 0.01 * len(study.trials))
    assert own < rate.high
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={**like.params, "learning_rate": own},
            distributions=like.distributions,
            user_attrs={Attr.FAIL_REASON: INTERRUPTED},
        )
    )
    failed = study.trials[-1]
    assert requeue(study, failed._trial_id, limit=None)
    return failed.number


def _retried(study: optuna.Study, failed: int) -> FrozenTrial:
    [retry] = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == failed]
    return retry


def test_retries_still_queued_when_the_study_holds_n_trials_are_failed_not_left_waiting(
    fake_imdb: Path, tmp_path: Path
) -> None:
    """A retry stands in for a failed trial, which n_trials does not count: once the study
    holds n_trials without it, nothing trains it. It showed as WAITING for ever (in hpo
    status, the dashboard, and as "not finished" to hpo gc)."""
    from hpo.search.recovery import NOT_RUN

    config = load_study_config(write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False))
    assert run_search(config, progress=False).finished == 1
    study = _load(config)
    [first] = study.trials
    one, two = _interrupted(study, first), _interrupted(study, first)
    # Queued trials run in order: the first retry makes the second n_trials; the second is
    # left over when the run ends.
    summary = run_search(config.with_overrides(n_trials=2), progress=False)
    study = _load(config)
    assert summary.finished == 2
    assert _retried(study, one).state == TrialState.COMPLETE
    left = _retried(study, two)
    assert left.state == TrialState.FAIL
    assert left.user_attrs[Attr.FAIL_REASON] == NOT_RUN.format(n_trials=2, failed=two)
    # A run that finds the study holding its n_trials already (a Ctrl-C, then a run asking
    # for fewer) has nothing to train, the retry included.
    three = _interrupted(study, first)
    assert run_search(config.with_overrides(n_trials=2), progress=False).finished == 2
    study = _load(config)
    assert _retried(study, three).state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))


def test_only_retries_are_retired_and_only_once_the_study_holds_n_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.search.recovery import retire_retries

    study = _study(tmp_path)
    rate = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 0.003}, distributions={"learning_rate": rate}, value=0.5
        )
    )
    failed = _interrupted(study, study.trials[0])
    # Queued otherwise (a family default, the user's enqueue_trial): kept for a larger run.
    study.enqueue_trial({"learning_rate": 0.001}, user_attrs={Attr.SEEDED: "family default"})
    assert retire_retries(study, n_trials=2) == {}
    assert [t.state for t in study.trials[-2:]] == [TrialState.WAITING] * 2

    retry = _retried(study, failed).number
    assert retire_retries(study, n_trials=1) == {retry: failed}
    assert study.trials[retry].state == TrialState.FAIL
    assert study.trials[-1].state == TrialState.WAITING
    # Another worker takes a retry between the look at the queue and its retirement: it
    # trains it, and the retirement leaves it to that worker.
    taken = _retried(study, _interrupted(study, study.trials[0]))
    seen = study.get_trials(deepcopy=False)
    assert study._storage.set_trial_state_values(taken._trial_id, state=TrialState.RUNNING)
    monkeypatch.setattr(study, "get_trials", lambda **_: seen)
    assert retire_retries(study, n_trials=1) == {}
    monkeypatch.undo()
    assert study.trials[taken.number].state == TrialState.RUNNING
    assert Attr.FAIL_REASON not in study.trials[taken.number].user_attrs


def test_a_dead_workers_trial_past_its_retries_is_failed_naming_why_and_not_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its fourth try's worker killed too: the next run marks it FAIL and goes on (its reason
    # was written after the trial had finished: UpdateFinishedTrialError stopped the run).
    monkeypatch.setenv("HPO_WORKER_HOST", "localhost")
    study = _study(tmp_path)
    pid, started = _ended_process()
    dead = _running(study, dataclasses.replace(WorkerIdentity.current(), pid=pid, started=started))
    tries = list(range(STALE_TRIAL_RETRIES))
    study._storage.set_trial_system_attr(study.trials[dead]._trial_id, "retry_history", tries)

    assert sweep_dead_local_trials(study) == [dead]
    assert _states(study) == {dead: TrialState.FAIL}
    reason = study.trials[dead].user_attrs[Attr.FAIL_REASON]
    assert f"as the workers of its {STALE_TRIAL_RETRIES} earlier tries did; not queued" in reason


def test_a_dead_workers_trial_without_heartbeats_names_the_way_out(tmp_path: Path) -> None:
    from hpo.search.recovery import dead_workers_way_out

    # Behind the storage proxy (no heartbeats, as in memory here) a dead worker's trial is
    # never found stale: the message names the trial, its worker and what fails it.
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="imdb", storage=storage)
    trial = study.ask()
    trial.set_user_attr(Attr.WORKER, "host-a:4242")
    advice = dead_workers_way_out(study)
    assert "no heartbeats" in advice and "heartbeat is stale" not in advice
    assert f"{trial.number} (worker host-a:4242)" in advice
    assert "on the machine a dead worker ran on" in advice and "docs/scale-out.md" in advice
    # The way by hand docs/scale-out.md shows, on the storage API the proxy serves.
    study_id = storage.get_study_id_from_name("imdb")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    storage.set_trial_user_attr(trial_id, Attr.FAIL_REASON, "its worker died; failed by hand")
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    assert study.trials[trial.number].state == TrialState.FAIL
    # With heartbeats, a worker elsewhere is found stale in time.
    beating = open_storage(f"sqlite:///{tmp_path}/study.db", create=True)
    other = optuna.create_study(study_name="imdb", storage=beating)
    other.ask()
    assert "once their heartbeat is stale" in dead_workers_way_out(other)


def test_a_trial_failed_meanwhile_by_another_run_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two runs starting after a crash each listed the dead worker's trial: one crashed with
    # UpdateFinishedTrialError, or both failed it and queued it twice. The runs of a machine
    # now sweep in turn; a trial another machine's run failed meanwhile is passed over.
    from optuna.exceptions import UpdateFinishedTrialError

    monkeypatch.setenv("HPO_WORKER_HOST", "localhost")
    study = _study(tmp_path)
    me = WorkerIdentity.current()
    pid, started = _ended_process()
    _running(study, dataclasses.replace(me, pid=pid, started=started))

    def finished(*args: object, **kwargs: object) -> bool:
        raise UpdateFinishedTrialError("Trial#0 has already finished")

    monkeypatch.setattr(study._storage, "set_trial_state_values", finished)
    assert sweep_dead_local_trials(study) == []
    assert not study.get_trials(states=(TrialState.WAITING,))
