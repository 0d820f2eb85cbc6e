from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest

from hpo.budget import BudgetClock, format_duration, parse_duration, spent_seconds
from hpo.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("45s", 45),
        ("3600", 3600),
        (120, 120),
        (0.5, 0.5),
        (" 2H ", 7200),
        ("1d", 86400),
        ("2 hours", 7200),
        ("1 hour 30 minutes", 5400),
        ("90 mins", 5400),
        ("2hrs", 7200),
        ("30 sec", 30),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text, "budget") == seconds


@pytest.mark.parametrize(
    "bad", [0, -5, "0", "-5", "2 weeks ago", "h", "", True, None, "inf", "500ms", "2 hoursx"]
)
def test_parse_duration_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"'budget' must be a duration greater than zero"):
        parse_duration(bad, "budget")


def test_format_duration() -> None:
    assert format_duration(7200) == "2h 00m"
    assert format_duration(750) == "12m 30s"
    assert format_duration(45.4) == "45s"
    assert format_duration(0.4) == format_duration(-3) == "0s"


def test_spent_is_the_union_of_run_intervals() -> None:
    study = optuna.create_study()
    study.set_user_attr("budget_run:a", [100.0, 160.0])
    study.set_user_attr("budget_run:b", [150.0, 200.0])  # overlaps a: counted once
    study.set_user_attr("budget_run:c", [300.0, 310.0])
    study.set_user_attr("unrelated", [0, 1000])
    assert spent_seconds(study) == pytest.approx(110.0)
    # Up to a moment: later runs do not count, the one running then counts up to it.
    assert spent_seconds(study, now=155.0) == pytest.approx(55.0)
    assert spent_seconds(study, now=250.0) == pytest.approx(100.0)


@pytest.mark.parametrize("bad", ["abc", [1.0], [1.0, "2"], [0.0, float("inf")], 5, [True, 9.0]])
def test_a_malformed_run_record_counts_nothing_with_a_warning(
    bad: object, caplog: pytest.LogCaptureFixture
) -> None:
    # A record another program or an older version wrote: the search resumes all the same.
    study = optuna.create_study()
    study.set_user_attr("budget_run:a", [100.0, 160.0])
    study.set_user_attr("budget_run:zzz", bad)
    assert spent_seconds(study) == pytest.approx(60.0)
    assert "'budget_run:zzz'" in caplog.text
    assert BudgetClock(study, budget=None).run_index() == 1


def test_clock_adds_to_earlier_runs() -> None:
    study = optuna.create_study()
    now = time.time()
    study.set_user_attr("budget_run:earlier", [now - 1000.0, now - 940.0])
    with BudgetClock(study, budget=100.0) as clock:
        assert 60.0 <= clock.spent() < 62.0
        assert 38.0 < clock.left() <= 40.0
        deadline = clock.deadline()
        assert deadline is not None
        assert deadline == pytest.approx(now + 40.0, abs=2.0)
    assert clock.key in study.user_attrs
    unlimited = BudgetClock(study, budget=None)
    assert unlimited.deadline() is None
    assert unlimited.left() == float("inf")


def test_runs_get_distinct_indices_in_start_order() -> None:
    study = optuna.create_study()
    first = BudgetClock(study, budget=None)
    time.sleep(0.01)
    second = BudgetClock(study, budget=None)
    # Even when the later run records and asks first, each gets its own position.
    assert second.run_index() == 0  # the only run recorded so far
    assert first.run_index() == 0
    assert second.run_index() == 1
    time.sleep(0.01)
    assert BudgetClock(study, budget=None).run_index() == 2


class _FlakyStudy:
    """A study whose second write fails, as a locked database would."""

    def __init__(self) -> None:
        self.user_attrs: dict[str, Any] = {}
        self.writes = 0

    def set_user_attr(self, key: str, value: Any) -> None:
        self.writes += 1
        if self.writes == 2:
            raise OSError("database is locked")
        self.user_attrs[key] = value


def test_a_running_clock_keeps_recording_in_the_background_until_it_exits() -> None:
    study = _FlakyStudy()
    clock = BudgetClock(study, budget=None, refresh_s=0.01)  # type: ignore[arg-type]
    with clock:
        (thread,) = [t for t in threading.enumerate() if t.name == "hpo-budget"]
        assert thread.daemon  # a hung store never keeps the process alive
        waited = time.monotonic()
        # The failed second write is skipped; later refreshes go on.
        while study.writes < 4 and time.monotonic() - waited < 10:
            time.sleep(0.01)
        assert study.writes >= 4
        before_exit = time.time()
    after_exit = time.time()
    assert not thread.is_alive()
    writes = study.writes
    time.sleep(0.05)
    assert study.writes == writes
    start, end = study.user_attrs[clock.key]
    assert start == round(clock.started, 6)
    assert before_exit - 1e-6 <= end <= after_exit + 1e-6


def test_a_machine_that_sleeps_or_a_clock_that_is_set_does_not_spend_the_budget() -> None:
    # A laptop closed mid-search: the wall clock runs on, the monotonic clock stops.
    clocks = {"wall": 1000.0, "steady": 50.0}
    study = optuna.create_study()
    clock = BudgetClock(
        study, budget=7200.0, wall=lambda: clocks["wall"], steady=lambda: clocks["steady"]
    )

    def run(seconds: float, *, slept: float = 0.0) -> None:
        clocks["wall"] += seconds + slept
        clocks["steady"] += seconds

    clock.record()
    run(100.0)
    assert clock.spent() == pytest.approx(100.0)
    run(20.0, slept=3600.0)
    assert clock.spent() == pytest.approx(100.0)  # the interval ended at its last record
    run(50.0)
    assert clock.spent() == pytest.approx(150.0)
    assert clock.slept == pytest.approx(3600.0)
    assert clock.left() == pytest.approx(7200.0 - 150.0)
    # A clock set back an hour: the time before it stays counted, and the run counts on.
    clocks["wall"] -= 3600.0
    clock.record()
    run(10.0)
    assert clock.spent() == pytest.approx(160.0)
    # A small correction (NTP's) is not a jump.
    clocks["wall"] += 5.0
    run(10.0)
    assert clock.spent() == pytest.approx(175.0)
