"""The study store: Optuna's RDB storage (SQLite by default) and its file-system artifact store."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
import urllib.parse
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import GrpcStorageProxy, RDBStorage, RetryHeartbeatStaleTrialCallback

from hpo.config import sqlite_url
from hpo.disk import raise_if_database_full, writing
from hpo.errors import StoreError
from hpo.outage import (
    FIRST_PAUSE_S,
    LONGEST_PAUSE_S,
    STORAGE_WAIT_S,
    WaitingRDBStorage,
    driver_message,
    masked,
)

_log = logging.getLogger(__name__)

# Heartbeats and the stale-trial callback are marked experimental; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

if TYPE_CHECKING:
    from collections.abc import Container, Iterator

    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "HEARTBEAT_INTERVAL",
    "AtomicFileSystemArtifactStore",
    "artifact_address",
    "briefly_opened",
    "check_sqlite_file",
    "database_time",
    "delete_study_attr",
    "documented_storage",
    "load_existing_study",
    "may_retry",
    "open_artifact_store",
    "open_rdb_storage",
    "open_storage",
    "read_only_database",
    "redact_url",
    "redacted_repr",
    "refuse_read_only",
    "sha256_file",
    "sqlite_file",
]

# Seconds to wait for a database server before the command fails.
CONNECT_TIMEOUT_S = 10
GRPC_SCHEME = "grpc://"
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 90
SQLITE_BUSY_TIMEOUT_S = 120
STALE_TRIAL_RETRIES = 2
# Seconds to wait before each new try when another process was creating the same new database's
# tables at the same moment (workers starting together on several machines).
SCHEMA_RACE_WAITS_S = (0.5, 1.0, 2.0)
# SQLite's result codes SQLITE_CORRUPT and SQLITE_NOTADB, and their messages (Python 3.10's
# exceptions carry no code).
_SQLITE_DAMAGED = {11: "database disk image is malformed", 26: "file is not a database"}


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """A file-system artifact store whose writes are atomic: temporary file, fsync, rename.

    Optuna's store writes in place, so a kill mid-upload would leave a torn file under the
    artifact's final name.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        target = self._get_filepath(artifact_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            with writing(tmp, _bytes_left(content_body), "artifact folder"), open(tmp, "wb") as out:
                while chunk := content_body.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        finally:
            # On a read-only file system removing even a file that is not there fails (EROFS),
            # which would hide the error that says so, or an upload that succeeded.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def size(self, artifact_id: str) -> int:
        """The artifact's size in bytes; 0 if it is not there."""
        try:
            return self._get_filepath(artifact_id).stat().st_size
        except FileNotFoundError:
            return 0


def _bytes_left(stream: BinaryIO) -> int:
    """Bytes from a stream's position to its end (what an upload writes), or 0 if unknown."""
    try:
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
    except (OSError, AttributeError, ValueError):
        return 0
    return max(0, end - position)


def artifact_address(store: ArtifactStore, artifact_id: str) -> str:
    """Where an artifact lives, for messages: its file, `s3://bucket/key`, or its id."""
    if isinstance(store, FileSystemArtifactStore):
        with contextlib.suppress(ValueError):  # an id that escapes the folder: shown as it is
            return str(store._get_filepath(artifact_id))
    bucket = getattr(store, "bucket", None)
    if isinstance(bucket, str):
        return f"s3://{bucket}/{artifact_id}"
    return f"artifact {artifact_id}"


def redact_url(url: str) -> str:
    """The storage URL with its password masked, for messages and logs: the one after the
    user name, and any query parameter that holds one (`?password=`, libpq's `sslpassword`,
    a token)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return _SECRET_QUERY.sub(r"\1***", re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url))
    if parsed.password is not None:  # else as given (SQLAlchemy escapes a path's é)
        url = parsed.render_as_string(hide_password=True)
    return _SECRET_QUERY.sub(r"\1***", url)


# A URL's query parameter whose name says it holds a secret, up to its value.
_SECRET_QUERY = re.compile(
    r"([?&][^=&#]*(?:password|passwd|pwd|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE
)


def redacted_repr(record: Any) -> str:
    """A dataclass's repr with the password of each storage URL it holds masked (a study's
    configuration, a search's summary: printed in notebooks and logs)."""
    shown = []
    for field in dataclasses.fields(record):
        if field.repr:
            value = getattr(record, field.name)
            if field.name in ("storage", "storage_url") and isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{field.name}={value!r}")
    return f"{type(record).__name__}({', '.join(shown)})"


