"""Workers of one machine take turns to decide whether the study needs another trial."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import optuna
import pytest

from hpo.search.turns import StartTurn

if TYPE_CHECKING:
    from pathlib import Path


def test_a_worker_deciding_waits_for_the_trial_another_decided_to_start(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)  # one of two finished
    first, second = StartTurn(tmp_path, 2), StartTurn(tmp_path, 2)
    assert first.needs_another(study)  # and holds the turn until its trial exists
    decided: list[bool] = []
    waiting = threading.Thread(target=lambda: decided.append(second.needs_another(study)))
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive() and not decided  # it waits for the turn
    study.ask()  # the first worker's trial, RUNNING
    first.give_back()
    waiting.join(timeout=10)
    # It counts the running trial: two of two, no third (it gave the turn back, too).
    assert decided == [False]
    assert StartTurn(tmp_path, 3).needs_another(study)


def test_the_turn_is_given_back_when_the_study_is_full_or_the_count_fails(
    tmp_path: Path,
) -> None:
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    assert not StartTurn(tmp_path, 1).needs_another(study)

    class Unreadable:
        def get_trials(self, **_: object) -> list[object]:
            raise RuntimeError("the store is away")

    with pytest.raises(RuntimeError, match="the store is away"):
        StartTurn(tmp_path, 5).needs_another(Unreadable())  # type: ignore[arg-type]
    # Neither holds the turn: another worker takes it at once.
    other = StartTurn(tmp_path, 5)
    assert other.needs_another(study)
    other.give_back()
