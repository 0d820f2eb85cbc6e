from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hpo.errors import TrialProcessDied, TrialTimedOut
from hpo.training import isolation
from hpo.training.isolation import call_isolated

from ..conftest import run_user_script, write_study

if TYPE_CHECKING:
    from collections.abc import Callable


def square_in_child(x: int) -> tuple[int, int]:
    print("chatter from the child")
    return x * x, os.getpid()


def raise_in_child(message: str) -> None:
    raise ValueError(message)


def die_in_child(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def warn_in_child(message: str) -> int:
    logging.getLogger("hpo.data.images").warning(message)
    logging.getLogger("elsewhere").warning("not hpo's")
    return 1


def test_the_childs_warnings_reach_the_caller_when_asked_and_stay_in_its_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "child.log"
    with caplog.at_level(logging.WARNING):
        assert call_isolated(warn_in_child, "skipped 2 files", log_path=log) == 1
        assert caplog.records == []
        assert call_isolated(warn_in_child, "skipped 3 files", log_path=log, relay_warnings=True)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("hpo.data.images", logging.WARNING, "skipped 3 files")
    ]
    assert "skipped 2 files" in log.read_text() and "skipped 3 files" in log.read_text()


def loaded(names: list[str]) -> list[str]:
    return [name for name in names if name in sys.modules]


def test_a_child_starts_with_what_its_study_store_connection_imports() -> None:
    # Each trial opens the study store: Optuna's models, Alembic and the dialects come from the
    # fork server once (psycopg too, where it is installed), not from each trial's import.
    wanted = [name for name in isolation.STORE_PRELOAD if importlib.util.find_spec(name)]
    assert "alembic.migration" in wanted
    # On the backend of this process's fork server, if an earlier test started one.
    backend = isolation._server_backend or "tensorflow"
    assert call_isolated(loaded, wanted, env={"KERAS_BACKEND": backend}) == wanted


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_fork_server_imports_tensorflow_after_keras_as_a_users_process_does(
    backend: str,
) -> None:
    # PyTorch's CUDA build: Keras imports Triton, which crashes a process that imported
    # TensorFlow before it; with TensorFlow preloaded first the server died at once.
    preload = isolation.server_preload(backend)
    assert preload[:2] == ["hpo._quiet", backend]
    assert preload.index("keras") < preload.index("tensorflow")
    assert isolation.server_preload("tensorflow").count("tensorflow") == 1


def test_a_process_that_imported_kerastuner_has_its_fork_server_preload_hpos_adapter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each trial of a hypermodel imported KerasTuner and hpo's adapter again: 0.5 s a trial.
    adapter = importlib.import_module(isolation.HYPERMODEL_PRELOAD)
    assert hasattr(adapter, "HyperModelFamily")
    kerastuner = sys.modules["keras_tuner"]  # which importing the adapter imports
    monkeypatch.delitem(sys.modules, "keras_tuner")
    assert isolation._preload_here("tensorflow") == isolation.server_preload("tensorflow")
    monkeypatch.setitem(sys.modules, "keras_tuner", kerastuner)
    preload = isolation._preload_here("jax")
    assert preload == [*isolation.server_preload("jax"), isolation.HYPERMODEL_PRELOAD]


def test_a_fork_server_that_dies_while_it_preloads_is_named_with_the_way_out(
    tmp_path: Path,
) -> None:
    # It raised multiprocessing's bare "EOFError: unexpected EOF" in every trial.
    (tmp_path / "crashes_on_import.py").write_text("import os\nos.abort()\n")
    script = """
import os
from hpo.training import isolation
isolation.server_preload = lambda backend: ["crashes_on_import"]
for attempt in range(3):  # each start fails alike, and leaves no descriptor open
    try:
        isolation.call_isolated(abs, -1)
    except isolation.TrialProcessDied as exc:
        print(exc)
    if attempt == 0:
        opened = len(os.listdir("/proc/self/fd"))
print("descriptors kept", len(os.listdir("/proc/self/fd")) - opened)
"""
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{Path(__file__).resolve().parents[2]}:{tmp_path}"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("the fork server that starts the trial processes died") == 3
    assert "HPO_START_METHOD=spawn" in run.stdout
    assert run.stdout.splitlines()[-1] == "descriptors kept 0"


