from __future__ import annotations

import json
from typing import TYPE_CHECKING

import jsonschema
import pandas as pd

from hpo.config import load_study_config
from hpo.inspection.status import SCHEMA_PATH, main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_json_follows_the_documented_schema(
    searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--study", str(searched), "--json", "--top", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["study"] == "tiny"
    assert data["counts"]["COMPLETE"] == 4
    assert len(data["trials"]) == 3
    values = [t["value"] for t in data["trials"]]
    assert values == sorted(values, reverse=True)
    assert data["best"]["value"] == values[0]
    assert {t["family"] for t in data["trials"]} <= {"conv1d", "sepconv1d"}


def test_table_and_csv(searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--study", str(searched)]) == 0
    out = capsys.readouterr().out
    assert "Study 'tiny'" in out
    assert "4 COMPLETE" in out
    assert "val_acc" in out
    csv = tmp_path / "trials.csv"
    assert main(["--study", str(searched), "--csv", str(csv)]) == 0
    frame = pd.read_csv(csv)
    assert len(frame) == 4
    assert {"trial", "state", "value", "family", "val_accuracy"} <= set(frame.columns)


def test_shows_the_latest_ensemble(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo._cli import open_study
    from hpo.ensemble import build_ensemble

    config, study = open_study(study_copy, None, None)
    build_ensemble(config, study, top=2, out_dir=tmp_path / "e")
    assert main(["--study", str(study_copy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["latest_ensemble"]["name"] == "ensemble_top2"
    assert 1 <= len(data["latest_ensemble"]["members"]) <= 2


def test_a_mistyped_storage_never_creates_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    assert main(["--storage", f"sqlite:///{missing}", "--study-name", "x"]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["--study", str(tmp_path / "nope.toml")]) == 2


def test_unknown_study_name(searched: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = load_study_config(searched).storage_url
    assert main(["--storage", url, "--study-name", "tiny2"]) == 2
    assert "Studies there: ['tiny']" in capsys.readouterr().err
