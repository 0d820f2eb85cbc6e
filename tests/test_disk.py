"""A disk that fills while a checkpoint or an artifact is written: a clear error, nothing torn."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pytest

from hpo.contract import Attr, store_trial_artifacts
from hpo.disk import (
    check_log_file,
    has_room,
    raise_if_full,
    raise_if_study_full,
    replacing,
    writing_temporary,
)
from hpo.errors import ConfigError, DiskFull, HpoError
from hpo.store import AtomicFileSystemArtifactStore, sha256_file

from .conftest import resize_disk, small_disk

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_a_full_disk_leaves_no_partial_artifact_and_says_when_room_is_back(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        store = AtomicFileSystemArtifactStore(disk)
        with pytest.raises(DiskFull, match=f"no space left on device writing {disk}/") as caught:
            store.write("artifact-id", io.BytesIO(b"x" * 200_000))
        assert sorted(disk.iterdir()) == []
        assert not has_room(caught.value)
        resize_disk(disk, "1m")
        assert has_room(caught.value)


def test_a_trial_whose_predictions_do_not_fit_keeps_no_checkpoint(tmp_path: Path) -> None:
    checkpoint, predictions = tmp_path / "best.keras", tmp_path / "val.npy"
    checkpoint.write_bytes(b"c" * 20_000)
    np.save(predictions, np.zeros(50_000, np.float32))
    trial = optuna.create_study().ask()
    with small_disk(tmp_path / "disk", "64k") as disk:
        store = AtomicFileSystemArtifactStore(disk)
        with pytest.raises(DiskFull, match=f"no space left on device writing {disk}/"):
            store_trial_artifacts(trial, store, checkpoint, predictions)
        assert Attr.CHECKPOINT_ID in trial.user_attrs  # it was stored, then removed again
        assert sorted(disk.iterdir()) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_an_artifact_folder_gone_read_only_stops_with_its_name_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # Remounted read-only mid-search (EROFS), or its permissions changed (EACCES): a trial's
    # upload stops the search as a full disk does, not a raw OSError in every later trial.
    import hpo.store

    checkpoint, predictions = tmp_path / "best.keras", tmp_path / "val.npy"
    checkpoint.write_bytes(b"c" * 2_000)
    np.save(predictions, np.zeros(500, np.float32))
    folder = tmp_path / "artifacts"
    store = AtomicFileSystemArtifactStore(folder)
    written: list[str] = []

    def read_only_after_one(file: Path, mode: str = "r") -> io.IOBase:
        if "w" in mode:
            written.append(str(file))
            if len(written) > 1:  # the checkpoint is stored, its predictions are not
                raise OSError(code, os.strerror(code), str(file))
        return open(file, mode)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        if path.name.endswith(".partial"):  # as a read-only file system does, there or not
            raise OSError(code, os.strerror(code), str(path))
        remove(path, missing_ok=missing_ok)

    remove = pathlib.Path.unlink
    monkeypatch.setattr(hpo.store, "open", read_only_after_one, raising=False)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    trial = optuna.create_study().ask()
    with pytest.raises(ConfigError) as caught:
        store_trial_artifacts(trial, store, checkpoint, predictions)
    message = str(caught.value)
    assert message.startswith(f"the artifact folder {folder} is not writable ([Errno {code}] ")
    assert "Make it writable again (remount it read-write, or fix its permissions)" in message
    assert isinstance(caught.value.__cause__, OSError)
    # What the trial stored is removed again, and no partial file is left.
    assert Attr.CHECKPOINT_ID in trial.user_attrs
    assert sorted(folder.iterdir()) == []


def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one(tmp_path: Path) -> None:
    from hpo.models import conv1d
    from hpo.training.callbacks import AtomicModelCheckpoint

    model = conv1d.build(
        {**conv1d.DEFAULTS, "vocab_size": 3000, "seq_len": 12, "filters": 8, "embedding_dim": 8}
    )
    with small_disk(tmp_path / "disk", "160k") as disk:
        final = disk / "training.keras"
        callback = AtomicModelCheckpoint(final, monitor="val_accuracy", mode="max")
        callback.set_model(model)
        callback.on_epoch_end(0, {"val_accuracy": 0.6})
        saved = sha256_file(final)
        # Room for one checkpoint, not for the next beside it.
        with pytest.raises(DiskFull, match=f"no space left on device writing {disk}/"):
            callback.on_epoch_end(1, {"val_accuracy": 0.7})
        assert sorted(p.name for p in disk.iterdir()) == ["training.keras"]
        assert sha256_file(final) == saved


def test_a_full_disk_met_writing_an_output_is_disk_full_whatever_raised_it(tmp_path: Path) -> None:
    # hpo ensemble --format savedmodel on a full disk: Keras's OSError, TensorFlow's own error
    # ("... No space left on device"), or tf2onnx's wrapped in hpo's message: a traceback, or
    # advice to choose another format.
    class ResourceExhaustedError(Exception):  # TensorFlow's, as its message reads
        pass

    full = OSError(errno.ENOSPC, "No space left on device")
    tensorflow = ResourceExhaustedError("saved_model.pb.tmp; No space left on device")
    try:
        raise HpoError("tf2onnx could not convert the model: use --format savedmodel") from full
    except HpoError as wrapped:
        onnx = wrapped
    for error in (full, tensorflow, onnx):
        with pytest.raises(DiskFull, match=rf"no space left on device writing {tmp_path} \("):
            raise_if_full(error, tmp_path)
    raise_if_full(ValueError("a bug, not the disk"), tmp_path)  # returns: the caller re-raises


def _database_full(words: str = "database or disk is full") -> Exception:
    """What Optuna's RDB storage raises where SQLite cannot grow its file: the cause chain
    of a commit on a full disk (or SQLite's `words` for another failed write)."""
    import sqlite3

    import sqlalchemy.exc

    try:
        try:
            try:
                raise sqlite3.OperationalError(words)
            except sqlite3.OperationalError as exc:
                raise sqlalchemy.exc.OperationalError("COMMIT", {}, exc) from exc
        except sqlalchemy.exc.OperationalError as exc:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length. "
            ) from exc
    except optuna.exceptions.StorageInternalError as exc:
        return exc