# The study stores hpo documents (docs/scale-out.md): the SQLAlchemy names a URL may give them,
# and their drivers (SQLAlchemy's default for plain `postgresql` is psycopg from 2.1 on, psycopg2
# before), with the module of each, which SQLAlchemy imports.
_DOCUMENTED_NAMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
_DOCUMENTED_DRIVERS = {"pysqlite": "sqlite3", "psycopg": "psycopg"}


def documented_storage(url: str) -> bool:
    """Whether `url` is a study store hpo documents, which a URL read from a file (an
    ensemble's report.json) may name: SQLite, PostgreSQL through psycopg with psycopg
    installed, or hpo's storage proxy (`grpc://`). Any other URL names a database driver that
    SQLAlchemy would import, which Python may find first in the working directory
    (`./pymysql.py` for `mysql+pymysql://`): a file never makes hpo import a module."""
    from hpo.models.external import installed_package

    if url.startswith(GRPC_SCHEME):
        return True
    try:
        parsed = sqlalchemy.engine.make_url(url)
        # Only a name of SQLAlchemy's own dialects: another is looked up among the entry points
        # of whatever distributions the import path holds, the working directory's included.
        if parsed.drivername not in _DOCUMENTED_NAMES:
            return False
        # Nor a plugin: SQLAlchemy loads the `?plugin=NAME` of a URL from those entry points.
        if {"plugin", "plugins"} & {key.lower() for key in parsed.query}:
            return False
        module = _DOCUMENTED_DRIVERS.get(parsed.get_dialect().driver)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError):
        return False
    return module is not None and installed_package(module)


@contextlib.contextmanager
def briefly_opened(database: Path) -> Iterator[RDBStorage]:
    """An existing SQLite study file, opened to read, and closed on leaving: its file handle,
    which a long process (a notebook) would otherwise keep, on a file that may be about to go.

    Raises:
        StoreError: See `open_rdb_storage`.
    """
    storage = open_rdb_storage(sqlite_url(database), create=False, heartbeat=False)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def open_storage(
    url: str, *, create: bool, heartbeat: bool = True, wait_to_open: bool = False
) -> BaseStorage:
    """Opens a study store: an RDB URL (SQLite, PostgreSQL, ...) or `grpc://host:port`, Optuna's
    gRPC storage proxy in front of one (see `hpo storage-proxy`).

    A proxy serves many workers with one database connection pool; it has no heartbeats, so a
    dead worker's trial is failed by the local sweep (same host, kernel and PID namespace) or
    stays RUNNING.

    Raises:
        StoreError: See `open_rdb_storage`; for a proxy, no server answers at that address.
    """
    if url.startswith(GRPC_SCHEME):
        return _open_grpc_proxy(url)
    return open_rdb_storage(url, create=create, heartbeat=heartbeat, wait_to_open=wait_to_open)


def _has_no_optuna_tables(exc: BaseException | None) -> bool:
    """Whether opening a database failed on its missing Optuna tables (a server's database that
    nothing has been searched into: Optuna reads its `version_info` table first, and raises
    what the driver said as the cause of its own error)."""
    while exc is not None:
        if isinstance(exc, sqlalchemy.exc.ProgrammingError) and "version_info" in str(exc.orig):
            return True
        exc = exc.__cause__
    return False


def may_retry(trial: FrozenTrial, limit: int | None) -> bool:
    """Whether `trial` may be queued again: fewer than `limit` (None: no limit) earlier tries,
    as Optuna's `RetryHeartbeatStaleTrialCallback` decides with max_retry=limit."""
    return limit is None or len(trial.system_attrs.get("retry_history", [])) < limit


