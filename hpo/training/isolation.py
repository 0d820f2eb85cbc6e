"""Run a function in a fresh child process and get back its result or its exception.

TensorFlow keeps memory from one model to the next even after `clear_session`, so each trial
runs in its own process, which gives all of it back to the system when it ends.

Children are forked from a fork server that has already imported TensorFlow (but run nothing
with it), which saves the ~3 s import per trial. `HPO_START_METHOD=spawn` starts each child
from scratch instead.
"""

from __future__ import annotations

import faulthandler
import gc
import io
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, TypeVar

from hpo._output import usable_output
from hpo._script import main_hidden_from_children
from hpo._warnings import warnings_not_errors
from hpo.errors import ConfigError, TrialProcessDied, TrialTimedOut
from hpo.training.allocator import keep_freed_memory
from hpo.training.start_errors import START_ERRORS_VAR, start_error, start_errors_folder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from multiprocessing.connection import Connection
    from pathlib import Path

__all__ = [
    "call_isolated",
    "die_with",
    "process_alive",
    "process_identity",
    "server_preload",
    "start_method",
    "start_process",
]

START_METHOD_VAR = "HPO_START_METHOD"
# Imported once by the fork server; children inherit them without running any op. Keras loads
# the backend named by KERAS_BACKEND when the server starts (see `hpo.backend`).
PRELOAD = [
    "hpo._quiet",
    "keras",
    "optuna_integration",
    "hpo.training.callbacks",
    "hpo.training.runner",
]
# What a child's first connection to the study store imports (`hpo.store.open_rdb_storage`):
# Optuna's table models, Alembic (its schema check; Optuna imports it on first use) and the
# database's SQLAlchemy dialect and driver. Imported by each trial, they took 0.25 s of its
# CPU (benchmarks/bench_trial_start.py: 0.335 s to open the store, 0.087 s with them
# preloaded). The server skips one that is not installed.
STORE_PRELOAD = [
    "optuna.storages._rdb.models",
    "alembic.command",
    "alembic.config",
    "alembic.migration",
    "alembic.script",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
]
# On JAX and PyTorch, Keras imports TensorFlow where it is installed all the same: its
# `set_random_seed` seeds it, and `get_config` checks for its TensorShape. Imported once by
# the server, not 3-4 s in each trial (benchmarks/bench_backend_preload.py); skipped where it
# is not installed.
OTHER_BACKEND_PRELOAD = ["tensorflow"]
# What a child that builds a KerasTuner hypermodel imports: see `_preload_here`.
HYPERMODEL_PRELOAD = "hpo.models.hypermodel"
# The backend the fork server of this process was started with (it starts once per process).
_server_backend: str | None = None
T = TypeVar("T")
A = TypeVar("A")
_TERMINATE_GRACE_S = 10
# How often the wait for a child with a deadline wakes, to see whether this process was stopped
# in between (which also keeps each wait within the 24.8 days `poll` takes at most, where a
# budget such as "365d" gives a deadline further away than that).
_WAKE_S = 1.0
# A wake-up this many seconds later than asked: this process was stopped (SIGSTOP, Ctrl-Z,
# `docker pause`, a paused VM, a debugger) rather than slowed by a busy machine.
_STOPPED_GAP_S = 5.0
# How often a child checks that the process waiting for it is still there.
WATCH_INTERVAL_S = 1.0
# Held while `__main__.__file__` is hidden from a starting child (`start_process`).
_MAIN_LOCK = threading.Lock()


def start_process(process: multiprocessing.process.BaseProcess) -> None:
    """Starts a child process, which runs the script that started this one again only where
    that is safe.

    A spawned or fork-server child first runs `__main__`'s script again, as multiprocessing
    does. Where the script's main thread is at its top level outside `if __name__ ==
    "__main__":` (a search written as KerasTuner's examples write it), the child would run the
    search again; a script read from standard input (`python - < search.py`) has no file, and
    the child would die before it starts. Then the main is treated as a notebook's: hidden
    while the child starts, so that the child runs nothing of it (hpo sends what a trial needs
    of it, the hypermodel and the classes it registered, by value).
    """
    try:
        _start(process)
    except (EOFError, ConnectionError) as exc:  # multiprocessing.forkserver: the server is gone
        raise TrialProcessDied(
            "the fork server that starts the trial processes died before starting one: a "
            "native library crashed while it imported what it preloads (Keras, its backend, "
            "TensorFlow). Run again with PYTHONFAULTHANDLER=1 and --verbose (HPO_VERBOSE=1) "
            f"to see where; {START_METHOD_VAR}=spawn starts each trial afresh, without the "
            "server."
        ) from exc


