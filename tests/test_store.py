from __future__ import annotations

import os
import sqlite3
import threading
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import optuna
import pytest
import sqlalchemy

from hpo.artifacts import held_checkpoints, holding
from hpo.errors import StoreError
from hpo.outage import masked
from hpo.store import delete_study_attr, open_storage, redact_url

from .conftest import hold_readers

if TYPE_CHECKING:
    from pathlib import Path


def test_readers_never_see_a_half_created_database(tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                open_storage(url, create=False, heartbeat=False)
            except StoreError as exc:
                if "no study database" not in str(exc):
                    errors.append(exc)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        storage = open_storage(url, create=True)
        optuna.create_study(study_name="s", storage=storage)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "creating" in p.name) == []
    assert optuna.get_all_study_names(open_storage(url, create=False, heartbeat=False)) == ["s"]


def test_a_database_without_optuna_tables_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from hpo.store import load_existing_study

    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE unrelated (x INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="as an Optuna study database"):
        load_existing_study(open_storage(f"sqlite:///{path}", create=False, heartbeat=False), "s")


def _schema_race() -> sqlalchemy.exc.IntegrityError:
    # What psycopg reports when another process created Optuna's alembic_version table first.
    return sqlalchemy.exc.IntegrityError(
        "CREATE TABLE alembic_version (...)",
        None,
        Exception(
            'duplicate key value violates unique constraint "pg_type_typname_nsp_index"\n'
            "DETAIL:  Key (typname, typnamespace)=(alembic_version, 2200) already exists."
        ),
    )


def test_opening_a_database_another_process_is_creating_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hpo.store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_storage(url, create=True, heartbeat=False)
    # The class a SQLite storage is opened as (Optuna's RDBStorage, its trial rows checked).
    real, calls = hpo.store._CheckedRDBStorage, []

    def racing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise _schema_race()
        return real(*args, **kwargs)

    monkeypatch.setattr(hpo.store, "_CheckedRDBStorage", racing)
    monkeypatch.setattr(hpo.store, "SCHEMA_RACE_WAITS_S", (0.0,))
    assert isinstance(open_storage(url, create=False, heartbeat=False), real)
    assert len(calls) == 2

    # Any other integrity error, or the race lasting past the last try, is still an error.
    def failing(*args: object, **kwargs: object) -> object:
        raise _schema_race()

    monkeypatch.setattr(hpo.store, "_CheckedRDBStorage", failing)
    with pytest.raises(StoreError, match="already exists"):
        open_storage(url, create=False, heartbeat=False)


