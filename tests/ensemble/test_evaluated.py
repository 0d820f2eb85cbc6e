"""The ensemble's evaluated test predictions: written with their checksum, verified when read."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from hpo.ensemble.evaluated import PREDICTIONS_NAME, REPORT_KEY, load_predictions, save_predictions
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

FIX = "rebuild the ensemble with hpo ensemble"


def _saved(folder: Path, predictions: np.ndarray) -> dict[str, Any]:
    """An ensemble's report, as hpo ensemble writes it beside its predictions."""
    return {"test_examples": len(predictions), REPORT_KEY: save_predictions(folder, predictions)}


def test_the_predictions_are_read_back_as_written(tmp_path: Path) -> None:
    binary, classes = np.linspace(0.1, 0.9, 8), np.full((8, 3), 1 / 3)
    for predictions in (binary, classes):
        report = _saved(tmp_path, predictions)
        assert report[REPORT_KEY]["path"] == PREDICTIONS_NAME
        np.testing.assert_allclose(load_predictions(tmp_path, report), predictions, atol=1e-7)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-16],  # truncated: "Failed to read all data", a traceback in export
        lambda data: pickle.dumps("not predictions") * 4,  # garbage: "pickled (object) data"
        lambda data: data[:128] + np.float32(0.5).tobytes() * 8,  # 1 - p, or other values
    ],
    ids=["truncated", "garbage", "other values"],
)
def test_a_changed_file_is_refused_by_its_recorded_checksum(tmp_path: Path, damage: Any) -> None:
    # hpo export blamed the ONNX export for predictions replaced by 1 - p ("disagrees ... by
    # 9.24e-01") and hpo distill trained its student before np.load failed on a truncated file.
    report = _saved(tmp_path, np.linspace(0.1, 0.9, 8))
    path = tmp_path / PREDICTIONS_NAME
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ConfigError, match=r"test_predictions\.npy has checksum .* changed or") as e:
        load_predictions(tmp_path, report)
    assert FIX in str(e.value).lower()


def test_a_report_from_before_the_checksum_still_reads_the_file_safely(tmp_path: Path) -> None:
    path = tmp_path / PREDICTIONS_NAME
    older = {"test_examples": 8}  # no REPORT_KEY
    np.save(path, np.linspace(0.1, 0.9, 8).astype(np.float32))
    assert load_predictions(tmp_path, older).shape == (8,)
    np.save(path, np.linspace(0.1, 0.9, 8)[:-1])  # IndexError in hpo export
    with pytest.raises(ConfigError, match=r"shape \(7,\), not finite predictions for its 8 test"):
        load_predictions(tmp_path, older)
    np.save(path, np.array([{"p": 0.5}] * 8, dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match=r"cannot be read as predictions .*rebuild the ensemble"):
        load_predictions(tmp_path, older)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ConfigError, match=r"cannot be read as predictions"):
        load_predictions(tmp_path, older)
    path.unlink()
    with pytest.raises(ConfigError, match=rf"{PREDICTIONS_NAME} is missing: .*{FIX}"):
        load_predictions(tmp_path, older)
