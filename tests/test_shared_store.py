"""A study read from a shared store never runs code or writes to paths that the store names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpo.command_options import joining_config, recorded_config
from hpo.config import load_study_config
from hpo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("the store chose code that ran")


def build(hp):
    return None
"""


def _poison(study_file: Path, tmp_path: Path) -> tuple[str, Path, Path]:
    """Rewrites the study's recorded configuration as an attacker with write access would:
    a family whose module sits in a folder of the attacker's choosing, which that folder's
    module would announce by writing a marker file when imported."""
    config = load_study_config(study_file)
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    marker = tmp_path / "code-ran"
    (evil_dir / "evil_module.py").write_text(EVIL.format(marker=str(marker)))
    recorded = dict(study.user_attrs["hpo_config"])
    recorded["families"] = {"evil": "evil_module:build", "zen": "this"}
    recorded["study_dir"] = str(evil_dir / config.name)  # its folder would go on sys.path
    recorded["import_families"] = True  # a store cannot grant itself trust
    # Keep the artifact store the real one (the shared folder every machine mounts).
    recorded["artifacts"] = config.artifact_location
    study.set_user_attr("hpo_config", recorded)
    return config.storage_url, marker, evil_dir


def _hpo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=None,
    )


def test_reading_a_poisoned_store_runs_none_of_its_code(study_copy: Path, tmp_path: Path) -> None:
    storage, marker, evil_dir = _poison(study_copy, tmp_path)
    reader = tmp_path / "reader"
    reader.mkdir()
    store = ("--storage", storage, "--study-name", "tiny")

    status = _hpo("status", *store, "--json", cwd=reader)
    assert status.returncode == 0, status.stderr[-2000:]
    assert json.loads(status.stdout)["study"] == "tiny"

    out = reader / "ensemble"
    ensemble = _hpo("ensemble", *store, "--top", "2", "--out", str(out), cwd=reader)
    # The members are hpo's own families, stored as checkpoints: no family code is needed.
    assert ensemble.returncode == 0, ensemble.stderr[-2000:]
    assert json.loads((out / "report.json").read_text())["export"]["checked_examples"] > 0

    report = _hpo("report", *store, "--out", str(reader / "reports"), cwd=reader)
    assert report.returncode == 0, report.stderr[-2000:]

    # A worker may not join with the store's families: it needs the study file naming them.
    join = _hpo("search", *store, cwd=reader)
    assert join.returncode == 2
    assert "never imports code that a study store names" in join.stderr
    assert "hpo search --study FILE --storage URL" in join.stderr

    assert not marker.exists(), "a module named by the store was imported"
    for result in (status, ensemble, report, join):
        assert "Zen of Python" not in result.stdout
    # The reader's scratch (the data cache) is in the study's folder as the reader's URL
    # names it (its database's, in hpo's layout), not in the folder the store names.
    database_folder = Path(storage.removeprefix("sqlite:///")).parent
    assert (database_folder / "cache").is_dir()
    assert not (evil_dir / "tiny").exists()


def test_a_recorded_configuration_is_data(study_copy: Path, tmp_path: Path) -> None:
    storage, marker, _ = _poison(study_copy, tmp_path)
    study = optuna.load_study(study_name="tiny", storage=storage)
    config = recorded_config(study, storage)
    assert config.import_families is False
    from hpo.tasks import study_task

    task = study_task(config)
    assert {"evil", "zen"} <= set(task.families)
    with pytest.raises(ConfigError, match="never imports code that a store names"):
        task.families["evil"].build({})
    # From Python, the way in is Python's; `hpo search` names its flags (the test above).
    with pytest.raises(ConfigError, match=r"study file that names them: hpo\.search\('FILE"):
        joining_config(storage, "tiny", tmp_path)
    assert not marker.exists()
    assert "evil_module" not in sys.modules and "this" not in sys.modules