@pytest.fixture(scope="module")
def sound_study(fake_imdb: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A tiny study file and the bytes of its database: a few trials over several pages."""
    from hpo.config import load_study_config

    from .conftest import write_study

    study_file = write_study(tmp_path_factory.mktemp("sound"), fake_imdb)
    config = load_study_config(study_file)
    storage = open_storage(config.storage_url, create=True, heartbeat=False)
    study = optuna.create_study(study_name=config.name, storage=storage)
    for value in range(4):
        trial = study.ask()
        trial.set_user_attr("padding", "x" * 8000)  # pages enough that half the file is torn
        study.tell(trial, value)
    database = config.study_dir / "study.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return study_file, database.read_bytes()


@pytest.mark.parametrize("how", ["header overwritten", "truncated", "emptied"])
def test_every_command_refuses_a_damaged_database_naming_it_and_the_fix(
    how: str,
    sound_study: tuple[Path, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    from hpo.cli import main

    original, sound = sound_study
    shutil.copy(original, tmp_path)
    study_file = tmp_path / original.name
    database = tmp_path / study_file.stem / "study.db"
    database.parent.mkdir()
    damaged = {
        "header overwritten": os.urandom(100) + sound[100:],
        "truncated": sound[: len(sound) // 2],
        "emptied": b"",
    }[how]
    database.write_bytes(damaged)
    for command in ("status", "report", "ensemble", "search"):
        assert main([command, "--study", str(study_file)]) == 2, command
        err = capsys.readouterr().err
        assert f"error: the study database {database} is damaged" in err, (command, err)
        assert "Restore it from a backup copy" in err
        assert "Traceback" not in err
        assert database.read_bytes() == damaged, f"{command} changed the damaged file"


def test_a_storage_url_is_shown_as_given_with_only_its_password_masked() -> None:
    # A path's letters stay as typed (SQLAlchemy would print %C3%A9 for é).
    assert redact_url("sqlite:////data/études 2/study.db") == "sqlite:////data/études 2/study.db"
    assert redact_url("postgresql+psycopg://hpo:s3cret@db:5432/hpo") == (
        "postgresql+psycopg://hpo:***@db:5432/hpo"
    )
    assert redact_url("grpc://127.0.0.1:13000") == "grpc://127.0.0.1:13000"
    # A password given as a query parameter (libpq takes password= and sslpassword= there) was
    # shown as given, in a search summary's repr.
    assert redact_url("postgresql://u@h/db?password=s3cret&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact_url("postgresql://u:a@h/db?sslmode=require&sslpassword=k3y") == (
        "postgresql://u:***@h/db?sslmode=require&sslpassword=***"
    )
    assert redact_url("not a url?token=t0k") == "not a url?token=***"


def test_a_mistyped_database_kind_is_named_as_such_not_as_a_missing_driver() -> None:
    for url, kind in (
        ("sqlit:///x.db", "sqlit"),
        ("postgresql+nodriver://u@h/db", r"postgresql\+nodriver"),
    ):
        with pytest.raises(StoreError, match=rf"names a database kind .*'{kind}'") as caught:
            open_storage(url, create=False)
        assert "sqlite:///path/to/study.db" in str(caught.value)
        assert "not installed" not in str(caught.value)


def test_a_short_password_is_masked_where_it_stands_alone_not_inside_words() -> None:
    quoted = 'connection to server at "h", port 1 failed for user u with password p; p'
    assert masked(quoted, "p") == (
        'connection to server at "h", port 1 failed for user u with password ***; ***'
    )
    assert masked("pw=s3cr.t+ failed", "s3cr.t+") == "pw=*** failed"
    assert masked("no password given", None) == "no password given"


def test_a_study_folder_named_with_a_question_mark_or_percent_keeps_its_database_inside(
    tmp_path: Path,
) -> None:
    # "?" starts a URL's query and "%" an escape: the database of a folder "runs #1?" was made
    # as a file named "runs #1" beside it, and a reader then found no study.
    from hpo.config import StudyConfig
    from hpo.store import sqlite_file

    for name in ("runs #1?", "100%ab", "é 50%"):
        folder = tmp_path / name / "study"
        config = StudyConfig(name="study", study_dir=folder)
        assert sqlite_file(config.storage_url) == (folder / "study.db").resolve()
        open_storage(config.storage_url, create=True, heartbeat=False)
        assert (folder / "study.db").is_file()
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["study"]


@pytest.mark.parametrize(
    "tamper",
    [
        "update trials set state = 'BOGUS' where number = 1",
        "update trial_params set param_value = 7 where param_name = 'family'",
        "update trial_params set distribution_json = 'not json' where param_name = 'family'",
        """update trial_params set distribution_json = '{"name": "Evil"}'""",
        "update trial_user_attributes set value_json = '{not json' where key = 'epochs'",
        "update trials set datetime_start = 'yesterday' where number = 1",
        "update trial_values set value = NULL, value_type = 'NAN'",
    ],
)
def test_a_trial_row_optuna_cannot_read_is_a_damaged_database(tmp_path: Path, tamper: str) -> None:
    # The file's pages are sound (PRAGMA quick_check passes); its rows were written by hand.
    database = tmp_path / "study.db"
    url = f"sqlite:///{database}"
    study = optuna.create_study(study_name="s", storage=open_storage(url, create=True))
    for number in range(2):
        trial = study.ask({"family": optuna.distributions.CategoricalDistribution(["a", "b"])})
        trial.set_user_attr("epochs", 3)
        study.tell(trial, 0.5 + number / 10)
    with sqlite3.connect(database) as connection:
        connection.execute(tamper)
    reader = optuna.load_study(study_name="s", storage=open_storage(url, create=False))
    with pytest.raises(StoreError, match=f"the study database {database} is damaged"):
        reader.get_trials()
    with pytest.raises(StoreError, match="a trial's row"):
        reader.trials_dataframe()


def test_a_released_hold_leaves_no_attribute_where_the_store_can_delete_one(
    tmp_path: Path,
) -> None:
    on_disk = optuna.create_study(
        storage=open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    )
    in_memory = optuna.create_study()
    for study in (on_disk, in_memory):
        study.set_user_attr("kept", 1)
        with holding(study, [3, 1], "hpo ensemble"):
            assert hold_readers(held_checkpoints(study)) == dict.fromkeys([1, 3], "hpo ensemble")
        assert held_checkpoints(study) == {}
    assert on_disk.user_attrs == {"kept": 1}
    # Optuna's in-memory storage (like a gRPC proxy) cannot delete one: it is overwritten.
    assert sorted(in_memory.user_attrs.values(), key=str) == [1, None]
    assert not delete_study_attr(in_memory, "kept")


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_storage_proxy_that_restarts_is_waited_out_and_its_own_errors_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A restarted proxy killed every worker with gRPC's traceback, leaving its trial RUNNING.
    from hpo import store

    monkeypatch.setattr(store.time, "sleep", lambda seconds: None)
    answers: list[Any] = [
        _RpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
        _RpcError(grpc.StatusCode.UNAVAILABLE, "Connection refused"),
        "studies",
    ]

    def call(request: object) -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    stub = store._WaitingStub(SimpleNamespace(GetAllStudies=call), "grpc://h:13000", 60.0)
    assert stub.GetAllStudies("request") == "studies"
    assert answers == []
    # The proxy's own error (its database gone longer than it waits): one line, no traceback.
    answers[:] = [_RpcError(grpc.StatusCode.UNKNOWN, "Exception calling application: gone")]
    with pytest.raises(StoreError, match=r"proxy at grpc://h:13000 failed: Exception calling"):
        stub.GetAllStudies("request")
    # Other codes are Optuna's to read (ALREADY_EXISTS: a study of that name).
    answers[:] = [_RpcError(grpc.StatusCode.ALREADY_EXISTS, "exists")]
    with pytest.raises(grpc.RpcError):
        stub.GetAllStudies("request")
    # A proxy that stays away: given up after the wait, naming how to resume.
    never = store._WaitingStub(SimpleNamespace(GetAllStudies=call), "grpc://h:13000", 0.0)
    answers[:] = [_RpcError(grpc.StatusCode.UNAVAILABLE, "Connection refused")]
    with pytest.raises(StoreError, match=r"has not answered for 0 s \(Connection refused\);"):
        never.GetAllStudies("request")


def test_a_trial_failed_by_heartbeat_records_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from optuna.trial import TrialState

    from hpo.contract import Attr

    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_HEARTBEAT_GRACE", "1")
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr(Attr.WORKER, "host-a:4242")
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    time.sleep(2.5)  # its worker is gone: no heartbeat past the grace period
    optuna.storages.fail_stale_trials(study)
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    reason = failed.user_attrs[Attr.FAIL_REASON]
    assert reason.startswith("its worker host-a:4242 sent no heartbeat for 1 s")
    assert reason.endswith("re-queued")
    assert study.trials[-1].state == TrialState.WAITING  # and queued again


def test_a_study_missing_behind_the_storage_proxy_names_the_proxys_address() -> None:
    from optuna.storages._grpc.server import make_server

    from hpo.store import load_existing_study

    from .conftest import free_port

    port = free_port()
    server = make_server(optuna.storages.InMemoryStorage(), "127.0.0.1", port)
    server.start()
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}", create=False)
        with pytest.raises(StoreError) as missing:
            load_existing_study(storage, "nosuch")
    finally:
        server.stop(None)
    assert f"no study named 'nosuch' in grpc://127.0.0.1:{port}." in str(missing.value)


def test_an_s3_location_never_imports_a_boto3_outside_the_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The location may be the study's record; `python -m hpo.gc --storage ... --study-name ...`
    # ran the working directory's boto3.py (on the import path first).
    import sys

    from hpo.store import open_artifact_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "boto3", raising=False)
    ran = tmp_path / "ran"
    (tmp_path / "boto3.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    with pytest.raises(StoreError, match=r"'s3://bucket' needs boto3, which is not installed"):
        open_artifact_store("s3://bucket")
    assert not ran.exists()
