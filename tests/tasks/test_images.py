"""The image task on a synthetic folder: cache, context, search -> ensemble -> export -> predict."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from hpo.config import load_study_config
from hpo.data import images
from hpo.ensemble import build_ensemble
from hpo.ensemble import predict as predict_module
from hpo.ensemble.weighting import Method
from hpo.errors import ConfigError
from hpo.search import run_search
from hpo.study import search_space
from hpo.tasks import get_task

if TYPE_CHECKING:
    from pathlib import Path

CLASSES = ["blue", "green", "red"]
STUDY = """
name = "shapes"
task = "images"
n_trials = 3
enqueue_defaults = true

[sampler]
seed = 3
startup_trials = 2

[pruner]
kind = "none"

[data]
path = "{data}"
val_size = 24
seed = 0

[training]
max_epochs = 4
patience = 2
chance_epochs = 0

[space]
upscale = [1]
augment = ["none"]
blocks = [2, 2]
filters = [16]
batch_norm = [true]
dropout = [0.0, 0.1]
learning_rate = [0.003, 0.01]
batch_size = [32]
"""


def write_images(root: Path, per_class: dict[str, int], size: int = 12, seed: int = 0) -> Path:
    """A `<split>/<class>/<n>.png` folder whose classes differ by their dominant colour."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 90, (size, size, 3))
                pixels[..., 2 - label] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("shapes") / "data", {"train": 40, "test": 10})


def _study(folder: Path, data: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shapes.toml"
    path.write_text(STUDY.format(data=data))
    return path


def test_prepare_caches_a_stratified_split_and_reuses_it(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_study_config(_study(tmp_path, image_folder))
    task = get_task("images")
    shared = search_space(task, config.space).shared
    folder = task.prepare(config, None, shared)
    data = task.trial_data(folder, {})
    assert data.x_train.shape == (96, 12, 12, 3) and data.x_train.dtype == np.uint8
    assert len(data.x_val) == 24
    assert np.bincount(data.y_val).tolist() == [8, 8, 8]
    assert task.class_names(folder) == CLASSES
    assert task.build_context(folder) == {"classes": 3, "image_shape": (12, 12, 3)}

    # A second prepare reads nothing: the cache answers.
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached split was decoded again")

    monkeypatch.setattr(images, "read_split", fail)
    assert task.prepare(config, None, shared) == folder


def test_a_test_split_missing_a_class_is_an_error(image_folder: Path, tmp_path: Path) -> None:
    data = write_images(tmp_path / "data", {"train": 20, "test": 4})
    for path in (data / "test" / "red").iterdir():
        path.unlink()
    (data / "test" / "red").rmdir()
    config = load_study_config(_study(tmp_path, data))
    task = get_task("images")
    folder = task.prepare(config, None, search_space(task, config.space).shared)
    with pytest.raises(ConfigError, match=r"missing \['red'\]"):
        task.load_test(config, None, folder)


def test_search_ensemble_export_and_predict_on_images(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(_study(tmp_path, image_folder))
    summary = run_search(config, progress=False)
    assert summary.finished == 3
    import optuna

    from hpo.store import open_storage

    study = optuna.load_study(
        study_name="shapes", storage=open_storage(config.storage_url, create=False)
    )
    families = {t.params["family"] for t in study.trials}
    assert families == {"sepconv2d", "conv2d"}
    out = tmp_path / "ensemble"
    result = build_ensemble(config, study, top=3, method=Method.CARUANA, out_dir=out)
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == CLASSES
    ensemble = report["test"]["ensemble"]
    assert set(ensemble) == {"accuracy", "top3_accuracy", "log_loss", "ece", "per_class_accuracy"}
    assert ensemble["top3_accuracy"] == 1.0  # three classes
    assert set(ensemble["per_class_accuracy"]) == set(CLASSES)
    assert ensemble["accuracy"] > 0.6  # the colours are easy; chance is 1/3
    assert result.report["export"]["checked_classes"] == 3

    # The export, from raw uint8 images, reproduces the evaluated test predictions.
    test = get_task("images").load_test(config, None, get_task("images").prepare(config, None, {}))
    saved = np.load(out / "test_predictions.npy")
    assert saved.shape == (30, 3)
    np.testing.assert_allclose(predict_module.predict(out, list(test.raw)), saved, atol=1e-5)

    # `hpo predict` names the top class per file; a non-image file is an error for that file.
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    red = image_folder / "test" / "red" / "000.png"
    capsys.readouterr()
    code = predict_module.main(["--ensemble", str(out), str(red), str(bad)])
    captured = capsys.readouterr()
    assert code == 1
    label, probability, name = captured.out.strip().split("\t")
    assert name == str(red) and label in CLASSES and 1 / 3 < float(probability) <= 1
    assert f"{bad}: not an image file" in captured.err
