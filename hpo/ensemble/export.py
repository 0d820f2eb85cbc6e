"""How to combine, last step: one Keras model from raw inputs to the weighted, calibrated
prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.contract import load_keras_file
from hpo.errors import HpoError
from hpo.store import sha256_file

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import keras

    from hpo.ensemble.selection import Member
    from hpo.tasks import Task

__all__ = [
    "EXPORT_NAME",
    "TOKENIZER_NAME",
    "check_export",
    "check_rows",
    "compare_rows",
    "export_ensemble",
    "takes_text",
    "write_tokenizer",
]

EXPORT_NAME = "ensemble.keras"
# Beside a text export: raw text to the study's token ids, for exports that take ids.
TOKENIZER_NAME = "tokenizer.json"
EXPORT_CHECK_EXAMPLES = 512
EXPORT_TOLERANCE = 1e-5


def export_ensemble(
    task: Task,
    data_folder: Path,
    members: Sequence[Member],
    models: Sequence[keras.Model],
    weights: np.ndarray,
    temperature: float | None = None,
) -> keras.Model:
    """One functional model: raw inputs -> shared preprocessing -> each member -> weighted average
    (-> the fitted temperature).

    Members with zero weight are left out; members whose preprocessing is equal share it.

    Args:
        temperature: Divides the logits of the weighted average (`hpo.models._calibration`);
            None (the default) exports the average as it is.
    """
    import keras
    from keras import layers

    from hpo.models._calibration import Temperature

    inputs = task.raw_input(data_folder)
    preprocessed: dict[Any, Any] = {}
    outputs = []
    for member, model, weight in zip(members, models, weights, strict=True):
        if weight <= 0:
            continue
        key, layer = task.export_preprocessing(data_folder, member.trial.params)
        if key not in preprocessed:
            layer.name = f"preprocess_{len(preprocessed)}"
            preprocessed[key] = layer(inputs)
        model.name = f"trial_{member.trial.number}"
        x = model(preprocessed[key])
        outputs.append(
            layers.Rescaling(float(weight), name=f"weight_trial_{member.trial.number}")(x)
        )
    output = layers.Add(name="weighted_average")(outputs) if len(outputs) > 1 else outputs[0]
    if temperature is not None:
        output = Temperature(temperature, name="temperature")(output)
    return keras.Model(inputs, output, name="ensemble")


def takes_text(model: keras.Model) -> bool:
    """Whether an export reads raw strings (else token ids or images)."""
    return "string" in str(model.inputs[0].dtype)


def write_tokenizer(task: Task, data_folder: Path, folder: Path) -> dict[str, str]:
    """Text tasks: writes the study's `tokenizer.json` in `folder`; returns the report's keys
    for it (none for other tasks)."""
    if task.tokenizer is None:
        return {}
    path = folder / TOKENIZER_NAME
    path.write_text(task.tokenizer(data_folder).to_json())
    return {"tokenizer": TOKENIZER_NAME, "tokenizer_sha256": sha256_file(path)}


def keras_config_backend() -> str:
    """The Keras backend this process runs (the export's)."""
    import keras

    return str(keras.config.backend())


def check_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` row indices drawn evenly from every class (test files are sorted by class)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, n // max(1, len(classes)))
    rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=int)


def check_export(
    path: Path,
    raw: np.ndarray,
    labels: np.ndarray,
    expected: np.ndarray,
    tolerance: float = EXPORT_TOLERANCE,
    slope: np.ndarray | None = None,
) -> dict[str, Any]:
    """Loads the export back and checks it reproduces `expected` on rows of every class.

    Args:
        tolerance: The largest difference allowed: float32 rounding, or more for members that
            compute in 16 bits (see `hpo.training.interface.tolerance`).
        slope: Per example, how much the export's last step magnifies a difference in its
            input (`hpo.ensemble.calibration.temperature_slope`); the tolerance is multiplied
            by it. None: 1 everywhere.
    """
    model = load_keras_file(path)
    rows = check_rows(labels, EXPORT_CHECK_EXAMPLES)
    got = np.asarray(model.predict(raw[rows], batch_size=256, verbose=0), dtype=np.float64)
    return {
        "path": EXPORT_NAME,
        "sha256": sha256_file(path),
        **compare_rows(got, rows, labels, expected, tolerance, slope, "the exported ensemble"),
    }


def compare_rows(
    got: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    expected: np.ndarray,
    tolerance: float,
    slope: np.ndarray | None,
    what: str,
) -> dict[str, Any]:
    """Checks an export's outputs `got` on test `rows` against the evaluated predictions.

    Raises:
        HpoError: One differs by more than `tolerance` (times its `slope`).
    """
    got = metrics.as_probabilities(np.asarray(got, np.float64)).reshape(expected[rows].shape)
    gaps = np.abs(got - expected[rows]).reshape(len(rows), -1).max(axis=1, initial=0.0)
    allowed = tolerance * (np.ones(len(rows)) if slope is None else slope[rows])
    worst = int(np.argmax(gaps / allowed)) if len(rows) else 0
    if len(rows) and gaps[worst] > allowed[worst]:
        raise HpoError(
            f"{what} disagrees with the evaluated one by {gaps[worst]:.2e} on "
            f"test example {rows[worst]} (tolerance {allowed[worst]:g})"
        )
    return {
        "checked_examples": len(rows),
        "checked_classes": len(np.unique(labels[rows])),
        "max_abs_difference": float(gaps.max(initial=0.0)),
        "tolerance": tolerance,
        "max_tolerance": float(allowed.max(initial=tolerance)),
    }
