"""Scratch folders: those a killed process left are removed by the next hpo command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from hpo.scratch import machine_tag, scratch_folder, sweep_scratch

if TYPE_CHECKING:
    from pathlib import Path

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
