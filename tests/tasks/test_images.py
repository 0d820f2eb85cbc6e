"""The image task on a synthetic folder: cache, context, search -> ensemble -> export -> predict."""

from __future__ import annotations

import dataclasses
import logging
import tarfile
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

import hpo.tasks.images
from hpo.config import load_study_config
from hpo.data import images
from hpo.errors import ConfigError
from hpo.search import main
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
    # Found by the search before any work, from the folders' names, not by the ensemble
    # after the budget is spent.
    with pytest.raises(ConfigError, match=r"missing \['red'\], unknown \[\]"):
        task.prepare(config, None, search_space(task, config.space).shared)
    assert not config.cache_dir.exists()
    # An archive's test split is checked as the ensemble reads it.
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data, arcname="data")
    folder = task.prepare(config, str(archive), search_space(task, config.space).shared)
    with pytest.raises(ConfigError, match=r"missing \['red'\]"):
        task.load_test(config, str(archive), folder)


def test_a_folder_without_splits_gives_its_held_out_share_to_the_test_set_only(
    tmp_path: Path,
) -> None:
    data = write_images(tmp_path / "data", {"photos": 30}) / "photos"
    config = load_study_config(_study(tmp_path, data))
    task = get_task("images")
    folder = task.prepare(config, None, search_space(task, config.space).shared)
    trial = task.trial_data(folder, {})
    test = task.load_test(config, None, folder)
    assert len(trial.x_train) + len(trial.x_val) + len(test.y) == 90
    assert len(trial.x_val) == 24 and 3 <= len(test.y) <= 36
    assert sorted(set(test.y.tolist())) == [0, 1, 2]
    # No test image is among those the search reads.
    searched = {x.tobytes() for x in (*trial.x_train, *trial.x_val)}
    assert not [x for x in test.x if x.tobytes() in searched]


@pytest.mark.parametrize("layout", ["beside", "inside"])
def test_a_study_folder_in_its_own_data_folder_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    # The study's folder is the study file's folder and its name: a study file beside an image
    # folder of the same name, or inside it, would write the study among the images (and read
    # cache/, logs/ and trials/ back as class folders).
    data = write_images(tmp_path / "shapes", {"train": 6, "test": 2})
    folder, path = (tmp_path, str(data)) if layout == "beside" else (data, ".")
    before = set(data.rglob("*"))
    assert main(["--study", str(_study(folder, path))]) == 2
    err = capsys.readouterr().err
    where = "is its data folder" if layout == "beside" else "is inside its data folder"
    assert f"the study's folder {folder / 'shapes'} {where} {data}" in err
    assert ("Give the study another name" if layout == "beside" else "Move the study") in err
    written = {data / "shapes.toml"} if layout == "inside" else set()  # the study file itself
    assert set(data.rglob("*")) - before == written


def test_a_study_folder_in_a_data_folder_found_in_the_environment_is_refused_before_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_images(tmp_path / "shapes", {"train": 6, "test": 2})
    study = tmp_path / "shapes.toml"
    study.write_text(STUDY.replace('path = "{data}"\n', ""))
    monkeypatch.setenv("HPO_IMAGES_PATH", str(data))
    assert main(["--study", str(study)]) == 2
    assert f"the study's folder {data} is its data folder {data}" in capsys.readouterr().err
    assert not (data / "cache").exists() and not (data / "logs").exists()


def test_a_val_folder_is_the_validation_set_and_val_size_is_unused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A val/ folder beside train/ was never read: validation was cut from train/.
    data = write_images(tmp_path / "data", {"train": 10, "val": 3, "test": 2})
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data, arcname="data")
    config = load_study_config(_study(tmp_path, data))
    task = get_task("images")
    shared = search_space(task, config.space).shared
    val = images.read_split(data, "val", classes=CLASSES)
    for source in (str(archive), None):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            folder = task.prepare(config, source, shared)
        trial = task.trial_data(folder, {})
        assert len(trial.x_train) == 30 and np.array_equal(trial.x_val, val.x)
        assert np.array_equal(trial.y_val, val.y)
        assert "it is the validation set, and [data] val_size (24) is unused" in caplog.text
    # A cache prepared before val/ was read (validation cut from train/) is not this one.
    monkeypatch.setattr(hpo.tasks.images, "VAL_SPLIT_SETTINGS", {})
    assert task.prepare(config, None, shared) != folder
    monkeypatch.undo()
    assert task.prepare(config, None, shared) == folder
    # train_size still takes a subset of train/; the test split is held out of train/ where
    # there is no test/.
    for path in (data / "test").rglob("*.png"):
        path.unlink()
    for name in CLASSES:
        (data / "test" / name).rmdir()
    (data / "test").rmdir()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train_size=12))
    folder = task.prepare(config, None, shared)
    trial, test = task.trial_data(folder, {}), task.load_test(config, None, folder)
    assert len(trial.x_train) == 12 and np.array_equal(trial.x_val, val.x)
    assert sorted(set(test.y.tolist())) == [0, 1, 2] and len(test.y) <= 6
    # A val/ without one of train's classes is refused before any work.
    for path in (data / "val" / "red").iterdir():
        path.unlink()
    with pytest.raises(ConfigError, match=r"data/val: .*missing \['red'\], unknown \[\]"):
        task.prepare(config, None, shared)


def test_data_without_a_val_folder_keep_their_cache_key(image_folder: Path, tmp_path: Path) -> None:
    from hpo.tasks.images import _cache

    config = load_study_config(_study(tmp_path, image_folder))
    _, settings = _cache(config, image_folder, name="images")
    assert "val_split" not in settings and settings["val_size"] == 24


def test_data_of_a_held_out_test_split_are_prepared_again_under_its_new_files(
    tmp_path: Path,
) -> None:
    from hpo.tasks.images import _cache

    data = write_images(tmp_path / "data", {"photos": 10}) / "photos"
    config = load_study_config(_study(tmp_path, data))
    # A cache of a split held out among every file (a README.md among them) is not reused.
    _, settings = _cache(config, data, name="images")
    assert settings["held_out_files"] == images.HELD_OUT_FILES == 2


def test_a_class_too_small_after_the_held_out_test_split_is_named_so(tmp_path: Path) -> None:
    data = write_images(tmp_path / "data", {"photos": 10}) / "photos"
    for path in sorted((data / "red").iterdir())[2:]:
        path.unlink()
    config = load_study_config(_study(tmp_path, data))
    task = get_task("images")
    with pytest.raises(ConfigError, match=r"'red' \(1\), counted after the test split was held"):
        task.prepare(config, None, search_space(task, config.space).shared)