def _start(process: multiprocessing.process.BaseProcess) -> None:
    main = sys.modules.get("__main__")
    if main is None or not main_hidden_from_children():
        process.start()
        return
    with _MAIN_LOCK:
        file = main.__dict__.pop("__file__", None)
        spec = main.__dict__.get("__spec__")
        main.__spec__ = None  # `python -m package.module`: the child would import it by name
        try:
            process.start()
        finally:
            main.__spec__ = spec
            if file is not None:
                main.__file__ = file


def call_isolated(
    fn: Callable[[A], T],
    arg: A,
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    deadline: float | None = None,
    relay_warnings: bool = False,
) -> T:
    """Calls `fn(arg)` in a spawned child process and returns its result.

    Args:
        fn: A module-level function (spawned children import it by name).
        arg: Its argument; must pickle.
        log_path: If given, the child's stdout and stderr (TensorFlow's chatter included) go
            to this file, appended.
        env: Environment variables of the child on top of this process's (its Keras backend,
            its GPU: see `hpo.backend.backend_environment`).
        relay_warnings: Log here, too, the warnings the child logged on hpo's loggers (which
            `log_path` would otherwise keep from the user: files skipped, rows dropped).
        deadline: A `time.monotonic()` time after which the child is ended: SIGTERM (its
            Python stack goes to its output, then it exits), SIGKILL if it is still there
            `_TERMINATE_GRACE_S` later. Default None: wait for it however long it runs. Time
            this process is seen stopped while it waits moves the deadline later by as much
            (see `_readable_by`).

    Raises:
        TrialTimedOut: The child was still running at `deadline` and was ended.
        TrialProcessDied: The child ended without a result (killed, out of memory, crashed).
        Exception: Whatever `fn` raised in the child, re-raised here; so is what unpickling
            `fn` and `arg` raised there (a class the child cannot find, say).
        Exception: What pickling `fn` and `arg` raised here (`pickle.PicklingError`,
            `TypeError`), before any child starts.
    """
    environment = {**os.environ, **(env or {})}
    context = _context(environment.get("KERAS_BACKEND", "tensorflow"))
    job = _pickled((fn, arg))
    receiver, sender = context.Pipe(duplex=False)
    caller = process_identity(os.getpid())
    process = context.Process(
        target=_child_main,
        args=(job, sender, log_path, environment, caller, relay_warnings),
    )
    try:
        start_process(process)
    except BaseException:
        receiver.close()
        raise
    finally:
        sender.close()
    try:
        # A result or the child's end (EOF) makes the pipe readable; a hung child neither.
        readable, stopped = _readable_by(receiver, deadline)
        if not readable:
            _end(process)
            moved = f" (moved {stopped:.0f}s later: the caller was stopped)" if stopped else ""
            message = (
                f"the child process ran past its deadline{moved} and was ended with "
                f"{_describe_exit(process.exitcode)}"
            )
            if log_path is not None:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(f"\nhpo: {message}.\n")
                # SIGTERM made it write its stack (see `_child_main`); SIGKILL leaves none.
                if process.exitcode == -signal.SIGTERM:
                    message += f"; its stack then is at the end of {log_path}"
                else:
                    message += f"; its output is in {log_path}"
            raise TrialTimedOut(message)
        try:
            status, payload, warned = receiver.recv()
        except EOFError:
            process.join()
            killed = process.exitcode == -signal.SIGKILL
            if log_path is None:
                output = ""
            elif log_path.exists():
                output = f"; its output is in {log_path}"
            else:  # it died while starting, before it opened its log
                output = f", while starting (before writing {log_path})"
            error = start_error(process.pid)
            raise TrialProcessDied(
                f"the child process exited with {_describe_exit(process.exitcode)} before "
                f"reporting a result"
                + output
                + (" (SIGKILL often means the system ran out of memory)" if killed else "")
                + "."
                + (f" It died of {error}" if error else "")
            ) from None
        process.join()
    finally:
        receiver.close()
        _end(process)
    for name, level, message in warned:
        logging.getLogger(name).log(level, message)
    if status == "error":
        raise payload
    return payload