class _CheckedRDBStorage(RDBStorage):
    """Optuna's RDB storage, whose trial rows Optuna cannot read (written by something else: a
    state or value type none of its enums holds, a parameter's index beyond its choices, JSON
    that does not parse, a distribution it does not know, a date that is none) raise a
    StoreError naming the damaged database, not the error of the field Optuna failed on."""

    # Where the database is, for the message (set by `open_rdb_storage`).
    where = "the study database"

    def delete_study_user_attr(
        self, study_id: int, key: str, value_json: str | None = None
    ) -> None:
        """Deletes one study attribute, if it is there, and only while its value is
        `value_json` (Optuna's JSON of it) where that is given (Optuna has no call for it; see
        `delete_study_attr`)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        attribute = models.StudyUserAttributeModel
        with _create_scoped_session(self.scoped_session, True) as session:
            rows = session.query(attribute).filter(
                attribute.study_id == study_id, attribute.key == key
            )
            if value_json is not None:
                rows = rows.filter(attribute.value_json == value_json)
            rows.delete()

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._readable_rows():
            return super().get_trial(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna fails these (`fail_stale_trials`) and only then calls back, when a finished
        # trial takes no more attributes: their reason is written first, while they run.
        from hpo.contract import Attr

        stale = super()._get_stale_trial_ids(study_id)
        for trial_id in stale:
            trial = self.get_trial(trial_id)
            worker = trial.user_attrs.get(Attr.WORKER, "unknown")
            reason = (
                f"its worker {worker} sent no heartbeat for {self.grace_period} s (killed, or "
                f"its machine lost); "
            ) + (
                "re-queued"
                if may_retry(trial, STALE_TRIAL_RETRIES)
                else f"not queued again after {STALE_TRIAL_RETRIES} earlier tries"
            )
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_user_attr(trial_id, Attr.FAIL_REASON, reason)
        return stale

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        # Where Optuna reads a study's trials (`get_all_trials`, and its cache's reads).
        with self._readable_rows():
            return super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)

    @contextlib.contextmanager
    def _readable_rows(self) -> Iterator[None]:
        try:
            yield
        # What Optuna and SQLAlchemy raise on such a row: LookupError for a value no enum holds
        # (IndexError for a choice, KeyError for a distribution's field), ValueError for JSON
        # or a date that does not parse and a distribution class it does not know.
        except (LookupError, ValueError) as exc:
            problem = f"a trial's row: {type(exc).__name__}: {exc}"
            raise StoreError(_damaged(self.where, problem)) from exc


class _CheckedWaitingRDBStorage(_CheckedRDBStorage, WaitingRDBStorage):
    """`WaitingRDBStorage` with `_CheckedRDBStorage`'s reads."""


def database_time(study: optuna.Study) -> float | None:
    """Now by the study's database server, in POSIX seconds (PostgreSQL); None for a store
    without a server of its own (SQLite, whose clock is this machine's; a gRPC proxy; memory)."""
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    if not isinstance(storage, _CheckedRDBStorage) or storage.engine.dialect.name != "postgresql":
        return None
    now = sqlalchemy.text("SELECT EXTRACT(EPOCH FROM now())")
    with storage.engine.connect() as connection:
        return float(connection.execute(now).scalar_one())


def delete_study_attr(study: optuna.Study, key: str, *, unchanged_from: Any = ...) -> bool:
    """Deletes the study attribute `key` where its store is a database hpo opened (SQLite,
    PostgreSQL); False, deleting nothing, where it cannot (a gRPC proxy, an in-memory study),
    for the caller to overwrite it instead.

    Args:
        unchanged_from: Where given, the value read before: the attribute is deleted only if
            it still holds that (another process may have written it since).
    """
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    if not isinstance(storage, _CheckedRDBStorage):
        return False
    # Optuna stores an attribute as json.dumps of its value.
    expected = None if unchanged_from is ... else json.dumps(unchanged_from)
    storage.delete_study_user_attr(study._study_id, key, expected)
    return True


def _damaged(where: object, problem: str) -> str:
    """The message for a damaged SQLite database or a database holding malformed rows."""
    name = Path(str(where)).name
    return (
        f"the study database {where} is damaged ({problem}); hpo will not read or extend "
        f"it. Restore it from a backup copy (and delete any {name}-wal and {name}-shm beside "
        f"it first), or move it aside to start a new study; sqlite3's .recover command may "
        f"salvage its trials."
    )


def _open_grpc_proxy(url: str) -> BaseStorage:
    host, _, port = url.removeprefix(GRPC_SCHEME).rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise StoreError(
            f"storage URL {url!r} is malformed. A gRPC storage proxy is grpc://host:port, "
            f"for example grpc://127.0.0.1:13000."
        )
    wait_s = _seconds_from_env("HPO_STORAGE_WAIT", STORAGE_WAIT_S)
    proxy = _WaitingGrpcStorageProxy(host=host, port=int(port), wait_s=wait_s)
    try:
        proxy.wait_server_ready(timeout=CONNECT_TIMEOUT_S)
    except ConnectionError as exc:
        raise StoreError(
            f"no gRPC storage proxy answers at {url} within {CONNECT_TIMEOUT_S} s. Start one "
            f"with: hpo storage-proxy --storage <database URL> --port {port}"
        ) from exc
    return proxy


