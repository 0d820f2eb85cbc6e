"""A study's folder read where its search did not leave it: copied to another machine or an
archive (its recorded folder gone), copied beside its original (a backup), or mounted read-only
(another user's, a backup's)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.storages import RDBStorage

from hpo.api import load_study
from hpo.artifacts import removed_checkpoints
from hpo.command_options import joining_config, open_study
from hpo.config import load_study_config, sqlite_url
from hpo.contract import Attr, fetch_checkpoint
from hpo.errors import ConfigError, StoreError
from hpo.store import AtomicFileSystemArtifactStore, open_storage

from .conformance.test_text_models import hpo
from .conftest import copy_study_folder, read_only

if TYPE_CHECKING:
    from pathlib import Path


def _moved(study_copy: Path) -> tuple[str, str, Path]:
    """The copy as a folder whose search ran elsewhere: its recorded folder is gone. Returns its
    storage URL, study name and folder."""
    return _searched_in(study_copy, f"/gone/machine/{load_study_config(study_copy).name}")


def _searched_in(study_copy: Path, folder: str | None = None) -> tuple[str, str, Path]:
    """The copy as a study whose search ran in `folder` (default: the copy's own, as if it were
    the original). Returns its storage URL, study name and folder."""
    config = load_study_config(study_copy)
    url = config.storage_url
    study = optuna.load_study(study_name=config.name, storage=url)
    recorded = dict(study.user_attrs["hpo_config"])
    recorded["study_dir"] = folder or str(config.study_dir.resolve())
    study.set_user_attr("hpo_config", recorded)
    return url, config.name, config.study_dir


def test_a_copied_study_opened_by_its_database_reads_the_artifacts_beside_it(
    study_copy: Path, tmp_path: Path
) -> None:
    url, name, folder = _moved(study_copy)
    config, _ = open_study(None, url, name)
    assert config.artifact_location == str((folder / "artifacts").resolve())
    exported = hpo(
        "export", "--storage", url, "--study-name", name, "--trial", "0", "--format", "keras",
        "--out", str(tmp_path / "out"), cwd=tmp_path,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "ensemble.keras").is_file()
    # A reader never makes the recorded folder, and where the artifacts are nowhere it says so.
    assert not os.path.exists("/gone")
    (folder / "artifacts").rename(folder / "elsewhere")
    refused = hpo("ensemble", "--storage", url, "--study-name", name, "--top", "2", cwd=tmp_path)
    assert refused.returncode == 2
    assert "/gone/machine/" in refused.stderr
    assert "does not exist" in refused.stderr
    assert not os.path.exists("/gone")


def test_hpo_gc_on_a_copy_of_a_study_folder_removes_the_copys_checkpoints_not_the_originals(
    study_copy: Path, tmp_path: Path
) -> None:
    url, name, original = _searched_in(study_copy)
    copy_study_folder(original.parent, tmp_path / "backup")  # cp -r, the original still there
    copy = tmp_path / "backup" / name
    copy_url = sqlite_url(copy / "study.db")
    collected = hpo(
        "gc", "--storage", copy_url, "--study-name", name, "--keep", "1", cwd=tmp_path
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    study = optuna.load_study(study_name=name, storage=url)
    store = AtomicFileSystemArtifactStore(original / "artifacts")
    for trial in study.get_trials():
        fetch_checkpoint(store, trial, tmp_path)  # verifies its SHA-256
    assert f"its artifacts are in {copy / 'artifacts'} beside its database" in collected.stderr
    _, copied = open_study(None, copy_url, name)
    removed = removed_checkpoints(copied)
    assert len(removed) == len(copied.trials) - 1
    for trial in copied.trials:
        kept = (copy / "artifacts" / trial.user_attrs[Attr.CHECKPOINT_ID]).is_file()
        assert kept == (trial.number not in removed), trial.number
    # A search resumed on the copy by its database stores (and collects) there too.
    joined = joining_config(copy_url, name, tmp_path)
    assert joined.artifact_location == str((copy / "artifacts").resolve())


def test_a_copy_of_a_study_database_alone_does_not_change_the_originals_artifacts(
    study_copy: Path, tmp_path: Path
) -> None:
    url, name, original = _searched_in(study_copy)
    copy_study_folder(original.parent, tmp_path / "db-only")
    copy = tmp_path / "db-only" / name
    shutil.rmtree(copy / "artifacts")
    copy_url = sqlite_url(copy / "study.db")
    args = ("--storage", copy_url, "--study-name", name, "--keep", "1")
    listed = hpo("gc", *args, "--dry-run", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    refused = hpo("gc", *args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert str((original / "artifacts").resolve()) in refused.stderr
    assert f"into {copy / 'artifacts'}" in refused.stderr
    assert "--storage " + sqlite_url((original / "study.db").resolve()) in refused.stderr
    with pytest.raises(ConfigError, match="would break that study"):
        joining_config(copy_url, name, tmp_path)
    study = optuna.load_study(study_name=name, storage=url)
    assert not removed_checkpoints(study)
    store = AtomicFileSystemArtifactStore(original / "artifacts")
    for trial in study.get_trials():
        fetch_checkpoint(store, trial, tmp_path)
    # Reading through the copy still reads the original's artifacts.
    config, _ = open_study(None, copy_url, name)
    assert config.artifact_location == str((original / "artifacts").resolve())


def test_a_copy_of_a_study_database_alone_opened_by_its_study_file_is_refused_as_well(
    study_copy: Path, tmp_path: Path
) -> None:
    # The study file beside the copied database names an artifacts/ of its own, which the
    # copy lacks: a search stored new checkpoints there while its trials' stayed in the
    # original's folder, and gc then deleted the copy's only checkpoint.
    url, name, original = _searched_in(study_copy)
    copy_study_folder(original.parent, tmp_path / "db-only")
    shutil.rmtree(tmp_path / "db-only" / name / "artifacts")
    copy = str(tmp_path / "db-only" / study_copy.name)
    for command in (("search", "--n-trials", "5"), ("gc", "--keep", "1")):
        refused = hpo(command[0], "--study", copy, *command[1:], cwd=tmp_path)
        assert refused.returncode == 2, (command, refused.stderr)
        assert str((original / "artifacts").resolve()) in refused.stderr
        assert "would break that study" in refused.stderr
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == 4
    assert not removed_checkpoints(study)
    # Read through the copy's study file, its trials' checkpoints are the original's.
    config, copied = open_study(copy, None, None)
    assert config.artifact_location == str((original / "artifacts").resolve())
    assert len(copied.trials) == 4


def test_a_read_only_study_is_read_and_what_would_write_to_it_says_why_not(
    study_copy: Path, tmp_path: Path
) -> None:
    config = load_study_config(study_copy)
    study = str(study_copy)
    before = (config.study_dir / "study.db").read_bytes()
    with read_only(config.study_dir):
        status = hpo("status", "--study", study, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "COMPLETE" in status.stdout
        assert "Checkpoints: " in status.stdout
        nowhere = hpo("report", "--study", study, cwd=tmp_path)
        assert nowhere.returncode == 2
        assert "give --out DIR" in nowhere.stderr
        # Reading a checkpoint holds it against hpo gc where the study can be written; here
        # it cannot, and the checkpoint is read unheld.
        assert load_study(study_copy).load_model().count_params() > 0
        report = hpo("report", "--study", study, "--out", str(tmp_path / "figures"), cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        assert "not registered for the dashboard" in report.stdout
        assert (tmp_path / "figures" / "report.html").is_file()
        for command, said in (
            (("ensemble", "--top", "2"), "hpo ensemble records each ensemble in its study"),
            (("gc", "--keep", "1"), "hpo gc records on each trial"),
            (("search",), "is not writable"),
        ):
            refused = hpo(command[0], "--study", study, *command[1:], cwd=tmp_path)
            assert refused.returncode == 2, (command, refused.stderr)
            assert said in refused.stderr, refused.stderr
        # The store itself: a reader opens it as it stands, a writer is refused.
        reader = open_storage(config.storage_url, create=False, heartbeat=False)
        assert isinstance(reader, RDBStorage)
        assert [s.study_name for s in optuna.get_all_study_summaries(reader)] == [config.name]
        reader.engine.dispose()
        with pytest.raises(StoreError, match="a search writes there"):
            open_storage(config.storage_url, create=True)
    assert (config.study_dir / "study.db").read_bytes() == before


def test_a_read_only_study_database_in_a_writable_folder_is_refused_before_any_work(
    study_copy: Path, tmp_path: Path
) -> None:
    # Only its folder was checked: hpo ensemble built and published its ensemble, then failed
    # to record it (Optuna's StorageInternalError, exit 1), so hpo gc would not keep its
    # members; and a reader left SQLite's -wal and -shm files beside it, read-only as well.
    config = load_study_config(study_copy)
    study = str(study_copy)
    database = config.study_dir / "study.db"
    before = database.read_bytes()
    with read_only(database):
        status = hpo("status", "--study", study, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "COMPLETE" in status.stdout
        for command, said in (
            (("ensemble", "--top", "2"), "hpo ensemble records each ensemble in its study"),
            (("gc", "--keep", "1"), "hpo gc records on each trial"),
            (("search",), "a search writes there"),
        ):
            refused = hpo(command[0], "--study", study, *command[1:], cwd=tmp_path)
            assert refused.returncode == 2, (command, refused.stderr)
            assert said in refused.stderr, refused.stderr
            assert f"the study database {database} is read-only" in refused.stderr
            assert "Make it writable (chmod u+w study.db in " in refused.stderr
        assert not (tmp_path / "ensembles").exists()
        # No journal of SQLite's beside it (the searches' lock files, empty, were there before).
        written = {p.name for p in config.study_dir.glob("study.db*")} - {
            "study.db.trial-start.lock",
            "study.db.search-runs.lock",
        }
        assert written == {"study.db"}
    assert database.read_bytes() == before


def test_read_only_wal_and_shm_files_left_beside_a_study_database_are_named(
    tmp_path: Path,
) -> None:
    # Left by SQLite reading the database while it was read-only: every write failed after the
    # database was made writable again, with Optuna's StorageInternalError.
    url = sqlite_url(tmp_path / "study.db")
    open_storage(url, create=True).engine.dispose()  # type: ignore[attr-defined]
    leftovers = [tmp_path / "study.db-wal", tmp_path / "study.db-shm"]
    for file in leftovers:
        file.touch()
    with read_only(leftovers[0]), read_only(leftovers[1]):
        with pytest.raises(StoreError) as caught:
            open_storage(url, create=True)
        assert str(caught.value) == (
            f"the study database {tmp_path / 'study.db'} has a read-only study.db-wal and "
            f"study.db-shm beside it, and a search writes there. Make them writable (chmod u+w "
            f"study.db-wal study.db-shm in {tmp_path}, as their owner), then run the same "
            f"command again."
        )
        reader = open_storage(url, create=False, heartbeat=False)
        assert isinstance(reader, RDBStorage)
        assert optuna.get_all_study_summaries(reader) == []
        reader.engine.dispose()
