"""Image classification: labelled images in class folders, CIFAR-10 by default.

Two tasks share this module: `cifar10` (CIFAR-10, found through $HPO_CIFAR10_PATH or downloaded)
and `images` (any folder or archive in the `<split>/<class>/<image>` layout, or a folder of class
folders whose test split is held out, found through `--data`, $HPO_IMAGES_PATH or the study
file). Images are decoded once per study and cached as
uint8 arrays; models take raw uint8 images and do their own resizing, augmentation and scaling,
so a trial's inputs, the test set and the exported ensemble's inputs are the same arrays.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution

from hpo.data import array_cache, image_cache, images, stratify
from hpo.data.holdout import HOLDOUT_RULES
from hpo.data.layout import VAL_SPLIT_SETTINGS, check_split_classes, note_val_split
from hpo.models import conv2d, sepconv2d
from hpo.space import fit_value
from hpo.tasks._base import Task, TestSet, TrialData, source_settings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import keras

    from hpo.config import StudyConfig
    from hpo.space import Space

__all__ = ["CIFAR10", "IMAGES"]

_log = logging.getLogger(__name__)

SPACE: Space = {
    # Resize inside the model: "Deep Learning with Python" feeds CIFAR-10 at 64 px.
    "upscale": CategoricalDistribution([1, 2]),
    "augment": CategoricalDistribution(["none", "flip", "flip_translate"]),
}
DEFAULTS = {"upscale": 1, "augment": "flip"}


def _locate(config: StudyConfig, data_arg: str | None, *, env_var: str, download: bool) -> Path:
    return images.locate_images(data_arg, config.data.path, env_var=env_var, download=download)


def _cache(config: StudyConfig, source: Path, *, name: str) -> tuple[Path, dict[str, Any]]:
    """The image cache's folder and the settings that key it, from the data's file sizes and
    times alone (nothing is read): the source and every setting that changes its content."""
    settings = {**source_settings(config, source), "image_size": config.data.image_size}
    if not images.has_test_split(source):
        settings["test_fraction"] = config.data.test_fraction
        settings["holdout_rules"] = HOLDOUT_RULES
        settings["held_out_files"] = images.HELD_OUT_FILES
    if images.has_val_split(source):
        settings.update(VAL_SPLIT_SETTINGS)
    return array_cache.cache_folder(config.cache_dir, name, settings), settings


def _cache_folder(config: StudyConfig, source: Path, space: Space, *, name: str) -> Path:
    return _cache(config, source, name=name)[0]


def _prepare(
    config: StudyConfig,
    data_arg: str | None,
    space: Space,
    *,
    name: str,
    locate: Any,
) -> Path:
    """Decodes the training images once per study, splits off validation (or reads the data's
    own val/ split), caches the arrays (in `_cache`'s folder).

    Returns:
        The cache folder, for `trial_data`.
    """
    source = locate(config, data_arg)
    folder, settings = _cache(config, source, name=name)
    check_split_classes(source)
    if array_cache.cached(folder):
        return folder
    _log.info("decoding %s (cache miss: %s)", source, folder)
    size = tuple(config.data.image_size) if config.data.image_size else None
    train = images.read_split(
        source,
        "train",
        image_size=size,  # type: ignore[arg-type]
        test_fraction=config.data.test_fraction,
    )
    if images.has_val_split(source):
        note_val_split(source, config.data.val_size)
        # At train's size, as the test split is read: `image_size` where set, else theirs.
        height, width = train.x.shape[1:3]
        val = images.read_split(source, "val", image_size=(height, width), classes=train.classes)
        train_index = np.arange(len(train.y))
        x_val, y_val, skipped = val.x, val.y, train.skipped + val.skipped
    else:
        train_index, val_index = stratify.stratified_split(
            train.y,
            config.data.val_size,
            config.data.seed,
            train.classes,
            held_out=not images.has_test_split(source),
        )
        x_val, y_val, skipped = train.x[val_index], train.y[val_index], train.skipped
    if config.data.train_size:
        train_index = stratify.stratified_subset(
            train.y, train_index, config.data.train_size, config.data.seed
        )
    splits = image_cache.ImageSplits(
        x_train=train.x[train_index],
        y_train=train.y[train_index],
        x_val=x_val,
        y_val=y_val,
        classes=train.classes,
        skipped=skipped,
    )
    image_cache.save_cached(folder, splits, settings)
    return folder


@functools.lru_cache(maxsize=2)
def _load(folder: Path) -> image_cache.ImageSplits:
    splits = image_cache.load_cached(folder)
    if splits is None:
        raise FileNotFoundError(f"no decoded images in {folder}; run the search to prepare it")
    return splits


def trial_data(folder: Path, params: Mapping[str, Any]) -> TrialData:
    """Every trial trains on the cached images as they are; its model resizes them."""
    splits = _load(folder)
    return TrialData(splits.x_train, splits.y_train, splits.x_val, splits.y_val)


def _load_test(config: StudyConfig, data_arg: str | None, folder: Path, *, locate: Any) -> TestSet:
    """Reads the test images, in the training split's classes and size.

    Only the ensemble's final evaluation calls this; the search never reads the test set.
    """
    splits = _load(folder)
    source = locate(config, data_arg)
    test = images.read_split(
        source,
        "test",
        image_size=splits.x_train.shape[1:3],
        classes=splits.classes,
        test_fraction=config.data.test_fraction,
    )
    return TestSet(raw=test.x, x=test.x, y=test.y, source=source)


def member_inputs(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Members read the images as stored."""
    return x


def build_context(folder: Path) -> dict[str, Any]:
    """Models are built for the data's classes and image shape."""
    splits = _load(folder)
    return {"classes": len(splits.classes), "image_shape": tuple(splits.x_train.shape[1:])}


def class_names(folder: Path) -> list[str]:
    """The class folders' names, in label order."""
    return list(_load(folder).classes)


def export_preprocessing(folder: Path, params: Mapping[str, Any], backend: str) -> tuple[Any, Any]:
    """Nothing between raw images and a member, on any backend: one shared identity layer."""
    from keras import layers

    return None, layers.Identity()


def raw_input(folder: Path, backend: str) -> Any:
    """A Keras input of uint8 images of the data's size, on any backend."""
    import keras

    return keras.Input(shape=build_context(folder)["image_shape"], dtype="uint8", name="image")


def validation(folder: Path) -> TestSet:
    """The validation images as stored: models and exports take the same uint8 arrays."""
    splits = _load(folder)
    return TestSet(raw=splits.x_val, x=splits.x_val, y=splits.y_val, source=folder)


def dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    seed: int | None = None,
    *,
    bucketed: bool = True,
    weights: np.ndarray | None = None,
) -> Any:
    """A dataset of batches (`hpo.data.batches`: any backend); with a seed, shuffled anew every
    epoch, else in order; with `weights` (in-memory arrays' sample weights), `(x, y, w)`.

    Images are never padded: `bucketed` is accepted for the task interface and changes nothing.
    """
    from hpo.data.batches import epoch_batches
    from hpo.data.batching import fixed_plan

    def plan(epoch: int) -> list[np.ndarray]:
        rng = None if seed is None else np.random.default_rng([seed, epoch])
        return fixed_plan(len(x), batch_size, rng)

    return epoch_batches(x, y, plan, weights=weights)


