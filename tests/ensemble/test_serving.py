"""The ensemble as a TensorFlow SavedModel, loaded the way TensorFlow Serving loads it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.ensemble import main
from hpo.ensemble.predict import predict
from hpo.ensemble.serving import check_formats, tree_sha256
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

# What a server does: TensorFlow's loader and the serving signature, nothing of hpo's.
SERVE = """
import json, sys
import tensorflow as tf

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
(name,) = serve.structured_input_signature[1]
out = next(iter(serve(**{name: tf.constant(sys.argv[2:])}).values())).numpy()
assert "hpo" not in sys.modules, "loading it imported hpo"
print(json.dumps({"input": name, "probabilities": out.reshape(len(sys.argv) - 2).tolist()}))
"""


@pytest.mark.slow
def test_a_saved_model_serves_the_evaluated_predictions_without_hpo(
    study_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "served"
    args = ["--study", str(study_copy), "--top", "2", "--out", str(out), "--format", "savedmodel"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    saved = report["export"]["saved_model"]
    assert saved["path"] == "saved_model" and (out / "saved_model" / "saved_model.pb").is_file()
    assert saved["sha256"] == tree_sha256(out / "saved_model")
    assert saved["checked_classes"] == 2 and saved["checked_examples"] > 0
    assert saved["max_abs_difference"] <= saved["max_tolerance"]

    reviews = ["A wonderful, moving film with superb acting.", "Dull, boring and far too long."]
    served = subprocess.run(
        [sys.executable, "-c", SERVE, str(out / "saved_model"), *reviews],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert answer["input"] == saved["input"]
    np.testing.assert_allclose(answer["probabilities"], predict(out, reviews), atol=1e-5)


def test_a_saved_model_off_tensorflow_is_refused_before_any_work() -> None:
    check_formats(["savedmodel"], "tensorflow")
    check_formats([], "jax")
    with pytest.raises(ConfigError, match=r"--format savedmodel needs the TensorFlow backend.*jax"):
        check_formats(["savedmodel"], "jax")
