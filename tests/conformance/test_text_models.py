"""Users' text models, as they write them, through search, ensemble, export check and predict."""

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

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(__file__).with_name("text_models.py")
# The module of the user's own layers that `text_models.py` imports.
LAYERS = MODELS.with_name("keras_io_layers.py")
FAMILIES = {
    "functional_masked": "text_models:functional_masked",
    "functional_unmasked": "text_models:functional_unmasked",
    "sequential_unbuilt": "text_models:sequential_unbuilt",
    "sequential_built": "text_models:sequential_built",
    "subclassed_unbuilt": "text_models:subclassed_unbuilt",
    "subclassed_built": "text_models:subclassed_built",
    "declarations": "text_models:declarations",
    "own_loss": "text_models:own_loss",
    "fit_override": "text_models:FitOverride",
    "fixed_length": "text_models:fixed_length",
    "transformer": "text_models:transformer",
}
# What hpo must read from each family's model: (output, labels, padding).
EXPECTED = {
    "functional_masked": ("sigmoid", "sparse", "bucketed"),
    "functional_unmasked": ("sigmoid", "sparse", "fixed"),
    "sequential_unbuilt": ("softmax2", "sparse", "fixed"),
    "sequential_built": ("sigmoid", "sparse", "fixed"),
    "subclassed_unbuilt": ("logits", "sparse", "bucketed"),
    "subclassed_built": ("logits", "sparse", "bucketed"),
    "declarations": ("sigmoid", "sparse", "bucketed"),
    "own_loss": ("softmax2", "one_hot", "bucketed"),
    "fit_override": ("sigmoid", "sparse", "bucketed"),
    "fixed_length": ("sigmoid", "sparse", "fixed"),
    "transformer": ("softmax2", "sparse", "fixed"),
}


STUDY = """
name = "{name}"
n_trials = {n_trials}

[sampler]
seed = 5
startup_trials = 2

[pruner]
kind = "none"

[data]
path = "{data}"
val_size = 60

[training]
max_epochs = 2
patience = 1
chance_epochs = 0

[space]
family = {family_list}
vocab_size = [10000]
seq_len = [200]
batch_size = [32]

[families]
{families}
"""


def write_user_study(
    folder: Path, data: Path, families: dict[str, str], *, name: str = "users", n_trials: int = 0
) -> Path:
    """A study file beside a copy of `text_models.py` that searches `families`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS, folder / MODELS.name)
    shutil.copy(LAYERS, folder / LAYERS.name)
    path = folder / f"{name}.toml"
    path.write_text(
        STUDY.format(
            name=name,
            n_trials=n_trials or len(families),
            data=data,
            family_list=json.dumps(list(families)),
            families="\n".join(f'{k} = "{v}"' for k, v in families.items()),
        )
    )
    return path


def hpo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs the `hpo` command as a user does."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
def test_every_kind_of_text_model_searches_ensembles_exports_and_predicts(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study_file = write_user_study(tmp_path / "study", fake_imdb, FAMILIES)
    search = hpo("search", "--study", str(study_file))
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert f"{len(FAMILIES)} finished, 0 failed" in search.stdout

    config = load_study_config(study_file)
    trials = optuna.load_study(study_name="users", storage=config.storage_url).trials
    by_family = {t.params["family"]: t for t in trials}
    assert set(by_family) == set(FAMILIES)
    for family, (output, labels, padding) in EXPECTED.items():
        trial = by_family[family]
        assert trial.state == TrialState.COMPLETE, (family, trial.user_attrs)
        attrs = trial.user_attrs
        assert (attrs["output"], attrs["labels"], attrs["padding"]) == (output, labels, padding), (
            family,
            attrs.get("padding_reason"),
        )
    # KerasTuner's log grid holds floats; the Int reaches Optuna and build as an int.
    declared = by_family["declarations"].params
    assert type(declared["declarations/int_log_step"]) is int
    assert declared["declarations/int_log_step"] in (4, 8, 16, 32, 64)
    # One name in two scopes: each scope's declaration is its own parameter.
    kind = declared["declarations/kind"]
    assert ("declarations/width[kind=pool]" in declared) == (kind == "pool")
    assert ("declarations/width[kind=dense]" in declared) == (kind == "dense")
    # The overridden fit chose the batch size and capped the epochs at 1.
    fit = by_family["fit_override"]
    assert fit.params["fit_override/batch_size"] in (16, 32)
    assert fit.user_attrs["epochs"] == 1
    # Subclassed models cannot be costed before training: their epochs are measured.
    assert by_family["subclassed_unbuilt"].user_attrs["cost_estimate"].startswith("measured")
    assert by_family["sequential_unbuilt"].user_attrs["cost_estimate"] == "model"

    out = tmp_path / "ensemble"
    ensemble = hpo(
        "ensemble",
        "--study",
        str(study_file),
        "--top",
        str(len(FAMILIES)),
        "--method",
        "uniform",
        "--out",
        str(out),
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    # Every member is in the export, and the export reproduces the evaluated predictions.
    assert {m["family"] for m in report["members"]} == set(FAMILIES)
    assert report["export"]["max_abs_difference"] <= 1e-5
    assert report["export"]["checked_examples"] > 0

    # Added later, the SavedModel loads the members of the user's own classes as `predict` does.
    export = hpo(
        "export", "--ensemble", str(out), "--study", str(study_file), "--format", "savedmodel"
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert "saved_model" in json.loads((out / "report.json").read_text())["export"]

    texts = ["A great and wonderful film.", "Dull, boring and far too long."]
    predict = hpo("predict", "--ensemble", str(out), "--study", str(study_file), *texts)
    assert predict.returncode == 0, predict.stderr[-3000:]
    lines = predict.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, texts, strict=True):
        probability, label, shown = line.split("\t")
        assert 0.0 <= float(probability) <= 1.0 and label in ("negative", "positive")
        assert shown == text
