from __future__ import annotations

import re
from pathlib import Path

import keras
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_project_never_enables_unsafe_deserialization() -> None:
    sources = [p for folder in ("hpo", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    assert sources
    for path in sources:
        assert "enable_unsafe_deserialization" not in path.read_text(), path


def test_keras_with_safe_mode_fixes_is_required() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"keras>=3\.13\.2"', pyproject)
    assert Version(keras.__version__) >= Version("3.13.2")
