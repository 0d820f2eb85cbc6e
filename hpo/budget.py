"""What to try, and for how long: a study's wall-clock budget, kept across resumed runs.

Each run of the search records the interval it has been alive in the study (a user attribute per
run, refreshed while it runs), so the time spent is the union of those intervals: resumed runs
add up, and runs on several machines at once count their shared time once. Data preparation is
inside the interval, so it counts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import optuna

    from hpo.config import StudyConfig

__all__ = [
    "BudgetClock",
    "cap_epochs",
    "format_duration",
    "parse_duration",
    "run_intervals",
    "spent_seconds",
    "union_seconds",
]

RUN_ATTR_PREFIX = "budget_run:"
# Seconds the wall clock may move apart from the monotonic one between two records before the
# run's interval is split (NTP's corrections are far smaller).
CLOCK_JUMP_S = 30.0
_log = logging.getLogger("hpo.budget")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# "2h", "1h30m", "90 minutes", "2 hours": a unit's name or its first letter.
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])"
)


def parse_duration(value: Any, key: str) -> float:
    """Seconds in a duration: a number of seconds, or text such as "2h", "90m", "1h30m", "45s".

    Raises:
        ConfigError: The value is not a positive duration; the message names `key`.
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if parts and _DURATION.sub("", text).strip() == "":
                seconds = sum(float(n) * _UNITS[unit[0]] for n, unit in parts)
    if seconds is None or not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"'{key}' must be a duration greater than zero: seconds, or text such as \"2h\", "
            f'"90m" or "1h30m"; got {value!r}.'
        )
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as "1h 05m", "12m 30s" or "45s"."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def run_intervals(study: optuna.Study) -> list[tuple[float, float]]:
    """The [start, end] Unix times of each search run the study recorded (`BudgetClock`)."""
    return list(_recorded_runs(study).values())


def _recorded_runs(study: optuna.Study) -> dict[str, tuple[float, float]]:
    """Each run's attribute name -> its [start, end]; a record that is not two finite Unix
    times (written by something else) counts nothing, with a warning."""
    runs = {}
    for key, value in study.user_attrs.items():
        if not key.startswith(RUN_ATTR_PREFIX):
            continue
        try:
            start, end = (_finite(x) for x in value)
        except (TypeError, ValueError):
            _log.warning(
                "study attribute %r should be [start, end] in Unix seconds, got %.80r; its time "
                "is not counted in the budget. Delete that attribute to silence this warning.",
                key,
                value,
            )
            continue
        runs[key] = (start, end)
    return runs


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def spent_seconds(study: optuna.Study, now: float | None = None) -> float:
    """Wall-clock seconds the study's runs have been alive: the union of their intervals."""
    return union_seconds(run_intervals(study), until=float("inf") if now is None else now)


def union_seconds(intervals: Iterable[Sequence[float]], until: float = float("inf")) -> float:
    """Seconds covered by the union of [start, end] intervals, counted up to `until`."""
    total, reach = 0.0, -float("inf")
    for start, end in sorted((float(a), float(b)) for a, b in intervals):
        end = min(end, until)
        if end > max(start, reach):
            total += end - max(start, reach)
            reach = end
    return total


class BudgetClock:
    """Accounts one search run against the study's budget.

    Args:
        study: The study; its earlier runs' intervals are read from it.
        budget: The study's budget in seconds, or None for no budget (time is still recorded).
        refresh_s: How often a background thread records this run's interval while it runs, so
            a killed run loses at most this much of its accounting.
    """

    def __init__(
        self,
        study: optuna.Study,
        budget: float | None,
        refresh_s: float = 15.0,
        *,
        wall: Callable[[], float] = time.time,
        steady: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study, self.budget, self.refresh_s = study, budget, refresh_s
        self._wall, self._steady = wall, steady
        self.key = f"{RUN_ATTR_PREFIX}{uuid.uuid4().hex[:12]}"
        self.started = wall()
        self._last = (self.started, steady())
        # Seconds the wall clock moved apart from the monotonic one: the machine slept (the
        # monotonic clock stops while it does), or the clock was set.
        self.slept = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> None:
        """Writes this run's interval [start, now] to the study.

        Where the wall clock moved more than `CLOCK_JUMP_S` apart from the monotonic clock since
        the last record (a laptop that slept, a clock set), the interval ends at that record and
        a new one starts now: the budget does not count the sleep.
        """
        with self._lock:
            now, steady = self._wall(), self._steady()
            jump = (now - self._last[0]) - (steady - self._last[1])
            if abs(jump) > CLOCK_JUMP_S:
                self.slept += max(jump, 0.0)
                self.key = f"{RUN_ATTR_PREFIX}{uuid.uuid4().hex[:12]}"
                self.started = now
            self._last = (now, steady)
            self.study.set_user_attr(self.key, [round(self.started, 6), round(now, 6)])

    def spent(self) -> float:
        """Seconds spent by every run so far, this one included."""
        self.record()
        return spent_seconds(self.study)

    def run_index(self) -> int:
        """This run's position among all the study's runs, by start time (0 for the first).

        Each run records its interval before it asks, so two runs that start at once on two
        machines still get different positions (each sees at least its own record and any that
        came first).
        """
        self.record()
        runs = sorted((start, key) for key, (start, _) in _recorded_runs(self.study).items())
        return runs.index((round(self.started, 6), self.key))

    def left(self) -> float:
        """Seconds left of the budget (infinite without one)."""
        if self.budget is None:
            return float("inf")
        return self.budget - self.spent()

    def deadline(self) -> float | None:
        """Unix time at which the budget ends, or None without a budget."""
        if self.budget is None:
            return None
        return self._wall() + self.left()

    def __enter__(self) -> BudgetClock:
        self.record()
        self._thread = threading.Thread(target=self._refresh, name="hpo-budget", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.record()

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_s):
            # A failed write is retried by the next refresh, or by the final record.
            with contextlib.suppress(Exception):
                self.record()


def cap_epochs(config: StudyConfig, cap: float, cheapest: float | None) -> int:
    """Epochs a trial's estimate must fit in its cap to start: `patience + 1` (at most
    `max_epochs`), or as many of the cheapest default model's epochs as the cap holds, if fewer
    (at least 1)."""
    wanted = min(config.training.max_epochs, config.training.patience + 1)
    if cheapest is None or cheapest <= 0:
        return wanted
    return max(1, min(wanted, math.floor(cap / cheapest)))
