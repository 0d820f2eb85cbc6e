"""Reading hpo's JSON files: one nested deeper than Python's parser goes is a damaged file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import pytest

from hpo._json import parse_json, read_json
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_too_deep_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nested deeper than Python's parser goes"):
        parse_json(DEEP)
    (tmp_path / "report.json").write_text(DEEP)
    with pytest.raises(ValueError, match="nested deeper"):
        read_json(tmp_path / "report.json")
    assert parse_json('{"a": [1]}') == {"a": [1]}


def test_a_report_nested_too_deep_is_a_damaged_one_to_each_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hpo predict, export --ensemble, distill and ensemble (replacing the folder) stopped with
    # RecursionError tracebacks (exit code 1).
    from hpo.command_options import open_ensemble_study
    from hpo.distill.build import read_ensemble_report
    from hpo.ensemble.export import EXPORT_NAME
    from hpo.ensemble.output_folder import _report
    from hpo.ensemble.predict import export_backend, verify_export

    monkeypatch.chdir(tmp_path)  # no default study file here
    folder = tmp_path / "t-top2"
    folder.mkdir()
    (folder / "report.json").write_text(DEEP)
    (folder / EXPORT_NAME).write_bytes(b"")
    with pytest.raises(ConfigError, match="does not record the exported ensemble's checksum"):
        verify_export(folder)
    with pytest.raises(ConfigError, match="is not a report of hpo ensemble"):
        read_ensemble_report(folder)
    assert _report(folder) is None
    assert export_backend(folder).value == "tensorflow"
    flags = argparse.Namespace(study=None, storage=None, study_name=None)
    with pytest.raises(ConfigError, match="cannot tell the study the ensemble was built from"):
        open_ensemble_study(flags, folder)