def test_a_study_database_on_a_full_disk_stops_the_search_naming_it(tmp_path: Path) -> None:
    # It was a traceback blaming the data ("e.g. exceeding max length"), exit code 1.
    from hpo.config import StudyConfig
    from hpo.search import workers

    config = StudyConfig(name="s", study_dir=tmp_path / "s")

    @workers._full_disk_named
    def search(config: StudyConfig) -> None:
        raise _database_full()

    with pytest.raises(DiskFull) as caught:
        search(config)
    message = str(caught.value)
    assert message.startswith(
        f"no space left on device writing the study (its database {config.storage_url}, or "
        f"its files in {config.study_dir.absolute()}) ("
    )
    assert "finished trials are kept. Free space on that disk" in message
    assert "run the same command to resume" in message
    assert caught.value.exit_code == 2

    @workers._full_disk_named
    def other(config: StudyConfig) -> None:
        raise optuna.exceptions.StorageInternalError("a bad value")

    with pytest.raises(optuna.exceptions.StorageInternalError, match="a bad value"):
        other(config)


def _fill(disk: Path) -> None:
    """Writes to `disk` until not one more byte fits."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        for chunk in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * chunk)


def test_a_study_database_on_a_disk_with_no_room_left_is_named_full_when_opened(
    tmp_path: Path,
) -> None:
    # SQLite says only "disk I/O error" where it cannot make its -shm file, even to read: hpo
    # status and hpo ensemble blamed the URL and the database server (exit code 2), hpo search
    # gave a traceback from its "PRAGMA journal_mode=WAL" (exit code 1).
    from hpo.config import sqlite_url
    from hpo.store import open_storage

    from .conformance.test_text_models import hpo

    with small_disk(tmp_path / "disk", "1m") as disk:
        database = disk / "study.db"
        url = sqlite_url(database)
        storage = open_storage(url, create=True)
        optuna.create_study(study_name="s", storage=storage)
        storage.engine.dispose()  # type: ignore[attr-defined]
        assert sorted(p.name for p in disk.iterdir()) == ["study.db"]
        _fill(disk)
        for create in (False, True):
            with pytest.raises(DiskFull) as caught:
                open_storage(url, create=create, heartbeat=False)
            assert str(caught.value) == (
                f"no space left on device writing the study database {database} (0 KB free "
                f"there); SQLite writes beside it (its -wal and -shm files) even to read it. "
                f"Free space on that disk, or move the study's folder to a larger one, then run "
                f"the same command again."
            )
        status = hpo("status", "--storage", url, "--study-name", "s", cwd=tmp_path)
        assert status.returncode == 2, status.stderr
        assert status.stderr.startswith("error: no space left on device writing the study")
        assert "database server" not in status.stderr


def test_a_stored_file_whose_record_the_database_cannot_take_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Optuna writes the file, then records it: a database on a full disk left the checkpoint
    # in the artifact folder with no trial naming it.
    checkpoint, predictions = tmp_path / "best.keras", tmp_path / "val.npy"
    checkpoint.write_bytes(b"c" * 2_000)
    np.save(predictions, np.zeros(500, np.float32))
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    trial = optuna.create_study().ask()

    def full(*args: object) -> None:
        raise _database_full()

    monkeypatch.setattr(trial.storage, "set_trial_system_attr", full)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        store_trial_artifacts(trial, store, checkpoint, predictions)
    assert sorted((tmp_path / "artifacts").iterdir()) == []


@contextlib.contextmanager
def _file_size_limit(size: int) -> Iterator[None]:
    """This process's file-size limit (`ulimit -f`) lowered to `size` bytes: a write past it
    fails with EFBIG (Python ignores the SIGXFSZ that would end the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_file_past_the_file_size_limit_names_the_limit_not_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EFBIG ("File too large") was no full disk: a trial's checkpoint failed with a bare
    # OSError, and hpo ensemble's copy in the temporary folder told to set TMPDIR.
    limit = (
        "it would pass this process's file-size limit of 64 KB ([Errno 27] File too large). "
        "Raise the limit in the shell that runs hpo (ulimit -f unlimited), then run the same "
        "command again."
    )
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    copy = tmp_path / "copy.keras"
    with _file_size_limit(64 * 1024):
        with pytest.raises(ConfigError) as stored:
            store.write("artifact-id", io.BytesIO(b"x" * 200_000))
        with pytest.raises(ConfigError) as copied, writing_temporary(copy, 0):
            copy.write_bytes(b"x" * 200_000)
        try:
            raise HpoError("Keras could not save") from OSError(errno.EFBIG, "File too large")
        except HpoError as wrapped:
            with pytest.raises(ConfigError) as written:
                raise_if_full(wrapped, tmp_path)
    message = str(stored.value)
    assert message.startswith(f"cannot write {tmp_path / 'artifacts'}/.artifact-id.")
    assert message.endswith(f".partial: {limit}")
    assert sorted((tmp_path / "artifacts").iterdir()) == []
    assert str(copied.value) == (
        f"cannot write a copy of copy.keras in the temporary folder {tempfile.gettempdir()}: "
        f"{limit}"
    )
    assert not copy.exists()
    assert str(written.value).startswith(f"cannot write {tmp_path}: it would pass ")
    # No limit: the file system's largest file.
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(resource, "getrlimit", lambda kind: unlimited)
    model = OSError(errno.EFBIG, "File too large", str(tmp_path / "model.keras"))
    with pytest.raises(ConfigError) as large:
        raise_if_full(model, tmp_path)
    assert str(large.value) == (
        f"cannot write {tmp_path / 'model.keras'}: it would be larger than its file system "
        f"takes a file to be ({model}). Move it to a folder on another file system, then run "
        f"the same command again."
    )


def test_a_study_database_past_the_file_size_limit_names_the_limit(tmp_path: Path) -> None:
    # SQLite says "disk I/O error" where its write fails with EFBIG: a search ended with
    # Optuna's StorageInternalError blaming the data (exit code 1).
    from hpo.config import StudyConfig

    config = StudyConfig(name="s", study_dir=tmp_path)
    wal = tmp_path / "study.db-wal"
    wal.write_bytes(b"w" * 100_000)
    with _file_size_limit(128 * 1024), pytest.raises(ConfigError) as caught:
        raise_if_study_full(_database_full("disk I/O error"), config)
    assert str(caught.value) == (
        f"cannot write {wal}: it would pass this process's file-size limit of 128 KB ([Errno "
        f"27] File too large). Raise the limit in the shell that runs hpo (ulimit -f "
        f"unlimited), then run the same command again."
    )
    # Far from the limit, or with none, SQLite's I/O error is not taken for it.
    with _file_size_limit(1 << 30):
        raise_if_study_full(_database_full("disk I/O error"), config)


def test_a_search_past_the_file_size_limit_stops_at_its_first_trial(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # Every trial failed with "OSError: [Errno 27] File too large", until 5 in a row had.
    from hpo.config import load_study_config

    from .conftest import write_study

    study = write_study(tmp_path, fake_imdb, n_trials=3)
    limit = 1 << 20  # the data and the database fit; a checkpoint (1.6 MB) does not

    def lowered() -> None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    search = subprocess.run(
        [sys.executable, "-m", "hpo", "search", "--study", str(study)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        preexec_fn=lowered,
    )
    assert search.returncode == 2, search.stderr
    last = search.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write "), last
    assert "it would pass this process's file-size limit of 1.0 MB" in last
    assert "(ulimit -f unlimited)" in last
    storage = load_study_config(study).storage_url
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    # One trial ran (the others queued by enqueue_defaults wait for the next run).
    ran = [t for t in trials if t.state != optuna.trial.TrialState.WAITING]
    assert [t.state for t in ran] == [optuna.trial.TrialState.FAIL]
    assert "file-size limit" in ran[0].user_attrs[Attr.FAIL_REASON]


def test_a_file_replaced_is_whole_or_untouched_and_a_link_there_is_not_followed(
    tmp_path: Path,
) -> None:
    target = tmp_path / "theirs.txt"
    target.write_text("theirs")
    path = tmp_path / "report.html"
    path.symlink_to(target)
    with pytest.raises(RuntimeError), replacing(path) as file:
        file.write(b"half")
        raise RuntimeError
    assert path.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "theirs.txt",
    ]
    with replacing(path) as file:
        file.write(b"ours")
    assert not path.is_symlink() and path.read_text() == "ours"
    assert target.read_text() == "theirs"
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_log_that_cannot_be_written_is_named_with_the_fix(tmp_path: Path) -> None:
    # A process hpo starts opens its log itself: one whose logs/ could not be written died with
    # "the child process exited with exit code 1 before reporting a result", the reason only
    # in --verbose's traceback.
    logs = tmp_path / "study" / "logs"
    check_log_file(logs / "prepare.log")
    assert logs.is_dir() and list(logs.iterdir()) == []
    (logs / "prepare.log").mkdir()
    with pytest.raises(ConfigError, match=r"the log file .*prepare.log cannot be written \(Is a"):
        check_log_file(logs / "prepare.log")
    shutil.rmtree(logs)
    logs.write_text("not a folder")
    with pytest.raises(ConfigError) as caught:
        check_log_file(logs / "prepare.log")
    assert str(caught.value) == (
        f"the log folder {logs} cannot be written (File exists): hpo keeps there the output of "
        f"each process it starts. Fix its permissions (chmod u+rwX {logs}), or remove it for "
        f"hpo to make it anew, then run the same command again."
    )
