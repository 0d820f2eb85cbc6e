"""Workers of one machine take turns to decide whether the study needs another trial."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import optuna
import pytest

from hpo.search.turns import LOCK_NAME, StartTurn, lock_file

if TYPE_CHECKING:
    from pathlib import Path


def test_a_worker_deciding_waits_for_the_trial_another_decided_to_start(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)  # one of two finished
    first, second = StartTurn(tmp_path / "turn.lock", 2), StartTurn(tmp_path / "turn.lock", 2)
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
    assert StartTurn(tmp_path / "turn.lock", 3).needs_another(study)


def test_the_turn_is_given_back_when_the_study_is_full_or_the_count_fails(
    tmp_path: Path,
) -> None:
    study = optuna.create_study()
    study.tell(study.ask(), 1.0)
    assert not StartTurn(tmp_path / "turn.lock", 1).needs_another(study)

    class Unreadable:
        def get_trials(self, **_: object) -> list[object]:
            raise RuntimeError("the store is away")

    with pytest.raises(RuntimeError, match="the store is away"):
        StartTurn(tmp_path / "turn.lock", 5).needs_another(Unreadable())  # type: ignore[arg-type]
    # Neither holds the turn: another worker takes it at once.
    other = StartTurn(tmp_path / "turn.lock", 5)
    assert other.needs_another(study)
    other.give_back()


def test_the_workers_of_a_sqlite_study_take_turns_beside_its_database_wherever_they_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `hpo search --study s.toml` and `hpo search --storage sqlite:///... --study-name` from
    # another folder: their study folders differ, and their locks did (a trial over n_trials).
    database = tmp_path / "project" / "tiny" / "study.db"
    monkeypatch.chdir(tmp_path)
    by_file = lock_file(f"sqlite:///{database}", tmp_path / "project" / "tiny")
    joined = lock_file("sqlite:///project/tiny/study.db", tmp_path / "studies" / "tiny")
    assert by_file == joined == database.with_name("study.db.trial-start.lock")
    # Another store: the study's folder (workers of other machines take no turns with these).
    url = "postgresql+psycopg://hpo@db.example/hpo"
    assert (
        lock_file(url, tmp_path / "studies" / "tiny") == tmp_path / "studies" / "tiny" / LOCK_NAME
    )
