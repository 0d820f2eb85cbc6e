"""Which Keras backend and which GPU a study's processes use."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.backend import (
    Backend,
    backend_environment,
    callers_environment,
    compiles_per_shape,
    gpu_assignment,
    recorded_backend,
    resolve_backend,
    visible_gpus,
)
from hpo.config import load_study_config
from hpo.errors import ConfigError

from .conftest import run_user_script, write_study

ROOT = Path(__file__).resolve().parents[1]


def test_the_study_file_wins_then_keras_backend_then_tensorflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert resolve_backend(None) is Backend.TENSORFLOW
    monkeypatch.setenv("KERAS_BACKEND", "JAX")
    assert resolve_backend(None) is Backend.JAX
    assert resolve_backend(Backend.TORCH) is Backend.TORCH
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    with pytest.raises(ConfigError, match=r"KERAS_BACKEND must be one of .*got 'numpy'"):
        resolve_backend(None)
    study = tmp_path / "s.toml"
    study.write_text('[training]\nbackend = "torch"\n')
    assert load_study_config(study).training.backend is Backend.TORCH
    study.write_text('[training]\nbackend = "mxnet"\n')
    with pytest.raises(ConfigError, match=r"'training.backend' must be one of"):
        load_study_config(study)


def test_a_recorded_backend_wins_and_old_studies_were_tensorflow() -> None:
    assert recorded_backend({"training": {"backend": "jax"}}, Backend.TORCH) is Backend.JAX
    assert recorded_backend({"training": {}}, Backend.TORCH) is Backend.TENSORFLOW
    assert recorded_backend(None, Backend.TORCH) is Backend.TORCH


def _python(
    code: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`code` run by this Python in a process of its own (in `cwd`, with `env`, else this
    process's environment), its output captured."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )


def test_keras_loaded_with_another_backend_is_a_clear_error() -> None:
    code = (
        "import os; os.environ['KERAS_BACKEND'] = 'torch'\n"
        "import keras\n"
        "from hpo.backend import Backend, claim_backend\n"
        "claim_backend(Backend.TORCH)\n"
        "try:\n"
        "    claim_backend(Backend.JAX)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _python(code, ROOT)
    assert "ConfigError this study trains on jax, but Keras is already loaded here with torch" in (
        result.stdout
    ), result.stderr[-2000:]


def test_a_backend_outside_the_installed_packages_is_never_imported(tmp_path: Path) -> None:
    # An export's report.json names the backend its ensemble loads on: `python -m hpo.predict`
    # ran the working directory's jax.py (first on the import path), then a traceback.
    (tmp_path / "jax.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    code = (
        "import sys; sys.path.insert(0, '')\n"
        "from hpo.backend import Backend, use_backend\n"
        "try:\n"
        "    use_backend(Backend.JAX)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "print('keras' in sys.modules)\n"
    )
    result = _python(code, tmp_path)
    assert result.stdout.startswith(
        f"ConfigError this runs on Keras's jax backend, and jax is not installed here (a jax "
        f"at {tmp_path / 'jax.py'}, outside the installed packages, is never imported"
    ), result.stdout + result.stderr[-2000:]
    assert result.stdout.endswith("False\n") and not (tmp_path / "ran").exists()


def test_a_search_from_python_with_keras_loaded_on_another_backend_names_the_study_setting(
    fake_imdb: Path, tmp_path: Path
) -> None:
    """A script imports Keras first, on keras.json's backend (JAX), then runs hpo.search on a
    study file that names none: the search is TensorFlow's, as documented, and the message
    named only restarting on TensorFlow, a backend the user never asked for."""
    study = write_study(tmp_path, fake_imdb)
    code = (
        "import os; os.environ['KERAS_BACKEND'] = 'jax'\n"
        "import keras\n"
        "del os.environ['KERAS_BACKEND']\n"
        "import hpo\n"
        "try:\n"
        f"    hpo.search({str(study)!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _python(code, tmp_path)
    assert "ConfigError this study trains on tensorflow, but Keras is already loaded" in (
        result.stdout
    ), result.stderr[-2000:]
    assert 'Or, to search on jax, set backend = "jax" under [training]' in result.stdout


def test_a_raw_text_model_loaded_off_tensorflow_is_refused_naming_the_way(tmp_path: Path) -> None:
    """A text ensemble made on TensorFlow takes strings: on JAX hpo.load_model loaded it and
    predict then failed with JAX's "not a valid JAX array type"."""
    import keras

    vectorize = keras.layers.TextVectorization(vocabulary=["good", "bad"], output_mode="count")
    inputs = keras.Input(shape=(1,), dtype="string")
    outputs = keras.layers.Dense(1, activation="sigmoid")(vectorize(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "text.keras")
    code = (
        "import hpo\n"
        "try:\n"
        f"    hpo.load_model({str(tmp_path / 'text.keras')!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _python(code, tmp_path, {**os.environ, "KERAS_BACKEND": "jax"})
    assert "ConfigError " in result.stdout, result.stderr[-2000:]
    assert "takes raw text" in result.stdout and "Keras runs on jax" in result.stdout
    assert "KERAS_BACKEND=tensorflow, or score texts with hpo predict" in result.stdout


def test_keras_on_jax_loads_tensorflow_quietly_with_it() -> None:
    """Keras on JAX imports TensorFlow on its first calls (seeding): its C++ start-up lines
    reached stderr from an export of a JAX study, outside the quiet import of Keras."""
    code = (
        "import sys\n"
        "from hpo.backend import import_keras\n"
        "keras = import_keras()\n"
        "keras.utils.set_random_seed(0)\n"
        "print(keras.config.backend(), 'tensorflow' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = _python(code, ROOT, {**env, "KERAS_BACKEND": "jax"})
    assert result.stdout.split() == ["jax", "True"], result.stderr[-2000:]
    assert "oneDNN" not in result.stderr and "I0000" not in result.stderr, result.stderr


def test_gpus_are_read_from_cuda_visible_devices_and_shared_by_trials_per_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert visible_gpus() == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    assert gpu_assignment(["0", "2"], 1, 2) == ["0", "2"]
    assert gpu_assignment(["0"], 2, 2) == ["0", "0"]
    assert gpu_assignment(["0", "1"], 2, 4) == ["0", "0", "1", "1"]
    assert gpu_assignment([], 2, 3) == [None, None, None]


def test_a_trial_process_gets_its_backend_its_gpu_and_grows_its_memory() -> None:
    env = backend_environment(Backend.JAX, "1", threads=1)
    assert env["KERAS_BACKEND"] == "jax" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
    assert "CUDA_VISIBLE_DEVICES" not in backend_environment(Backend.TORCH)
    assert "XLA_FLAGS" not in backend_environment(Backend.JAX, threads=2)


def test_only_compiling_backends_get_the_width_ladder() -> None:
    assert compiles_per_shape("jax", gpu=False)
    assert compiles_per_shape("tensorflow", gpu=True)
    assert not compiles_per_shape("tensorflow", gpu=False)
    assert not compiles_per_shape("torch", gpu=True)


def test_the_callers_environment_is_put_back_when_the_outermost_call_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    with callers_environment():
        os.environ["KERAS_BACKEND"] = "torch"
        with callers_environment():  # a call within a call: the caller's is the outer one's
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        assert os.environ["KERAS_BACKEND"] == "torch"
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert "KERAS_BACKEND" not in os.environ
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_tensorflows_notices_are_dropped_while_a_call_runs_then_the_callers_level_is_back() -> None:
    # From Python, retracing notices (batches cut to their longest text come in many shapes)
    # filled a notebook's output, which the CLI drops without --verbose.
    import logging

    tensorflow = logging.getLogger("tensorflow")
    before = tensorflow.level
    tensorflow.setLevel(logging.INFO)
    try:
        with callers_environment():
            assert not tensorflow.isEnabledFor(logging.WARNING)
            assert tensorflow.isEnabledFor(logging.ERROR)
        assert tensorflow.level == logging.INFO
    finally:
        tensorflow.setLevel(before)


BACKEND_STUDY_SCRIPT = """
import os
import sys

import hpo

SET_FOR_TRIALS = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def changed(before):
    return sorted(k for k in {{*before, *os.environ}} if before.get(k) != os.environ.get(k))


if __name__ == "__main__":
    for name in SET_FOR_TRIALS:
        os.environ.pop(name, None)  # as the user's shell has them: unset
    with open("s.toml", "w") as study:
        study.write('name = "s"\\ntask = "images"\\nn_trials = 1\\n')
        study.write('data = {{ path = "{data}", val_size = 24 }}\\n')
        study.write('training = {{ max_epochs = 1, chance_epochs = 0, backend = "torch" }}\\n')
        study.write('space = {{ family = ["conv2d"], upscale = [1], blocks = [2, 2] }}\\n')
    before = dict(os.environ)
    summary = hpo.search("s.toml")
    print("finished", summary.finished, "failed", summary.failed)
    print("search changed", changed(before), "keras loaded", "keras" in sys.modules)
    trials = hpo.load_study("s.toml").optuna_study.trials
    print("trained on", [t.user_attrs.get("backend") for t in trials])
    hpo.ensemble("s.toml", top=1)  # loads Keras here, and Keras sets variables of its own
    print("ensemble changed", [k for k in changed(before) if k in SET_FOR_TRIALS])
"""


def test_a_search_on_another_backend_leaves_the_callers_environment_as_it_was(
    tmp_path: Path,
) -> None:
    """`hpo.search` of a study on PyTorch, from a process that had not loaded Keras, left
    `KERAS_BACKEND=torch` and `TF_CPP_MIN_LOG_LEVEL=2` in its `os.environ`: the caller's own
    `import keras` then loaded PyTorch, and its subprocesses inherited both. Its trials still
    train on PyTorch; the caller's environment is its own again when the search (and the
    ensemble) returns."""
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("CI"):
            pytest.fail("torch is not installed; .ci/run installs it")
        pytest.skip("torch is not installed here")
    from .tasks.test_images import write_images

    data = write_images(tmp_path / "data", {"train": 10, "test": 3})
    printed = run_user_script(tmp_path, BACKEND_STUDY_SCRIPT.format(data=data), timeout=300)
    lines = printed.splitlines()
    assert "finished 1 failed 0" in lines, printed
    assert "search changed [] keras loaded False" in lines, printed
    assert "trained on ['torch']" in lines, printed
    assert lines[-1] == "ensemble changed []", printed


def test_the_users_keras_backend_is_told_from_the_one_hpo_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # claim_backend sets $KERAS_BACKEND for the study's processes; a message about the user's
    # setting must read what the user set, before hpo wrote over it, or since.
    from hpo import backend

    monkeypatch.setattr(backend, "_claimed", None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    backend.claim_backend(backend.Backend.TENSORFLOW)
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    assert backend.given_backend_var() == ""  # unset, as the user left it
    monkeypatch.setenv("KERAS_BACKEND", "JAX")  # the user sets it since
    assert backend.given_backend_var() == "jax"
    backend.claim_backend(backend.Backend.TENSORFLOW)  # a later search in the same process
    assert backend.given_backend_var() == "jax"
