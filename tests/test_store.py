from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

import optuna
import pytest
import sqlalchemy

from hpo.errors import StoreError
from hpo.store import open_storage

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
    real, calls = hpo.store.RDBStorage, []

    def racing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise _schema_race()
        return real(*args, **kwargs)

    monkeypatch.setattr(hpo.store, "RDBStorage", racing)
    monkeypatch.setattr(hpo.store, "SCHEMA_RACE_WAITS_S", (0.0,))
    assert isinstance(open_storage(url, create=False, heartbeat=False), real)
    assert len(calls) == 2

    # Any other integrity error, or the race lasting past the last try, is still an error.
    def failing(*args: object, **kwargs: object) -> object:
        raise _schema_race()

    monkeypatch.setattr(hpo.store, "RDBStorage", failing)
    with pytest.raises(StoreError, match="already exists"):
        open_storage(url, create=False, heartbeat=False)