def _readable_by(
    receiver: Connection, deadline: float | None, clock: Callable[[], float] = time.monotonic
) -> tuple[bool, float]:
    """Whether `receiver` has something to read (or is closed) by `deadline`, and the seconds
    this process was stopped while it waited, by which the deadline moved later.

    The monotonic clock runs on while a process is stopped (SIGSTOP of the search's process
    group: Ctrl-Z, `docker pause`, a paused VM), and the child with it was stopped too: it did
    not hang, and when it goes on its epoch clock sees the long epoch and stops it at the next
    epoch boundary. Ended the moment the wait went on, it would lose what it trained. So the
    wait wakes every `_WAKE_S`, and a wake-up `_STOPPED_GAP_S` or more later than asked adds
    the time between to the deadline; a child that hangs is still ended, that much later.
    """
    if deadline is None:
        return receiver.poll(None), 0.0
    stopped = 0.0
    woke = clock()
    while True:
        asked = min(max(0.0, deadline + stopped - woke), _WAKE_S)
        if receiver.poll(asked):
            return True, stopped
        now = clock()
        late = now - woke - asked
        if late >= _STOPPED_GAP_S:
            stopped += late
        elif now >= deadline + stopped:
            return False, stopped
        woke = now


def _end(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.terminate()
        process.join(_TERMINATE_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()


def start_method() -> str:
    """How trial processes start: `$HPO_START_METHOD`, "forkserver" (the default, also where
    it is set but empty) or "spawn"; a search checks it before any work.

    Raises:
        ConfigError: It names another method.
    """
    method = os.environ.get(START_METHOD_VAR) or "forkserver"
    if method not in ("forkserver", "spawn"):
        raise ConfigError(
            f"${START_METHOD_VAR} must be 'forkserver' or 'spawn', got {method!r}: unset it "
            f"(forkserver, the default) or set it to spawn."
        )
    return method


def _context(
    backend: str,
) -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    global _server_backend
    if start_method() == "spawn":
        return multiprocessing.get_context("spawn")
    if _server_backend is not None and _server_backend != backend:
        # One fork server per process, and its Keras has one backend: a study on another
        # backend in the same process (a notebook, the tests) starts its children from scratch.
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _server_backend is None:
        # The server reads KERAS_BACKEND from this process's environment when it starts (the
        # search or ensemble that starts it puts the caller's back: `callers_environment`), and
        # the folder where a child that dies while starting keeps its error (`start_error`).
        os.environ["KERAS_BACKEND"] = backend
        os.environ[START_ERRORS_VAR] = str(start_errors_folder())
        context.set_forkserver_preload(_preload_here(backend))
        _server_backend = backend
    return context


def _preload_here(backend: str) -> list[str]:
    """What the fork server that this process starts now preloads: `server_preload`, and
    where this process has imported KerasTuner (it searches a hypermodel: `hpo.Tuner`, a
    study's hypermodel family), what its children import to build one, which each child
    imported again before (0.5 s of CPU)."""
    preload = server_preload(backend)
    if "keras_tuner" in sys.modules:
        preload.append(HYPERMODEL_PRELOAD)
    return preload


def server_preload(backend: str) -> list[str]:
    """What the fork server of a study on `backend` imports, in the order a user's process
    imports it: the backend's own package (tensorflow, jax, torch) first, as Keras imports it
    anyway; then Keras; then, off TensorFlow, TensorFlow. Keras on PyTorch's CUDA build imports
    Triton (through torch._dynamo), and Triton imported after TensorFlow kills the process with
    a segmentation fault (torch 2.13.0+cu130, TensorFlow 2.21): with TensorFlow first, the
    server died before its first trial."""
    others = [] if backend == "tensorflow" else OTHER_BACKEND_PRELOAD
    after_keras = PRELOAD.index("keras") + 1
    return [
        PRELOAD[0],
        backend,
        *PRELOAD[1:after_keras],
        *others,
        *PRELOAD[after_keras:],
        *STORE_PRELOAD,
    ]


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def process_identity(pid: int) -> tuple[int, str | None]:
    """A process's id and start time (from /proc), which a later process with the same id
    does not share; None for the time where /proc is not there."""
    fields = _stat_fields(pid)
    return pid, None if fields is None else fields[19]


def process_alive(identity: tuple[int, str | None]) -> bool:
    """Whether the process `identity` (from `process_identity`) still runs in this PID namespace.

    A zombie (exited, not yet waited for) counts as ended; so does a later process that got the
    same id. Without a start time (no /proc) only the id is checked.
    """
    pid, started = identity
    if started is not None:
        fields = _stat_fields(pid)
        return fields is not None and fields[19] == started and fields[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (the state) on, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            # Counted after the command name, which may hold spaces, parentheses and bytes
            # of any encoding.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def die_with(identity: tuple[int, str | None], signum: int = signal.SIGKILL) -> None:
    """Sends this process `signum` within a second of the process `identity` ending.

    A trial's process is a child of a fork server, not of the worker that waits for it, so the
    operating system does not end it when that worker is killed (`kill -9`, out of memory): it
    would train on unseen by the study's budget. A daemon thread watches the caller instead.
    """

    def watch() -> None:
        while process_alive(identity):
            time.sleep(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="hpo-die-with-caller", daemon=True).start()


def _pickled(job: tuple[Callable[[Any], Any], Any]) -> bytes:
    """`job` pickled as multiprocessing pickles a child's arguments.

    Sent as bytes and unpickled by `_child_main` once the child's log is open: unpickled by
    multiprocessing as the child starts, a job that fails to load there (a class the child cannot
    find) ended the child with exit code 1 before it wrote a line, and the cause went to the fork
    server's stderr, which is /dev/null (`hpo._quiet`).
    """
    buffer = io.BytesIO()
    ForkingPickler(buffer).dump(job)
    return buffer.getvalue()


def _child_main(
    job: bytes,
    sender: Connection,
    log_path: Path | None,
    environment: dict[str, str],
    caller: tuple[int, str | None],
    relay_warnings: bool,
) -> None:
    # What the fork server imported (TensorFlow, Keras: some 470,000 objects) lives as long as
    # the child does. A full garbage collection walked all of it and wrote to each object's
    # header, copying the server's pages into the child: 0.3 s and 124 MB per collection, of
    # which a trial ran two and the costing child four (`benchmarks/bench_trial_gc.py`).
    # Frozen, collections walk only what the child makes. Only that: what unpickling the job
    # below makes must stay collectable, as cloudpickle's discarded copies of the user's classes
    # (a class sent twice is rebuilt once) are garbage that Keras's registry would find
    # (`hpo.models.external.register_user_objects` walks the subclasses of Layer).
    gc.freeze()
    die_with(caller)
    # A fork server's children inherit the server's environment from when it started; the
    # caller's environment now is the one that counts.
    os.environ.clear()
    os.environ.update(environment)
    keep_freed_memory(environment)
    warnings_not_errors()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _flush_output()
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
    # Where the caller runs without a stderr (`2>&-`, pythonw) the child starts without one too,
    # and `faulthandler` below, or a report of its error, ended it before it could say why.
    usable_output(own_descriptors=log_path is not None)
    # Ended for hanging past its deadline (see `call_isolated`), the child first writes where
    # each of its threads was, which names the callback or data step that never returned.
    faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)
    warned = _Warnings()
    if relay_warnings:
        logging.getLogger("hpo").addHandler(warned)
    try:
        try:
            fn, arg = pickle.loads(job)
        except BaseException:
            print(
                "hpo: the child process could not unpickle the function and argument sent to it:",
                file=sys.stderr,
            )
            raise
        result: tuple[str, Any] = ("ok", fn(arg))
    except BaseException as exc:
        traceback.print_exc()
        result = ("error", _picklable(exc))
    _flush_output()
    sender.send((*result, warned.records))
    sender.close()


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None where the caller started with it closed (`2>&-`)
            stream.flush()


class _Warnings(logging.Handler):
    """Keeps the warnings (and errors) logged, as (logger name, level, message), and still
    writes them where Python would without it (the log, when no logging is set up)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))
        if not logging.getLogger().handlers and logging.lastResort is not None:
            logging.lastResort.handle(record)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
