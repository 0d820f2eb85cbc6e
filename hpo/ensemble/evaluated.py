"""How to combine: the ensemble's evaluated test predictions, `test_predictions.npy`.

`hpo ensemble` writes them beside its export, with their SHA-256 in `report.json`; `hpo export`
checks each new export against them and `hpo distill` compares its student with them. Both
verify the file before any work: a changed one was blamed on the export ("the ONNX export
disagrees"), and a truncated one was found after the student had trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from hpo.errors import ConfigError
from hpo.store import sha256_file

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PREDICTIONS_NAME", "REPORT_KEY", "load_predictions", "save_predictions"]

PREDICTIONS_NAME: Final = "test_predictions.npy"
# report.json's entry for the file: {"path": PREDICTIONS_NAME, "sha256": ...}.
REPORT_KEY: Final = "test_predictions"
_FIX = "rebuild the ensemble with hpo ensemble"


def save_predictions(folder: Path, predictions: np.ndarray) -> dict[str, str]:
    """Writes the predictions (as float32) in `folder`; returns report.json's entry for them
    (`REPORT_KEY`): their path and SHA-256."""
    path = Path(folder) / PREDICTIONS_NAME
    np.save(path, np.asarray(predictions).astype(np.float32))
    return {"path": PREDICTIONS_NAME, "sha256": sha256_file(path)}


def load_predictions(folder: Path, report: Mapping[str, Any]) -> np.ndarray:
    """The evaluated test predictions in `folder`, verified against its `report`.

    Their SHA-256 must be the one the report records (reports from before it was recorded
    have none); they are read without pickles, and must be finite, one value (binary) or one
    row of values per test example the report counts.

    Args:
        folder: The ensemble's folder.
        report: Its report.json.

    Raises:
        ConfigError: The file is missing, changed, unreadable or of another shape; the message
            names the file and says to rebuild the ensemble.
    """
    path = Path(folder) / PREDICTIONS_NAME
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing: the ensemble's evaluated test predictions, which its exports "
            f"are checked against and a distilled student is compared with; {_FIX}."
        )
    entry = report.get(REPORT_KEY)
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded is not None and (actual := sha256_file(path)) != recorded:
        raise ConfigError(
            f"{path} has checksum {actual[:12]}..., not the {str(recorded)[:12]}... recorded "
            f"when the ensemble was evaluated: it was changed or truncated; {_FIX}."
        )
    try:
        predictions = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{path} cannot be read as predictions ({exc}); {_FIX}.") from exc
    examples = _examples(report)
    if (
        not isinstance(predictions, np.ndarray)
        or predictions.dtype.kind != "f"
        or predictions.ndim not in (1, 2)
        or (examples is not None and len(predictions) != examples)
        or not np.isfinite(predictions).all()
    ):
        shape = getattr(predictions, "shape", type(predictions).__name__)
        dtype = getattr(predictions, "dtype", "")
        counted = "its" if examples is None else f"its {examples}"
        raise ConfigError(
            f"{path} holds {dtype} values of shape {shape}, not finite predictions for "
            f"{counted} test examples, as the ensemble was evaluated on; {_FIX}."
        )
    return predictions.astype(np.float64)


def _examples(report: Mapping[str, Any]) -> int | None:
    """The test examples the ensemble was evaluated on, as its report counts them."""
    test_data = report.get("test_data")
    for count in (
        report.get("test_examples"),
        test_data.get("examples") if isinstance(test_data, dict) else None,
    ):
        if isinstance(count, int) and not isinstance(count, bool):
            return count
    return None
