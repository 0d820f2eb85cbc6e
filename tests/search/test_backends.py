"""The smoke study searched, ensembled and scored on JAX and PyTorch, with TensorFlow absent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import optuna
import pytest

from hpo.config import load_study_config
from hpo.ensemble.export_command import main as export_main

from ..conftest import write_study

ROOT = Path(__file__).resolve().parents[2]
SERVED = ["--format", "savedmodel", "onnx"]


def _installed(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{backend} is not installed; .ci/run installs it")
        pytest.skip(f"{backend} is not installed here")


# Python's path finder, blind to TensorFlow: `import tensorflow` fails as a missing package
# does, `find_spec` finds none, and `sys.modules` never names it (Keras checks there).
_NO_TENSORFLOW = """
import sys
from importlib.machinery import PathFinder


class _WithoutTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            return None
        return super().find_spec(name, path, target)


sys.meta_path = [_WithoutTensorFlow if f is PathFinder else f for f in sys.meta_path]
"""


def _without_tensorflow(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import tensorflow` fails and `importlib.util.find_spec`
    finds no TensorFlow, as on a machine without it (every Python process it starts runs
    `sitecustomize` first)."""
    shim = tmp_path / "no-tensorflow"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_NO_TENSORFLOW)
    return {**os.environ, "PYTHONPATH": str(shim)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_smoke_study_runs_end_to_end_without_tensorflow(
    backend: str, fake_imdb: Path, tmp_path: Path
) -> None:
    _installed(backend)
    env = _without_tensorflow(tmp_path)
    study = write_study(
        tmp_path / "study",
        fake_imdb,
        n_trials=3,
        families='["conv1d", "sepconv1d", "ngram"]',
    )
    study.write_text(
        study.read_text().replace("[training]\n", f'[training]\nbackend = "{backend}"\n')
    )

    def hpo(*args: str, tensorflow: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hpo", *args],
            cwd=ROOT,
            env=dict(os.environ) if tensorflow else env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    search = hpo("search", "--study", str(study))
    assert search.returncode == 0, search.stdout[-2000:] + search.stderr[-3000:]
    assert f"on {backend}" in search.stdout and "3 finished, 0 failed" in search.stdout
    config = load_study_config(study)
    trials = optuna.load_study(study_name="tiny", storage=config.storage_url).trials
    assert {t.user_attrs["backend"] for t in trials} == {backend}
    assert {t.params["family"] for t in trials} == {"conv1d", "sepconv1d", "ngram"}
    assert study.parent.joinpath("tiny", "study.db").is_file()

    out = tmp_path / "ensemble"
    ensemble = hpo("ensemble", "--study", str(study), "--top", "3", "--out", str(out))
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == backend
    assert report["export"]["max_abs_difference"] <= 1e-5
    # Without TensorFlow the export takes token ids; the tokenizer beside it reads raw text.
    assert (out / "tokenizer.json").is_file()

    predict = hpo("predict", "--ensemble", str(out), "A wonderful film.", "Dull and boring.")
    assert predict.returncode == 0, predict.stderr[-3000:]
    lines = predict.stdout.strip().splitlines()
    assert [line.split("\t")[2] for line in lines] == ["A wonderful film.", "Dull and boring."]
    assert all(0 <= float(line.split("\t")[0]) <= 1 for line in lines)

    # TensorFlow writes the served formats: without it they are refused before any work...
    refused = hpo("export", "--ensemble", str(out), "--study", str(study), "--format", "onnx")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "is written by TensorFlow, which is not installed here" in refused.stderr
    # ...and where it is installed, a process on it loads the models made on `backend`: `hpo
    # export` of a built ensemble (JAX), or `hpo ensemble --format` (PyTorch). The export runs
    # in this process, which is on TensorFlow (its fork server, started once for the suite's
    # searches, not once per command); the ensemble, which builds on PyTorch, in its own.
    assert keras.config.backend() == "tensorflow"
    if backend == "jax":
        assert export_main(["--ensemble", str(out), "--study", str(study), *SERVED]) == 0
    else:
        out = tmp_path / "ensemble-served"
        served = ("ensemble", "--study", str(study), "--top", "3", "--out", str(out))
        exported = hpo(*served, *SERVED, tensorflow=True)
        assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-3000:]
    entry = json.loads((out / "report.json").read_text())["export"]
    assert entry["saved_model"]["input_kind"] == entry["onnx"]["input_kind"] == "token ids"
    assert entry["saved_model"]["max_abs_difference"] <= 1e-5
    assert entry["onnx"]["max_abs_difference"] <= 1e-5
    assert (out / "saved_model").is_dir() and (out / "ensemble.onnx").is_file()
    # A trial's SavedModel is written on TensorFlow; its export takes the study's token ids and
    # records the study's backend, as a trial exported as .keras alone does.
    trial_out = tmp_path / "trial0"
    trial = ["--study", str(study), "--trial", "0", "--format", "savedmodel"]
    assert export_main([*trial, "--out", str(trial_out)]) == 0
    report = json.loads((trial_out / "report.json").read_text())
    assert (report["backend"], report["trained_on"]) == (backend, backend)
    assert report["export"]["saved_model"]["input_kind"] == "token ids"
