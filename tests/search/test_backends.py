"""The smoke study searched, ensembled and scored on JAX and PyTorch, with TensorFlow absent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpo.config import load_study_config

from ..conftest import write_study

ROOT = Path(__file__).resolve().parents[2]


def _installed(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{backend} is not installed; .ci/run installs it")
        pytest.skip(f"{backend} is not installed here")


def _without_tensorflow(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import tensorflow` fails, as on a machine without it."""
    shim = tmp_path / "no-tensorflow"
    shim.mkdir()
    (shim / "tensorflow.py").write_text("raise ImportError('TensorFlow is not installed here')\n")
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

    def hpo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hpo", *args],
            cwd=ROOT,
            env=env,
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