class _WaitingGrpcStorageProxy(GrpcStorageProxy):
    """Optuna's gRPC storage proxy client whose calls wait out a proxy that stops answering
    (restarted, as a database server is waited out: `WaitingRDBStorage`), and whose errors
    from the proxy's side (its database gone for longer than it waits) are `StoreError`s
    naming it, not gRPC's tracebacks.

    Args:
        wait_s: Seconds a call waits for the proxy to answer again before it gives up.
    """

    def __init__(self, *, host: str, port: int, wait_s: float) -> None:
        self._wait_s = wait_s
        super().__init__(host=host, port=port)

    @property
    def url(self) -> str:
        """The proxy's address, `grpc://host:port`, which messages name (as an RDB storage's)."""
        return f"{GRPC_SCHEME}{self._host}:{self._port}"

    def _setup(self) -> None:  # also run when unpickled in a trial's process
        from optuna.storages._grpc.client import GrpcClientCache

        super()._setup()
        self._stub = _WaitingStub(self._stub, self.url, self._wait_s)  # type: ignore[assignment]
        self._cache = GrpcClientCache(self._stub)


class _WaitingStub:
    """A gRPC stub whose calls are made again while the server is unavailable (refused,
    restarting), for up to `wait_s` seconds, with backoff. A call the proxy did not receive
    is safe to make again; one it received but did not answer (it died mid-call) may be
    made twice, as a database call cut off at its commit can be."""

    def __init__(self, stub: Any, url: str, wait_s: float) -> None:
        self._stub, self._url, self._wait_s = stub, url, wait_s

    def __getattr__(self, name: str) -> Any:
        import grpc

        call = getattr(self._stub, name)

        def waiting(*args: Any, **kwargs: Any) -> Any:
            started, pause = time.monotonic(), FIRST_PAUSE_S
            while True:
                try:
                    return call(*args, **kwargs)
                except grpc.RpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.UNKNOWN:  # an error on the proxy's side
                        raise StoreError(
                            f"the gRPC storage proxy at {self._url} failed: {exc.details()}"
                        ) from exc
                    if code != grpc.StatusCode.UNAVAILABLE:
                        raise
                    waited = time.monotonic() - started
                    if waited >= self._wait_s:
                        raise StoreError(
                            f"the gRPC storage proxy at {self._url} has not answered for "
                            f"{waited:.0f} s ({exc.details()}); giving up. Start it again "
                            f"(hpo storage-proxy --storage <database URL> --port "
                            f"{self._url.rpartition(':')[2]}), then run the same command: a "
                            f"search resumes, its interrupted trials queued again."
                        ) from exc
                    _log.warning(
                        "the gRPC storage proxy at %s does not answer (%s); waiting up to %.0f s",
                        self._url,
                        code.name,
                        self._wait_s - waited,
                    )
                    time.sleep(min(pause, self._wait_s - waited))
                    pause = min(2 * pause, LONGEST_PAUSE_S)

        return waiting