def collector_in_child(job: list[int]) -> tuple[int, int, bool, int]:
    import gc

    tracked = gc.get_objects()  # frozen objects are not among them
    unpickled = any(o is job for o in tracked)
    count = len(tracked)
    del tracked

    class Node:
        pass

    looped = Node()
    looped.itself = looped  # type: ignore[attr-defined]
    del looped
    return gc.get_freeze_count(), count, unpickled, gc.collect()


def test_what_a_child_inherits_is_frozen_and_what_it_makes_is_still_collected() -> None:
    # A full collection walked the fork server's 470,000 objects (TensorFlow, Keras) and wrote
    # to each: 0.3 s and 124 MB of copied pages per collection, in every trial process.
    backend = isolation._server_backend or "tensorflow"
    frozen, tracked, unpickled, collected = call_isolated(
        collector_in_child, [1, 2], env={"KERAS_BACKEND": backend}
    )
    assert frozen > 100_000 and frozen > 10 * tracked
    # What its job unpickled to stays collectable: cloudpickle's discarded copies of a user's
    # classes, frozen, stayed among Layer's subclasses, and Keras's registry took them.
    assert unpickled
    assert collected >= 1  # its own garbage


def test_returns_the_result_from_another_process(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    value, pid = call_isolated(square_in_child, 7, log_path=log)
    assert value == 49
    assert pid != os.getpid()
    assert "chatter from the child" in log.read_text()


def test_reraises_the_childs_exception() -> None:
    with pytest.raises(ValueError, match="bad input"):
        call_isolated(raise_in_child, "bad input")


def refuse_to_load(message: str) -> None:
    raise TypeError(message)


class LoadsWithError:
    """Pickles, and raises where it is unpickled: as a hypermodel whose layer class the child
    cannot find (Keras's `TypeError: Could not locate class ...`)."""

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return refuse_to_load, ("Could not locate class 'Jitter'",)


def test_what_unpickling_its_job_raises_in_the_child_reaches_the_caller_and_the_log(
    tmp_path: Path,
) -> None:
    # Unpickled by multiprocessing as the child started, before its log was open, such a job
    # ended the child with exit code 1 and no word of why.
    log = tmp_path / "child.log"
    with pytest.raises(TypeError, match="Could not locate class 'Jitter'"):
        call_isolated(square_in_child, LoadsWithError(), log_path=log)
    written = log.read_text()
    assert "could not unpickle the function and argument sent to it" in written
    assert "in refuse_to_load" in written
    assert "TypeError: Could not locate class 'Jitter'" in written


def test_a_job_that_cannot_be_pickled_is_refused_in_the_caller(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"cannot pickle '_thread\.lock' object"):
        call_isolated(square_in_child, threading.Lock(), log_path=tmp_path / "child.log")
    assert not (tmp_path / "child.log").exists()


def test_a_killed_child_is_reported_with_its_signal(tmp_path: Path) -> None:
    with pytest.raises(TrialProcessDied, match=r"signal 9 \(SIGKILL\)"):
        call_isolated(die_in_child, None, log_path=tmp_path / "x.log")


def test_spawn_start_method_works_and_a_bad_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.errors import ConfigError

    monkeypatch.setenv("HPO_START_METHOD", "spawn")
    assert call_isolated(square_in_child, 3)[0] == 9
    monkeypatch.setenv("HPO_START_METHOD", "")  # set but empty, as `HPO_START_METHOD= hpo ...`
    assert call_isolated(square_in_child, 4)[0] == 16
    monkeypatch.setenv("HPO_START_METHOD", "fork")
    with pytest.raises(
        ConfigError, match="HPO_START_METHOD must be 'forkserver' or 'spawn', got 'fork'"
    ):
        call_isolated(square_in_child, 3)
    # A search refuses it before any work: it was found once the data were prepared.
    from hpo.config import DataConfig, StudyConfig
    from hpo.search.workers import run_search

    nowhere = StudyConfig(name="s", data=DataConfig(path="/nonexistent/aclImdb.tar.gz"))
    with pytest.raises(ConfigError, match=r"HPO_START_METHOD must be .*got 'fork': unset it"):
        run_search(nowhere)


def test_a_child_of_a_caller_without_a_stderr_runs_and_logs_its_error(tmp_path: Path) -> None:
    # pythonw, or a script started with 2>&-: Python's sys.stderr is None, and the first file
    # the script opens takes descriptor 2, which no child inherits (Python opens files
    # close-on-exec). Each child started without a stderr and died before saying why (exit
    # code 1, an empty log).
    printed = run_user_script(
        tmp_path,
        """
import sys
from pathlib import Path

held = open("held.txt", "w")
assert sys.stderr is None and held.fileno() == 2

from hpo.training.isolation import call_isolated

log = Path("child.log")
print("result:", call_isolated(abs, -3, log_path=log))
try:
    call_isolated(int, "seven", log_path=log)
except ValueError as exc:
    print("raised:", exc)
""",
        without_stderr=True,
    )
    assert "result: 3\n" in printed
    assert "raised: invalid literal for int() with base 10: 'seven'" in printed
    # Its traceback went to its log, where every child's does.
    assert "ValueError: invalid literal" in (tmp_path / "child.log").read_text()
    assert (tmp_path / "held.txt").read_text() == ""


def read_environment(name: str) -> str | None:
    return os.environ.get(name)


def test_child_sees_the_callers_current_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    call_isolated(square_in_child, 1)  # the fork server is running from here on
    monkeypatch.setenv("HPO_TEST_VARIABLE", "now")
    assert call_isolated(read_environment, "HPO_TEST_VARIABLE") == "now"
    monkeypatch.delenv("HPO_TEST_VARIABLE")
    assert call_isolated(read_environment, "HPO_TEST_VARIABLE") is None


def hang_in_child(ignore_sigterm: bool) -> None:
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("about to hang", flush=True)
    while True:
        time.sleep(3600)


def test_a_child_running_past_its_deadline_is_ended_and_reported(tmp_path: Path) -> None:
    call_isolated(square_in_child, 1)  # the fork server is running from here on
    log = tmp_path / "child.log"
    started = time.monotonic()
    with pytest.raises(TrialTimedOut, match=r"ended with signal 15 \(SIGTERM\)") as caught:
        call_isolated(hang_in_child, False, log_path=log, deadline=time.monotonic() + 4)
    assert 4 <= time.monotonic() - started < 15
    # Still a child that ended without a result, for callers that handle only that.
    assert isinstance(caught.value, TrialProcessDied)
    output = log.read_text()
    # Where it hung: its stack, dumped as it was ended, names the function.
    assert output.index("about to hang") < output.index("in hang_in_child")
    assert output.rstrip().endswith("was ended with signal 15 (SIGTERM).")


def test_a_deadline_further_than_poll_can_wait_is_waited_for() -> None:
    # A budget of "365d" ends a trial's process a year from now: past the 24.8 days one poll of
    # the pipe can wait, which raised OverflowError in every trial.
    assert call_isolated(square_in_child, 3, deadline=time.monotonic() + 365 * 86400)[0] == 9


def test_a_child_that_ignores_sigterm_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "_TERMINATE_GRACE_S", 1.0)
    call_isolated(square_in_child, 1)
    started = time.monotonic()
    with pytest.raises(TrialTimedOut, match=r"ended with signal 9 \(SIGKILL\)"):
        # Time for the child to start and ignore SIGTERM before its deadline.
        call_isolated(hang_in_child, True, deadline=time.monotonic() + 4)
    assert time.monotonic() - started < 15


