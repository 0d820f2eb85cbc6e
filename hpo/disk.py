"""Writing files on a disk that may fill: a full disk, or a folder that cannot be written, is an
error naming it, and leaves no partial file behind. Used by how to train one trial (checkpoints)
and the study store."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hpo.errors import ConfigError, DiskFull, HpoError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hpo.config import StudyConfig

__all__ = [
    "check_log_file",
    "free_bytes",
    "has_room",
    "make_study_folder",
    "raise_if_database_full",
    "raise_if_full",
    "raise_if_study_full",
    "replacing",
    "writing",
    "writing_temporary",
]

_FULL = (errno.ENOSPC, errno.EDQUOT)
# A folder that cannot be written: its file system remounted read-only (after an error, a NAS
# share gone read-only) or its permissions changed. No trial after can write there either.
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_NO_SPACE = "No space left on device"  # strerror(ENOSPC), in the messages of other errors
# A file that would grow past this process's file-size limit (`ulimit -f`), or past the largest
# file its file system takes: the disk may have room, but the same file fails the same way.
_TOO_LARGE = "File too large"  # strerror(EFBIG)
_SQLITE_FULL = "database or disk is full"  # SQLite's SQLITE_FULL, as Python's sqlite3 says it
# SQLite's SQLITE_IOERR, which is all it says where its -shm file cannot grow (opening a WAL
# database, even to read it) or a write to its -wal file fails: taken for a full disk where
# less than _SQLITE_ROOM bytes are free there (it grows the -shm file 32 KB at a time).
_SQLITE_IO = "disk I/O error"
_SQLITE_ROOM = 1 << 20
# The most SQLite grows a file by at one write (its -shm file's 32 KB; a -wal frame is a page).
_SQLITE_GROWTH = 1 << 16


def make_study_folder(study_dir: Path) -> None:
    """Makes the study's folder, or raises ConfigError naming it (absolute: a Tuner's default
    directory is the working folder) where it cannot be written."""
    try:
        _make_writable(study_dir)
    except OSError as exc:
        raise ConfigError(
            f"the study folder {study_dir.absolute()} is not writable ({exc}). Put the study "
            f"(the study file, or a Tuner's directory=) in a writable folder or fix the "
            f"permissions."
        ) from exc


def check_log_file(log_path: Path) -> None:
    """Makes the folder of `log_path` (the study's logs/), or raises ConfigError naming it and
    the fix where the log cannot be written there.

    A process hpo starts (`hpo.training.isolation.call_isolated`) opens its log itself, and one
    that cannot died before it could say why: "the child process exited with exit code 1
    before reporting a result". So the process that starts it checks first.
    """
    folder = log_path.parent
    try:
        _make_writable(folder)
    except OSError as exc:
        raise ConfigError(_unwritable_log(f"the log folder {folder}", exc, folder)) from exc
    if log_path.exists():
        try:
            with open(log_path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(_unwritable_log(f"the log file {log_path}", exc, log_path)) from exc


def _unwritable_log(what: str, exc: OSError, path: Path) -> str:
    return (
        f"{what} cannot be written ({exc.strerror or exc}): hpo keeps there the output of each "
        f"process it starts. Fix its permissions (chmod u+rwX {path}), or remove it for hpo "
        f"to make it anew, then run the same command again."
    )


def _make_writable(folder: Path) -> None:
    """Makes `folder` and writes a file in it (removed again); raises what that raised."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.touch()
    probe.unlink()


@contextlib.contextmanager
def writing(path: Path, needed: int, folder: str = "folder") -> Iterator[None]:
    """Removes `path` if the body fails with an OSError, turns a full disk into DiskFull, and a
    folder that cannot be written or a file too large (`_too_large`) into ConfigError (which
    stops a search: every later trial would train to the end and fail the same way).

    Args:
        path: The file the body writes (a temporary one, renamed into place by the caller).
        needed: About how many bytes it takes, for the message and `has_room`.
        folder: What its folder is, for the message: "artifact folder". Default "folder".
    """
    try:
        yield
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        if exc.errno == errno.EFBIG:
            raise _too_large(path, exc) from exc
        if exc.errno in _UNWRITABLE:
            raise ConfigError(
                f"the {folder} {path.parent} is not writable ({exc}). Make it writable again "
                f"(remount it read-write, or fix its permissions), or move the study's folder "
                f"(or its 'artifacts') to a writable one, then run the same command to resume."
            ) from exc
        if exc.errno not in _FULL:
            raise
        free = free_bytes(path)
        raise DiskFull(
            f"no space left on device writing {path} ({_size(free)} free there, about "
            f"{_size(needed)} needed). Free space on that disk, or move the study's folder "
            f"(or its 'artifacts') to a larger one, then run the same command to resume.",
            path=str(path),
            needed=needed,
        ) from exc


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file beside `path`, open for writing, that replaces `path` once the body is done
    (renamed over it), or is removed if the body fails.

    A reader never sees half a file, and a symbolic link at `path` is replaced, never followed:
    writing to `path` itself wrote over whatever file the link pointed to. The new file is made
    afresh (never a link someone put there first), with the permissions of any new file.
    """
    while True:
        part = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
        try:
            descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


@contextlib.contextmanager
def writing_temporary(path: Path, needed: int) -> Iterator[None]:
    """`writing` for a working copy in the temporary folder (`tempfile.gettempdir()`: TMPDIR,
    often a small tmpfs): where it is full (DiskFull) or cannot be written (HpoError), the error
    names it and TMPDIR, not the file being copied, which is intact; a copy too large is
    ConfigError (`_too_large`).

    Args:
        path: The copy the body writes, in a folder of the temporary folder.
        needed: About how many bytes it takes, for the message; 0 if unknown.
    """
    try:
        yield
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        folder = tempfile.gettempdir()
        if exc.errno == errno.EFBIG:
            raise _too_large(
                f"a copy of {path.name} in the temporary folder {folder}", exc
            ) from exc
        if exc.errno in _FULL:
            about = f", about {_size(needed)} needed" if needed else ""
            raise DiskFull(
                f"no space left in the temporary folder {folder} for a copy of {path.name} "
                f"({_size(free_bytes(path))} free there{about}). Free space there, or set "
                f"TMPDIR to a folder on a larger disk, then run the same command again.",
                path=str(path),
                needed=needed,
            ) from exc
        raise HpoError(
            f"cannot write a copy of {path.name} in the temporary folder {folder} ({exc}). "
            f"Set TMPDIR to a writable folder, then run the same command again."
        ) from exc


def raise_if_full(
    error: BaseException,
    folder: Path,
    what: str | None = None,
    fix: str = "what was there before is untouched. Free space on that disk, or give --out a "
    "folder on a larger one.",
) -> None:
    """Raises DiskFull if `error` (or one it came from) is a full disk, met while writing an
    output in `folder` (or `what`, where that names it better): Keras's saving and tf2onnx
    raise OSError, TensorFlow's SavedModel writer its own error whose message says so, a
    study's database Optuna's StorageInternalError from SQLite's "database or disk is full", or
    its "disk I/O error" where the disk has next to no room left (PostgreSQL's says "No space
    left on device"). Raises ConfigError where it is a file too large (`_too_large`). Returns
    otherwise.

    Args:
        fix: What to do, after the free space the message gives.
    """
    for cause in _causes(error):
        if (isinstance(cause, OSError) and cause.errno == errno.EFBIG) or _TOO_LARGE in str(cause):
            named = cause.filename if isinstance(cause, OSError) and cause.filename else None
            raise _too_large(named or what or folder, cause) from error
        if _full(cause, folder):
            raise DiskFull(
                f"no space left on device writing {what or folder} "
                f"({_size(free_bytes(folder))} free there); {fix}",
                path=str(folder),
                needed=0,
            ) from error


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and those it came from."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _full(error: BaseException, folder: Path) -> bool:
    if isinstance(error, OSError) and error.errno in _FULL:
        return True
    text = str(error)
    if _NO_SPACE in text or _SQLITE_FULL in text:
        return True
    return _SQLITE_IO in text and free_bytes(folder) < _SQLITE_ROOM


def _raise_if_database_too_large(error: BaseException, database: Path) -> None:
    """Raises ConfigError (`_too_large`) where `error` is SQLite's "disk I/O error" and the
    SQLite file `database`, or its -wal file, is within `_SQLITE_GROWTH` bytes of this
    process's file-size limit: its write failed with EFBIG, which Python's sqlite3 does not
    tell."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY or not any(_SQLITE_IO in str(c) for c in _causes(error)):
        return
    for file in (database, database.with_name(f"{database.name}-wal")):
        with contextlib.suppress(OSError):
            if file.stat().st_size > limit - _SQLITE_GROWTH:
                raise _too_large(file, OSError(errno.EFBIG, _TOO_LARGE)) from error


def raise_if_database_full(error: BaseException, database: Path) -> None:
    """Raises DiskFull naming the SQLite study database `database` if `error`, met opening it,
    came of its disk being full (`raise_if_full`): SQLite writes beside the file even to read
    it, and said only "disk I/O error", which read as a broken database or server. Raises
    ConfigError where the file reached the file-size limit (`_too_large`). Returns
    otherwise."""
    _raise_if_database_too_large(error, database)
    raise_if_full(
        error,
        database.parent,
        f"the study database {database}",
        "SQLite writes beside it (its -wal and -shm files) even to read it. Free space on that "
        "disk, or move the study's folder to a larger one, then run the same command again.",
    )


def raise_if_study_full(error: BaseException, config: StudyConfig) -> None:
    """Raises DiskFull naming the study's database and folder if `error` came of a full disk
    (`raise_if_full`): SQLite's file, or the study's own files, could not grow; ConfigError
    where they reached the file-size limit (`_too_large`). Returns otherwise, and for an error
    of hpo's own (a DiskFull that names its file already)."""
    from hpo.store import redact_url, sqlite_file

    if isinstance(error, HpoError):
        return
    if (database := sqlite_file(config.storage_url)) is not None:
        _raise_if_database_too_large(error, database)
    raise_if_full(
        error,
        config.study_dir,
        f"the study (its database {redact_url(config.storage_url)}, or its files in "
        f"{config.study_dir.absolute()})",
        "finished trials are kept. Free space on that disk, or move the study to a larger "
        "one, then run the same command to resume (a trial it stopped is queued again).",
    )


def _too_large(path: object, error: BaseException) -> ConfigError:
    """The error for a file `path` that could not grow (EFBIG, "File too large"): past this
    process's file-size limit (`ulimit -f`, which its children share), or else past the largest
    file its file system takes. Not DiskFull, whose search goes on where room came back: the
    disk may have room, and each trial's file as large fails the same way."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return ConfigError(
            f"cannot write {path}: it would be larger than its file system takes a file to be "
            f"({error}). Move it to a folder on another file system, then run the same command "
            f"again."
        )
    return ConfigError(
        f"cannot write {path}: it would pass this process's file-size limit of {_size(limit)} "
        f"({error}). Raise the limit in the shell that runs hpo (ulimit -f unlimited), then run "
        f"the same command again."
    )


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the file system that holds `path` (or its nearest parent)."""
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free
    return 0


def has_room(error: DiskFull) -> bool:
    """Whether the disk that was full now has room for what failed to be written."""
    return free_bytes(Path(error.path)) >= error.needed


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"
