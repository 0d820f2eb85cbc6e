"""Users' image models and KerasTuner's HyperXception (a class, and an instance as its docs build
it), unmodified, end to end."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config import load_study_config

from ..tasks.test_images import write_images
from . import image_models
from .test_text_models import hpo

if TYPE_CHECKING:
    from pathlib import Path

STUDY = """
name = "shapes"
task = "images"
n_trials = 3

[families]
own = "image_models:own_preprocessing"
# A HyperModel class, made with the data's input_shape and classes (HyperResNet alike: it
# takes the same arguments, and trains for a minute where this takes seconds).
hyper = "keras_tuner.applications:HyperXception"
xception = "image_models:xception"

[sampler]
seed = 3
startup_trials = 2

[pruner]
kind = "none"

[data]
path = "{data}"
val_size = 24

[training]
max_epochs = 1
patience = 1
chance_epochs = 0

[space]
family = ["own", "hyper", "xception"]
batch_size = [32]
# KerasTuner's `hyperparameters=`: the smallest of their spaces, to fit a CPU test.
"hyper/num_residual_blocks" = [2, 2]
"hyper/conv2d_num_filters" = [32]
"xception/num_residual_blocks" = [2, 3]
"xception/sep_num_filters" = [128, 128]
"xception/conv2d_num_filters" = [32]
"""


@pytest.mark.slow
def test_image_models_and_keras_tuner_applications_search_ensemble_and_predict(
    tmp_path: Path,
) -> None:
    data = write_images(tmp_path / "data", {"train": 32, "test": 8}, size=32)
    (data / "train" / "red" / ".DS_Store").write_bytes(b"\x00\x01")
    (data / "train" / "green" / "broken.png").write_bytes(b"not a png")
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(image_models.__file__, folder / "image_models.py")
    study_file = folder / "shapes.toml"
    study_file.write_text(STUDY.format(data=data))

    search = hpo("search", "--study", str(study_file))
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    # The data are read in a child process whose output goes to logs/prepare.log; its
    # warnings reach the terminal too.
    # The broken one; .DS_Store, a hidden file, is no image to count.
    assert "skipped 1 unreadable or non-image files (or images over" in search.stderr
    assert "e.g. green/broken.png" in search.stderr
    config = load_study_config(study_file)
    trials = optuna.load_study(study_name="shapes", storage=config.storage_url).trials
    by_family = {t.params["family"]: t for t in trials}
    assert set(by_family) == {"own", "hyper", "xception"}
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs for t in trials]
    # KerasTuner's applications compile themselves with categorical cross-entropy: one-hot.
    assert by_family["hyper"].user_attrs["labels"] == "one_hot"
    assert by_family["xception"].user_attrs["labels"] == "one_hot"
    assert by_family["own"].user_attrs["labels"] == "sparse"
    # Their optimizer and learning rate clash with hpo's names, so they carry the family's.
    assert by_family["hyper"].params["hyper/num_residual_blocks"] == 2
    assert by_family["hyper"].params["hyper/conv2d_num_filters"] == 32
    assert "hyper/learning_rate" in by_family["hyper"].params

    out = tmp_path / "ensemble"
    ensemble = hpo(
        "ensemble",
        "--study",
        str(study_file),
        "--top",
        "3",
        "--method",
        "uniform",
        "--out",
        str(out),
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {m["family"] for m in report["members"]} == {"own", "hyper", "xception"}
    assert report["export"]["max_abs_difference"] <= 1e-5

    # One image, then a folder: its images, in order; its other files (as a camera or Windows
    # leaves them) are skipped and counted, hidden ones left out.
    image = next((data / "test" / "red").iterdir())
    (data / "test" / "red" / "Thumbs.db").write_bytes(bytes(64))
    (data / "test" / "red" / "._a.png").write_bytes(bytes(64))
    red = sorted(
        p for p in (data / "test" / "red").iterdir() if p.suffix == ".png" and p.name[0] != "."
    )
    predict = hpo("predict", "--ensemble", str(out), str(image), str(data / "test" / "red"))
    assert predict.returncode == 0, predict.stderr[-3000:]
    lines = [line.split("\t") for line in predict.stdout.strip().splitlines()]
    label, probability, name = lines[0]
    assert label in ("blue", "green", "red") and 0 <= float(probability) <= 1
    assert name == str(image)
    assert [line[2] for line in lines[1:]] == [str(p) for p in red]
    assert "skipped 1 file(s) in the folders given that are not images" in predict.stderr
