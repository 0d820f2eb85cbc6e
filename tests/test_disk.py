"""A disk that fills while a checkpoint or an artifact is written: a clear error, nothing torn."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pytest

from hpo.contract import Attr, store_trial_artifacts
from hpo.disk import has_room, raise_if_full, replacing
from hpo.errors import ConfigError, DiskFull, HpoError
from hpo.store import AtomicFileSystemArtifactStore, sha256_file

from .conftest import resize_disk, small_disk

if TYPE_CHECKING:
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


def _database_full() -> Exception:
    """What Optuna's RDB storage raises where SQLite cannot grow its file: the cause chain
    of a commit on a full disk."""
    import sqlite3

    import sqlalchemy.exc

    try:
        try:
            try:
                raise sqlite3.OperationalError("database or disk is full")
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
