"""Users' KerasTuner hypermodels searched on Optuna: end to end, and refused before any trial."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config import load_study_config

from ..conftest import write_study

ROOT = Path(__file__).resolve().parents[2]
HYPERMODELS = """
import keras
import keras_tuner
from keras import layers


def build(hp):
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 8, mask_zero=True)(inputs)
    if hp.Boolean("hidden"):
        x = layers.Dense(8, activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


class Odd(keras_tuner.engine.hyperparameters.HyperParameter):
    pass


def build_odd(hp):
    hp._retrieve(Odd(name="odd", default=1))
    return build(hp)
"""


def _study(tmp_path: Path, fake_imdb: Path, module: str, families: str, n_trials: int) -> Path:
    folder = tmp_path / "study"
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(HYPERMODELS)
    path = write_study(folder, fake_imdb, n_trials=n_trials, families=families)
    path.write_text(path.read_text() + "\n[families]\n" + f'odd = "{module}:build_odd"\n')
    return path


def _search(path: Path, fake_imdb: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo", "search", "--study", str(path), "--data", str(fake_imdb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_an_unsupported_hyperparameter_or_a_bad_path_exits_2_before_any_trial(
    fake_imdb: Path, tmp_path: Path
) -> None:
    path = _study(tmp_path / "odd", fake_imdb, "user_models_odd", '["odd"]', n_trials=2)
    result = _search(path, fake_imdb)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "hyperparameter 'odd' is a Odd" in result.stderr
    config = load_study_config(path)
    study = optuna.load_study(study_name="tiny", storage=config.storage_url)
    # Only the enqueued default trial exists, still waiting: none ran.
    assert {t.state for t in study.trials} <= {TrialState.WAITING}

    bad = write_study(tmp_path / "bad", fake_imdb)
    bad.write_text(bad.read_text() + '\n[families]\nmine = "no_such_module:build"\n')
    result = _search(bad, fake_imdb)
    assert result.returncode == 2
    assert "importing 'no_such_module' failed" in result.stderr
    assert not (tmp_path / "bad" / "tiny" / "study.db").exists()


@pytest.mark.slow
def test_the_keras_tuner_example_smoke_study_runs(fake_imdb: Path, tmp_path: Path) -> None:
    example = ROOT / "examples" / "keras_tuner"
    folder = tmp_path / "example"
    folder.mkdir()
    shutil.copy(example / "text_hypermodels.py", folder)
    study = folder / "imdb-kerastuner-smoke.toml"
    # The example as shipped, on the small synthetic data set instead of the IMDB subset.
    # Three of its four trials: the two families' defaults and one sampled.
    text = (example / "imdb-kerastuner-smoke.toml").read_text()
    assert "val_size = 1000\ntrain_size = 4000" in text and "n_trials = 4\n" in text
    text = text.replace("val_size = 1000\ntrain_size = 4000", "val_size = 60")
    study.write_text(text.replace("n_trials = 4\n", "n_trials = 3\n"))
    result = _search(study, fake_imdb)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 finished, 0 failed" in result.stdout
    config = load_study_config(study)
    trials = optuna.load_study(study_name=config.name, storage=config.storage_url).trials
    # The enqueued defaults try each family first.
    assert [t.params["family"] for t in trials[:2]] == ["bilstm", "pooled"]
    # Two hypermodels: every parameter carries its family's name, so the BiLSTM's own batch
    # size (declared in its fit) does not collide with hpo's.
    own = {name for name in trials[0].params if name.startswith("bilstm/")}
    assert own == {f"bilstm/{n}" for n in ("embedding_dim", "units", "dropout", "lr", "batch_size")}
    assert "pooled/hidden" in trials[1].params
    # hpo's training parameters are searched only where the model leaves them to hpo: the
    # BiLSTM compiles itself and passes its batch size, the pooled model does neither.
    training = {"optimizer", "learning_rate", "batch_size"}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            expected = set() if trial.params["family"] == "bilstm" else training
            assert training & set(trial.params) == expected, trial.params
    states = {t.state for t in trials}
    assert TrialState.COMPLETE in states and states <= {TrialState.COMPLETE, TrialState.PRUNED}
    ensemble = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "ensemble",
            "--study",
            str(study),
            "--top",
            "3",
            "--out",
            str(tmp_path / "ensemble"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    report = json.loads((tmp_path / "ensemble" / "report.json").read_text())
    assert report["export"]["checked_examples"] > 0
    assert {m["family"] for m in report["members"]} <= {"bilstm", "pooled"}