def test_a_trial_completes_where_the_users_shell_makes_warnings_errors(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # PYTHONWARNINGS=error (CI and development shells): a DeprecationWarning inside Keras's
    # checkpointing failed every trial after its training.
    study = write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hpo")), "search", "--study", str(study)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Study 'tiny': 1 finished, 0 failed" in done.stdout


class _StoppedPipe:
    """A child's pipe and the caller's monotonic clock, where the search's process group (the
    caller and the child) is stopped `pause` seconds once the clock reaches `stop_at`; the
    child's result comes after `ready` seconds of running, never where it is None (it hangs)."""

    def __init__(self, ready: float | None, stop_at: float, pause: float) -> None:
        self.now = 0.0
        self.ready = float("inf") if ready is None else ready
        self.stop_at = stop_at
        self.pause = pause

    def clock(self) -> float:
        return self.now

    def poll(self, timeout: float) -> bool:
        end = self.now + timeout
        if self.pause and end >= self.stop_at:
            # Stopped during this wait, the child with it: its time is up when both go on.
            end = max(end, self.stop_at + self.pause)
            self.ready += self.pause
            self.pause = 0.0
        if self.ready <= end:
            self.now = max(self.now, self.ready)
            return True
        self.now = end
        return False


def test_time_the_caller_was_stopped_moves_the_deadline_later() -> None:
    # A healthy child, 8 s from its result with a deadline at 10 s, and the search paused
    # (SIGSTOP, as Ctrl-Z or `docker pause`) for 150 s after 3 s: not a hang, its result comes.
    pipe = _StoppedPipe(ready=8.0, stop_at=3.0, pause=150.0)
    readable, stopped = isolation._readable_by(pipe, 10.0, pipe.clock)  # type: ignore[arg-type]
    assert readable and stopped == pytest.approx(150.0, abs=1.0)
    assert pipe.now == pytest.approx(158.0)
    # A child that hangs is still ended: past its deadline, later by the time it was stopped...
    pipe = _StoppedPipe(ready=None, stop_at=3.0, pause=150.0)
    readable, stopped = isolation._readable_by(pipe, 10.0, pipe.clock)  # type: ignore[arg-type]
    assert not readable and stopped == pytest.approx(150.0, abs=1.0)
    assert pipe.now == pytest.approx(10.0 + stopped, abs=1.0)
    # ... and, where nothing was stopped, at its deadline.
    pipe = _StoppedPipe(ready=None, stop_at=3.0, pause=0.0)
    assert isolation._readable_by(pipe, 10.0, pipe.clock) == (False, 0.0)  # type: ignore[arg-type]
    assert pipe.now == pytest.approx(10.0, abs=1.0)


def test_a_child_ended_past_a_moved_deadline_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "_readable_by", lambda receiver, deadline: (False, 150.0))
    with pytest.raises(TrialTimedOut, match=r"past its deadline \(moved 150s later: the caller"):
        call_isolated(square_in_child, 3, deadline=time.monotonic())


CHILD_CANNOT_START_SCRIPT = """
from pathlib import Path

from hpo.errors import TrialProcessDied
from hpo.training.isolation import call_isolated

if __name__ != "__main__":  # run again by each child process, as multiprocessing starts it
    raise RuntimeError("this script cannot run as " + __name__)

if __name__ == "__main__":
    try:
        call_isolated(abs, -1, log_path=Path("child.log"))
    except TrialProcessDied as exc:
        print(exc)
"""


def test_a_child_that_dies_while_starting_names_the_error_it_died_of(tmp_path: Path) -> None:
    """A fork server's child that fails where multiprocessing starts it (here running the
    guarded script that started the caller again), before it opens its log: its error went to
    the server's stderr, /dev/null, and the caller said only that it died while starting."""
    printed = run_user_script(tmp_path, CHILD_CANNOT_START_SCRIPT, timeout=120)
    assert printed.strip() == (
        "the child process exited with exit code 1 before reporting a result, while starting "
        "(before writing child.log). It died of RuntimeError: this script cannot run as "
        "__mp_main__"
    )
    assert not (tmp_path / "child.log").exists()
