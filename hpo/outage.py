"""The study store: a database server that is briefly unreachable is waited for, not fatal."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy
from optuna.storages import RDBStorage

from hpo.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "STORAGE_WAIT_S",
    "WaitingRDBStorage",
    "connection_lost",
    "driver_message",
    "masked",
]

# Seconds a process waits for its database server to answer again before it gives up.
STORAGE_WAIT_S = 300
# The pause between two tries doubles from the first to the last.
FIRST_PAUSE_S = 0.5
LONGEST_PAUSE_S = 5.0

_log = logging.getLogger(__name__)

# The calls that each open one session (one transaction) on the database. The public calls
# built on these (create_new_trial, set_trial_param, get_all_trials, get_best_trial) are not
# listed, so no call waits inside another's wait.
_SESSION_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
)


class WaitingRDBStorage(RDBStorage):
    """Optuna's RDB storage whose calls wait out a database server that stops answering.

    A server that restarts or fails over breaks every open connection and refuses new ones for
    a while; each of Optuna's calls then raises, and a worker would die with its trials left
    RUNNING. Here a call that failed for a lost connection is made again, with backoff, until
    the server answers or `wait_s` seconds have passed since it stopped answering (shared by
    every call of the process, so calls made during one outage do not add up their waits). A
    call is one transaction, so a failed one left nothing half-written. The pool's pre-ping
    replaces the connections the outage broke.

    Args:
        url: The database URL.
        wait_s: Seconds to wait for the server before a call raises `StoreError`.
        wait_to_open: Whether opening waits too. A command opening a study does not (a wrong
            URL, a server down from the start, is an error at once); a process that a running
            search starts (a trial's) does: the server answered its search a moment ago.
        **kwargs: Passed to `RDBStorage`.
    """

    def __init__(
        self, url: str, *, wait_s: float, wait_to_open: bool = False, **kwargs: Any
    ) -> None:
        from hpo.store import redact_url  # hpo.store imports this module

        self.wait_s = wait_s
        parsed = sqlalchemy.engine.make_url(url)
        self.shown = redact_url(url)
        self._password = parsed.password
        self._down_since: float | None = None
        if wait_to_open:
            self._call(RDBStorage.__init__, url, **kwargs)
        else:
            super().__init__(url, **kwargs)

    def record_heartbeat(self, trial_id: int) -> None:
        # A beat that cannot be written even after the wait is skipped rather than ending the
        # heartbeat thread: the next beat tries again, and the worker's own calls report.
        with contextlib.suppress(StoreError):
            self._call(RDBStorage.record_heartbeat, trial_id)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        pause = FIRST_PAUSE_S
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                self._wait(exc, pause)
                pause = min(2 * pause, LONGEST_PAUSE_S)
                continue
            down_since, self._down_since = self._down_since, None
            if down_since is not None:
                _log.warning(
                    "study storage %s answers again, after %.0f s; going on.",
                    self.shown,
                    time.monotonic() - down_since,
                )
            return result

    def _wait(self, exc: BaseException, pause: float) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            _log.warning(
                "study storage %s unreachable (%s): retrying for up to %.0f s.",
                self.shown,
                self._cause(exc),
                self.wait_s,
            )
        left = self._down_since + self.wait_s - now
        if left <= 0:
            raise StoreError(
                f"study storage {self.shown} has been unreachable for {self.wait_s:.0f} s "
                f"({self._cause(exc)}); giving up. The trials this process was running stay "
                f"RUNNING until the next search on this machine, or another worker's heartbeat "
                f"check, fails and re-queues them. When the server answers again, run the same "
                f"command to resume; $HPO_STORAGE_WAIT sets how many seconds to wait."
            ) from None  # the driver's exception can quote the URL, password included
        time.sleep(min(pause, left))

    def _cause(self, exc: BaseException) -> str:
        text = driver_message(exc).splitlines()[0]
        return masked(text, self._password)


def _waiting(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: WaitingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(method, *args, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


for _name in _SESSION_CALLS:
    setattr(WaitingRDBStorage, _name, _waiting(getattr(RDBStorage, _name)))


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a lost or refused connection.

    Optuna wraps SQLAlchemy's OperationalError (the server refused, closed or ended the
    connection; it is starting up or shutting down) in StorageInternalError.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def masked(text: str, password: object) -> str:
    """`text` with each stand-alone occurrence of `password` as `***`: a password of "p" leaves
    "port" as it is, which a plain replace would print as "***ort"."""
    if not password:
        return text
    pattern = rf"(?<![A-Za-z0-9]){re.escape(str(password))}(?![A-Za-z0-9])"
    return re.sub(pattern, "***", text)


def driver_message(exc: BaseException) -> str:
    """The database driver's own words for `exc` (e.g. 'Connection refused'), found under
    Optuna's StorageInternalError, whose text blames invalid data whatever the cause; or
    `exc`'s message when no driver error is in its chain."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, sqlalchemy.exc.DBAPIError):
        seen = seen.__cause__ or seen.__context__
    return str(seen.orig if seen is not None else exc).strip()
