"""How many trials: the workers of one machine take turns to start one, so that a study holds
its `n_trials`, not one more.

A worker decides after each trial whether the study needs another (finished and running trials
fewer than `n_trials`), and Optuna then creates it. Two workers deciding at once each counted
the study before the other's next trial existed, and both started one: `hpo search --workers 2`
with n_trials=4 ended "5 finished" now and then (more often while `keep_checkpoints` collected
between the decision and the next trial). The decision and the creation of the trial are now
one turn, under a lock file: a worker deciding sees every trial that another decided to start,
RUNNING. The lock is the kernel's (`flock`), so a worker that dies holding it holds it no more.

The lock file of a SQLite study lies beside its database, which every worker of the machine
opens, whatever folder it was started from (a study joined by `--storage` and `--study-name`).
That of a study in another store lies in the study's folder: workers of other machines, and
those joining from another folder, take no turns with these; there, as with Optuna's own
`MaxTrialsCallback`, a study may end a trial or so over its `n_trials`.
"""

from __future__ import annotations

import fcntl
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo.search.progress import FINISHED
from hpo.store import sqlite_file

if TYPE_CHECKING:
    from pathlib import Path
    from typing import IO

    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["SearchRun", "StartTurn", "lock_file", "searched_here"]

LOCK_NAME = ".trial-start.lock"
# Held, shared, by every search run of the study on this machine for the run's life.
RUN_LOCK_NAME = ".search-runs.lock"


def lock_file(storage_url: str, study_dir: Path, name: str = LOCK_NAME) -> Path:
    """Where the workers of a study take turns: beside a SQLite study's database
    (`study.db.trial-start.lock`), else in the study's folder."""
    database = sqlite_file(storage_url)
    if database is not None:
        return database.resolve().with_name(f"{database.name}{name}")
    return study_dir / name


class SearchRun:
    """A search run of the study on this machine, from the study's creation to its end: a
    shared lock at `path` (`lock_file(..., RUN_LOCK_NAME)`), which the kernel ends with the
    process. Entering says whether no other run of this machine holds it: a run that finds
    one does not take the study's settings for its own (the other may be preparing its data,
    no trial started yet), and `Tuner(overwrite=True)` refuses to delete a project one holds
    (`searched_here`)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held: IO[bytes] | None = None

    def __enter__(self) -> bool:
        held = open(self._path, "ab")  # held until __exit__
        try:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            fcntl.flock(held, fcntl.LOCK_SH)
        except BaseException:
            held.close()
            raise
        self._held = held
        return alone

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()


def searched_here(path: Path) -> bool:
    """Whether a search run of this machine holds the run lock at `path` (`SearchRun`)."""
    try:
        probe = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError:  # none: no run of an hpo with the lock has started there
        return False
    with probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


class StartTurn:
    """This worker's turn to start a trial, taken by `needs_another` and given back once the
    trial exists (`give_back`, first thing in the objective) or the worker stops."""

    def __init__(self, path: Path, n_trials: int) -> None:
        self._path = path
        self._n_trials = n_trials
        self._held: IO[bytes] | None = None

    def needs_another(self, study: optuna.Study) -> bool:
        """Takes the turn and says whether the study needs another trial; keeps the turn if so
        (the caller starts one), gives it back if not."""
        if self._held is None:
            held = open(self._path, "ab")  # noqa: SIM115 (held until `give_back`)
            try:
                fcntl.flock(held, fcntl.LOCK_EX)
            except BaseException:  # an interrupt while waiting for the turn
                held.close()
                raise
            self._held = held
        try:
            counted = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        except BaseException:
            self.give_back()
            raise
        if len(counted) >= self._n_trials:
            self.give_back()
            return False
        return True

    def give_back(self) -> None:
        """Lets the other workers of this machine decide; a no-op if this one holds no turn."""
        held, self._held = self._held, None
        if held is not None:
            held.close()  # closing the file ends its lock

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's callback, the last after each trial: stops the worker's loop unless the
        study needs another trial, which this worker then starts in its turn."""
        if not self.needs_another(study):
            study.stop()
