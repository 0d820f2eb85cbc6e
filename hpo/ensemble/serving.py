"""How to combine, for serving: the ensemble as a TensorFlow SavedModel, checked without hpo.

TensorFlow Serving, TFLite converters and most Python services load a SavedModel; only hpo opens
`ensemble.keras` (its layers are hpo's). Keras writes the SavedModel (`Model.export`, a `serve`
endpoint and a `serving_default` signature: raw text or images in, probabilities out). It is
then loaded in a fresh Python process that imports TensorFlow and NumPy only, as a server would,
and must reproduce the evaluated test predictions on rows of every class.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.ensemble.export import EXPORT_CHECK_EXAMPLES, check_rows, compare_rows
from hpo.errors import ConfigError, HpoError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

__all__ = ["FORMATS", "SAVED_MODEL_NAME", "check_formats", "export_saved_model", "tree_sha256"]

SAVED_MODEL_NAME = "saved_model"
# What `hpo ensemble --format` may add to the `.keras` file it always writes.
FORMATS = ("savedmodel",)

# Run as `python -c` in a fresh process: TensorFlow's loader and the serving signature only.
_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
serve = loaded.signatures["serving_default"]
(name,) = serve.structured_input_signature[1]
outputs = serve(**{name: tf.constant(np.load(sys.argv[2], allow_pickle=False))})
np.save(sys.argv[3], next(iter(outputs.values())).numpy())
print(json.dumps({"input": name, "hpo_imported": "hpo" in sys.modules}))
"""


def check_formats(formats: Sequence[str], backend: str) -> None:
    """Refuses, before any work, an export format this process cannot write.

    Raises:
        ConfigError: A SavedModel was asked for off the TensorFlow backend.
    """
    if "savedmodel" in formats and backend != "tensorflow":
        raise ConfigError(
            f"--format savedmodel needs the TensorFlow backend, and this study's members run on "
            f"{backend}. Export the .keras ensemble (the default), or search with "
            '[training] backend = "tensorflow" to serve the ensemble with TensorFlow Serving.'
        )


def export_saved_model(
    model: keras.Model,
    folder: Path,
    raw: np.ndarray,
    labels: np.ndarray,
    expected: np.ndarray,
    tolerance: float,
    slope: np.ndarray | None,
) -> dict[str, Any]:
    """Writes the ensemble `model` as a SavedModel in `folder` and checks it.

    Args:
        model: The exported ensemble, whose `ensemble.keras` was checked.
        folder: Where the SavedModel goes (created; must not exist).
        raw, labels, expected: The test inputs as the export takes them, their labels and the
            evaluated ensemble's predictions.
        tolerance, slope: As `hpo.ensemble.export.check_export` allows.

    Returns:
        The report's entry: path, SHA-256 over the folder's files, the serving input's name and
        how closely it reproduced the evaluated predictions.

    Raises:
        HpoError: Loading or serving it failed, it imported hpo, or it disagrees.
    """
    model.export(str(folder), format="tf_saved_model", verbose=False)
    rows = check_rows(labels, EXPORT_CHECK_EXAMPLES)
    inputs = raw[rows]
    if inputs.dtype == object:
        inputs = np.asarray([str(text) for text in inputs])  # unicode, saved without pickle
    with tempfile.TemporaryDirectory(prefix="hpo-serve-") as scratch:
        given, served = Path(scratch) / "inputs.npy", Path(scratch) / "outputs.npy"
        np.save(given, inputs, allow_pickle=False)
        # A fresh process in an empty folder: nothing of hpo's on its path or in its modules.
        run = subprocess.run(
            [sys.executable, "-c", _SERVE, str(folder.resolve()), str(given), str(served)],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise HpoError(
                f"the SavedModel in {folder} did not load and serve in a fresh TensorFlow "
                f"process: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}"
            )
        info = json.loads(run.stdout.strip().splitlines()[-1])
        got = np.load(served)
    if info["hpo_imported"]:
        raise HpoError(f"loading the SavedModel in {folder} imported hpo; it must not need it.")
    return {
        "path": SAVED_MODEL_NAME,
        "sha256": tree_sha256(folder),
        "signature": "serving_default",
        "input": info["input"],
        "loaded_with": "tensorflow.saved_model.load, without hpo",
        **compare_rows(got, rows, labels, expected, tolerance, slope, "the SavedModel"),
    }


def tree_sha256(folder: Path) -> str:
    """One SHA-256 over a folder's files: each relative path, then its bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
