"""The image task on a synthetic folder: cache, context, search -> ensemble -> export -> predict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from hpo.config import load_study_config
from hpo.data import images
from hpo.errors import ConfigError
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
