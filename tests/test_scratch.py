"""Scratch folders: those a killed process left are removed by the next hpo command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.scratch import (
    machine_tag,
    scratch_folder,
    sweep_scratch,
    sweep_trial_scratch,
    trial_scratch,
)

if TYPE_CHECKING:
    import pytest


def test_a_dead_processs_scratch_folders_are_removed_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `kill -9` during hpo ensemble left /tmp/hpo-ensemble-* (checkpoint copies, megabytes a
    # member) that no later run removed.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(done.stdout)
    machine = machine_tag()
    left = tmp_path / f"hpo-ensemble-{dead}-{machine}-k2j_x9ab"
    (left / "trial-00001.keras").parent.mkdir()
    (left / "trial-00001.keras").write_bytes(b"checkpoint")
    mine = tmp_path / f"hpo-export-{os.getpid()}-{machine}-a1b2c3d4"
    # Another machine's, in a temporary folder they share: its process may well run there.
    theirs = tmp_path / f"hpo-export-{dead}-0123456789ab-a1b2c3d4"
    mine.mkdir()
    # Not hpo's scratch, or named before folders held their process's id.
    others = [
        theirs,
        tmp_path / "hpo-ensemble-k2j_x9ab",
        tmp_path / f"other-{dead}-x",
        tmp_path / "data",
    ]
    for folder in others:
        folder.mkdir()
    link = tmp_path / f"hpo-serve-{dead}-{machine}-linkname"
    link.symlink_to(tmp_path / "data", target_is_directory=True)

    with scratch_folder("distill") as scratch:
        assert os.path.basename(scratch).startswith(f"hpo-distill-{os.getpid()}-{machine}-")
        assert not left.exists()
        assert mine.is_dir() and all(folder.is_dir() for folder in others)
        assert link.is_symlink()
    assert not os.path.exists(scratch)
    assert sweep_scratch() == []


def test_a_finished_trials_scratch_folder_is_removed_and_no_other(tmp_path: Path) -> None:
    # A trial stopped by SIGKILL (or Ctrl-C as its process was ended) left trials/00000/, tens
    # of MB of checkpoints, for good: its retry runs under a new number, and nothing swept it.
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study()
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        study.add_trial(create_trial(state=state, value=0.5 if state.name == "COMPLETE" else None))
    study.ask()  # 3: RUNNING, maybe on another machine sharing the folder
    study.enqueue_trial({})  # 4: WAITING, about to be taken
    for number in range(6):  # 5: no trial of the study's
        folder = trial_scratch(tmp_path, number)
        folder.mkdir(parents=True)
        (folder / "training.keras").write_bytes(bytes(1000))
    mine = tmp_path / "mine"
    mine.mkdir()
    (tmp_path / "trials" / "00001.moved").mkdir()  # not a name hpo gives one
    (tmp_path / "trials" / "000002").symlink_to(mine, target_is_directory=True)

    dry = sweep_trial_scratch(tmp_path, study, dry_run=True)
    assert dry == {trial_scratch(tmp_path, n): 1000 for n in (0, 1, 2)}
    assert all(trial_scratch(tmp_path, n).is_dir() for n in range(6))
    assert sweep_trial_scratch(tmp_path, study) == dry
    left = sorted(p.name for p in (tmp_path / "trials").iterdir())
    assert left == ["000002", "00001.moved", "00003", "00004", "00005"]
    assert mine.is_dir()
    assert sweep_trial_scratch(tmp_path / "elsewhere", study) == {}


def test_the_start_errors_folder_of_a_killed_caller_is_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook whose kernel was restarted mid-search (or a killed script) left
    # /tmp/hpo-start-errors-* for good: it is a scratch folder named by its process now.
    code = (
        "import os\n"
        "from hpo.training.start_errors import start_errors_folder\n"
        "print(start_errors_folder(), flush=True)\n"
        "os._exit(0)  # as a kill: no exit handlers\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    left = Path(done.stdout.strip())
    assert left.parent == tmp_path and left.is_dir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert sweep_scratch() == [left]
    assert not left.exists()