def open_rdb_storage(
    url: str, *, create: bool, heartbeat: bool = True, wait_to_open: bool = False
) -> RDBStorage:
    """Opens an Optuna RDB storage, configured for several workers.

    SQLite gets write-ahead logging and a long busy timeout, so parallel workers and a polling
    dashboard wait for each other instead of failing with "database is locked". A database
    server's outage is waited out for $HPO_STORAGE_WAIT seconds (`WaitingRDBStorage`).
    Heartbeats let a later run fail and re-queue trials whose worker was killed.

    Args:
        url: SQLAlchemy URL, e.g. `sqlite:///studies/imdb/study.db` or `postgresql://...`.
        create: Whether a missing SQLite file may be created. Read-only commands pass False, so
            a mistyped path is an error rather than a new empty database.
        heartbeat: Whether trials send heartbeats (search workers) or not (readers).
        wait_to_open: Whether a database server that does not answer is waited for already
            while opening (the processes of a running search), not only once open.

    Raises:
        StoreError: The URL is malformed, its driver is missing or its SQLite file is absent.
    """
    shown = redact_url(url)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise StoreError(
            f"storage URL {shown!r} is malformed. Use sqlite:///path/to/study.db or "
            f"postgresql://user:password@host/dbname."
        ) from exc
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StoreError(
            f"storage URL {shown!r} names a database kind SQLAlchemy does not know "
            f"({parsed.drivername!r}). Use sqlite:///path/to/study.db or "
            f"postgresql://user:password@host/dbname."
        ) from None
    try:
        dialect.import_dbapi()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"storage URL {shown!r} needs a database driver that is not installed ({exc}). "
            f"For PostgreSQL: pip install -e '.[postgres]'."
        ) from exc
    engine_kwargs: dict[str, object] = {}
    database: Path | None = None  # a SQLite file's, for the message where its disk is full
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        unwritable = _unwritable(path) if path.exists() else None
        if unwritable is not None:
            if create:
                raise StoreError(
                    f"the study database {path} {unwritable.why}, and a search writes there. "
                    f"{unwritable.fix}"
                )
            # A reader: the file as it stands, without SQLite's locks, nor the -wal and -shm
            # files SQLite would leave beside a read-only file (read-only too: see `_unwritable`).
            # SQLAlchemy decodes the URL's escapes once, SQLite the URI's once more.
            url = f"sqlite:///{_read_only_uri(path).replace('%', '%25')}&uri=true"
        if path.exists():
            check_sqlite_file(path, read_only=unwritable is not None)
        if not path.exists() and not create:
            raise StoreError(
                f"no study database at {path} (from storage URL {shown!r}). Check the path, "
                f"or run the search first: hpo search --study <file>."
            )
        try:
            if not path.exists():
                _create_sqlite_database(path)
            elif create:
                with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as db:
                    db.execute("PRAGMA journal_mode=WAL")
        except (sqlite3.Error, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise_if_database_full(exc, path)
            raise
        database = path
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif parsed.get_backend_name() == "postgresql":
        # An unreachable server is an error within seconds, not a hang.
        engine_kwargs = {
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
            "pool_pre_ping": True,
        }
    # A database server that stops answering (a restart, a fail-over) is waited for; SQLite's
    # errors (a locked or read-only file) do not pass with time.
    waits = parsed.get_backend_name() != "sqlite"
    wait_s = _seconds_from_env("HPO_STORAGE_WAIT", STORAGE_WAIT_S)
    heartbeat_kwargs: dict[str, object] = {}
    if heartbeat:
        interval = _seconds_from_env("HPO_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL)
        # No heartbeat is written while the server is away: a trial is stale only after longer
        # than its worker waits for the server, or an outage would fail every running trial.
        grace = max(GRACE_PERIOD, wait_s + 2 * interval) if waits else GRACE_PERIOD
        heartbeat_kwargs = {
            "heartbeat_interval": interval,
            "grace_period": _seconds_from_env("HPO_HEARTBEAT_GRACE", grace),
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                max_retry=STALE_TRIAL_RETRIES
            ),
        }

    def connect() -> RDBStorage:
        kwargs: dict[str, Any] = {
            "engine_kwargs": engine_kwargs,
            "skip_table_creation": not create,
            **heartbeat_kwargs,
        }
        storage: _CheckedRDBStorage
        if waits:
            storage = _CheckedWaitingRDBStorage(
                url, wait_s=wait_s, wait_to_open=wait_to_open, **kwargs
            )
        else:
            storage = _CheckedRDBStorage(url, **kwargs)
        storage.where = str(sqlite_file(shown) or shown)
        return storage

    try:
        for wait in SCHEMA_RACE_WAITS_S:
            try:
                return connect()
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
                # Optuna creates a new database's tables (its alembic_version one even for a
                # reader) on open; when another process does so at the same moment, one CREATE
                # fails with "already exists". The tables are there then: open again.
                if "already exists" not in str(exc):
                    raise
                time.sleep(wait)
        return connect()
    except (
        sqlalchemy.exc.SQLAlchemyError,
        optuna.exceptions.StorageInternalError,
        RuntimeError,
    ) as exc:
        if database is not None:
            raise_if_database_full(exc, database)
        if _has_no_optuna_tables(exc) and not create:
            raise StoreError(
                f"no study database in {shown!r}: it holds no Optuna tables, so nothing has "
                f"been searched into it. Check the URL (the database's name), or run the search "
                f"first: hpo search --study <file> --storage URL."
            ) from None  # the driver's exception can quote the URL, password included
        message = masked(" ".join(driver_message(exc).split()).replace(url, shown), parsed.password)
        raise StoreError(
            f"cannot open storage {shown!r} as an Optuna study database: {message}. Check the "
            f"URL, and that the database server is running and reachable from this machine."
        ) from None  # the driver's exception can quote the URL, password included


def _seconds_from_env(name: str, default: int) -> int:
    """A whole number of seconds from the environment (tests shorten heartbeats), or `default`."""
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise StoreError(f"${name} must be a whole number of seconds >= 1, got {text!r}.")
    return int(text)


def _create_sqlite_database(path: Path) -> None:
    """Creates a SQLite file with Optuna's tables, in WAL mode, and publishes it atomically.

    The tables are made in a temporary file that is then hard-linked into place, so no other
    process (a second worker, a dashboard) ever opens a half-initialised database; if another
    process published one first, it is kept and ours is dropped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            db.execute("PRAGMA journal_mode=WAL")
        RDBStorage(sqlite_url(tmp)).engine.dispose()
        with contextlib.closing(sqlite3.connect(tmp)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def sqlite_file(url: str) -> Path | None:
    """The file a `sqlite:///` storage URL names; None for another store."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class _Unwritable(NamedTuple):
    """Why SQLite cannot write a study database, and the fix, for messages."""

    why: str  # "is in a read-only folder", after "the study database <path>"
    fix: str


def _unwritable(path: Path) -> _Unwritable | None:
    """Why SQLite cannot write the existing study database at `path`; None where it can.

    SQLite writes the file and, beside it, its `-wal` and `-shm` files, which it makes with the
    database's permissions: a read-only database read by SQLite leaves read-only ones there,
    which fail every write after the database itself is made writable again.
    """
    if not os.access(path.parent, os.W_OK):
        return _Unwritable(
            "is in a read-only folder",
            "Copy the study's folder somewhere writable and run it there.",
        )
    files = (path, *(path.with_name(f"{path.name}-{end}") for end in ("wal", "shm")))
    locked = [f.name for f in files if f.exists() and not os.access(f, os.W_OK)]
    if not locked:
        return None
    return _Unwritable(
        "is read-only"
        if locked[0] == path.name
        else f"has a read-only {' and '.join(locked)} beside it",
        f"Make {'it' if len(locked) == 1 else 'them'} writable (chmod u+w "
        f"{' '.join(locked)} in {path.parent}, as {'its' if len(locked) == 1 else 'their'} "
        f"owner), then run the same command again.",
    )


def read_only_database(url: str) -> Path | None:
    """The SQLite file of a study store that cannot be written (in a read-only folder, or
    itself read-only: see `_unwritable`), which readers open as it stands and nothing writes
    to; None for any other store."""
    found = _unwritable_database(url)
    return None if found is None else found[0]


def refuse_read_only(url: str, command: str, why: str) -> None:
    """Raises StoreError naming `command` and `why` it writes, where the study's store is a
    SQLite file that cannot be written (see `read_only_database`), before the command's work."""
    if (found := _unwritable_database(url)) is not None:
        path, unwritable = found
        raise StoreError(
            f"{command} {why}, and the study database {path} {unwritable.why}. {unwritable.fix}"
        )


def _unwritable_database(url: str) -> tuple[Path, _Unwritable] | None:
    path = sqlite_file(url)
    if path is None or not path.exists() or (unwritable := _unwritable(path)) is None:
        return None
    return path, unwritable


def _read_only_uri(path: Path) -> str:
    """An SQLite URI that opens a study database that cannot be written (an archive's mount,
    another user's study, a file made read-only), where SQLite cannot make the shared-memory
    file a WAL database is read with, or would leave it read-only: read-only and immutable, the
    file as it stands.

    Raises:
        StoreError: Writes not yet in the file wait in its `-wal` file, which such a reader
            cannot read.
    """
    wal = path.with_name(f"{path.name}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        unwritable = _unwritable(path) or _Unwritable(
            "cannot be written", "Make it writable, then run the same command again."
        )
        raise StoreError(
            f"the study database {path} {unwritable.why}, and {wal.name} beside it holds "
            f"writes not yet in {path.name} (a search is writing it, or it was copied while one "
            f"did), which SQLite cannot read without writing there. {unwritable.fix}"
        )
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro&immutable=1"


def check_sqlite_file(path: Path, *, read_only: bool = False) -> None:
    """Raises StoreError if the SQLite file at `path` is damaged (overwritten, truncated).

    SQLite notices damage only when it reads the damaged page, which may be mid-command and
    then surfaces as a driver error; `PRAGMA quick_check` reads every page now (milliseconds
    for a study's few megabytes), under the busy timeout, without blocking WAL writers.
    """
    problem = None
    if path.stat().st_size == 0:
        # hpo publishes a new database only once its tables exist (`_create_sqlite_database`).
        problem = "it is empty: 0 bytes"
    else:
        try:
            connection = (
                sqlite3.connect(_read_only_uri(path), uri=True)
                if read_only
                else sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
            )
            try:
                rows = connection.execute("PRAGMA quick_check").fetchall()
            finally:
                connection.close()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                return  # locked or unreadable, not damaged: opening it reports that
            problem = str(exc)
        else:
            if rows != [("ok",)]:
                problem = "; ".join(str(row[0]) for row in rows[:3])
    if problem is not None:
        raise StoreError(_damaged(path, problem))


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _SQLITE_DAMAGED
    return str(exc) in _SQLITE_DAMAGED.values()


def _sqlite_path(url: str) -> Path:
    if (path := sqlite_file(url)) is None:
        raise StoreError(
            f"storage URL {url!r} names no SQLite file. Use sqlite:///path/to/study.db."
        )
    return path


def load_existing_study(storage: BaseStorage, study_name: str) -> optuna.Study:
    """Loads a study that must exist, for read-only commands.

    Raises:
        StoreError: No study of that name; the message lists the ones there are.
    """
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot read studies from {_where(storage)}: {exc}") from exc
    except KeyError as exc:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StoreError(
            f"no study named {study_name!r} in {_where(storage)}. Studies there: {names or 'none'}."
        ) from exc


def _where(storage: BaseStorage) -> str:
    url = getattr(storage, "url", None)
    return redact_url(url) if isinstance(url, str) else type(storage).__name__


def open_artifact_store(location: str | Path, *, create: bool = True) -> ArtifactStore:
    """Opens a study's artifact store: `s3://bucket`, or a folder (created if needed, where
    `create`; readers pass False).

    Raises:
        StoreError: The bucket cannot be reached (missing, no permission, no endpoint), or
            boto3 is not installed; or, not to `create`, the folder is missing.
    """
    text = str(location)
    if not text.startswith("s3://"):
        folder = Path(location)
        if not create and not folder.is_dir():
            raise StoreError(
                f"the study's artifact folder {folder} (its checkpoints and predictions) does not "
                f"exist. If the study's folder was moved or copied, open it by its study file "
                f"(--study), or keep artifacts/ beside its study.db; else set 'artifacts' in "
                f"the study file to where it is now."
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"the artifact folder {folder} cannot be created ({exc}). Set 'artifacts' in the "
                f"study file to a writable folder (shared by every machine of the study)."
            ) from exc
        return AtomicFileSystemArtifactStore(folder)
    bucket = text.removeprefix("s3://").strip("/")
    if not bucket or "/" in bucket:
        raise StoreError(
            f"artifact store {text!r} is not a bucket: use s3://BUCKET (artifact ids are the "
            f"object keys)."
        )
    from hpo.models.external import installed_package

    needs = f"artifact store {text!r} needs boto3, which is not installed: pip install -e '.[s3]'."
    # Only an installed one: the location may be the study's record, and a boto3.py in the
    # working directory (on the import path of `python -m hpo...`) would be found first.
    if not installed_package("boto3"):
        raise StoreError(needs)
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
        from optuna.artifacts import Boto3ArtifactStore
    except ImportError as exc:
        raise StoreError(needs) from exc
    client = boto3.client("s3")
    try:
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        raise StoreError(
            f"cannot reach the artifact bucket {text!r} ({exc}). Check that it exists, the AWS "
            f"credentials and region, and AWS_ENDPOINT_URL for an S3-compatible server."
        ) from exc
    return Boto3ArtifactStore(bucket, client)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
