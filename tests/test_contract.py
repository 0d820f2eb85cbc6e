from __future__ import annotations

import re
from pathlib import Path

import keras
import pytest
from packaging.version import Version

from hpo.contract import CheckpointError, load_checkpoint, load_keras_file

ROOT = Path(__file__).resolve().parents[1]


def _lambda_model(path: Path) -> Path:
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_loading_runs_in_safe_mode(tmp_path: Path) -> None:
    # Safe mode refuses to deserialize a Lambda's Python code; had anything enabled unsafe
    # deserialization, this would load.
    path = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"(?i)lambda"):
        load_keras_file(path)
    with pytest.raises(CheckpointError, match="trial 3: cannot load checkpoint"):
        load_checkpoint(path, 3)


def test_keras_with_safe_mode_fixes_is_required() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"keras>=3\.13\.2"', pyproject)
    assert Version(keras.__version__) >= Version("3.13.2")