def predict(
    model: keras.Model, x: np.ndarray, batch_size: int = 512, *, bucketed: bool = True
) -> np.ndarray:
    """Class probabilities `[n, classes]`, in the order of `x` (`bucketed` changes nothing)."""
    return np.asarray(model.predict(dataset(x, None, batch_size), verbose=0))


def cost_shape(params: Mapping[str, Any]) -> tuple[int, ...]:
    """Models are costed at the stored image shape (they resize inside)."""
    return tuple(params["image_shape"])


def epoch_examples(x: np.ndarray, batch_size: int, params: Mapping[str, Any]) -> float:
    """Every image is computed at full size."""
    return float(len(x))


def _task(name: str, env_var: str, download: bool) -> Task:
    locate = functools.partial(_locate, env_var=env_var, download=download)
    return Task(
        name=name,
        families={"sepconv2d": sepconv2d, "conv2d": conv2d},
        space=SPACE,
        defaults={key: fit_value(SPACE[key], value) for key, value in DEFAULTS.items()},
        locate=locate,
        fingerprint=image_cache.fingerprint,
        prepare=functools.partial(_prepare, name=name, locate=locate),
        cache_folder=functools.partial(_cache_folder, name=name),
        trial_data=trial_data,
        load_test=functools.partial(_load_test, locate=locate),
        member_inputs=member_inputs,
        build_context=build_context,
        class_names=class_names,
        export_preprocessing=export_preprocessing,
        raw_input=raw_input,
        validation=validation,
        dataset=dataset,
        predict=predict,
        cost_shape=cost_shape,
        epoch_examples=epoch_examples,
        # hpo's families resize and augment inside the model; a hypermodel does its own.
        model_space=frozenset(SPACE),
    )


CIFAR10 = _task("cifar10", images.CIFAR10_ENV_VAR, download=True)
IMAGES = _task("images", images.IMAGES_ENV_VAR, download=False)
