"""Classification (or regression) of arrays given in memory (`hpo.Tuner`): the study's copy,
memory-mapped.

`hpo.Tuner.search(x, y, validation_data=...)` writes the four arrays once per study into the
study's folder, as `.npy` files named by a fingerprint of their contents (`save_study_arrays`);
each trial process memory-maps them, so a trial reads the batches it trains on and no process
holds a copy of its own. Labels are class indices (binary or multiclass, like the other tasks),
or regression targets (float32 `[n]` or `[n, outputs]`, `hpo.data.in_memory.labels_or_targets`).
There is no test set in the study: the ensemble is evaluated on test data the user gives
(`Ensemble.evaluate(x_test, y_test)`), and only then.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.data import array_cache
from hpo.data.in_memory import is_targets
from hpo.data.inputs import input_specs, keras_inputs, packed
from hpo.errors import ConfigError
from hpo.tasks import images
from hpo.tasks._base import Task, TestSet, TrialData

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hpo.config import StudyConfig
    from hpo.space import Space

__all__ = ["ARRAYS", "ARRAY_NAMES", "CONTEXT_NAMES", "save_study_arrays"]

ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val")
WEIGHTS_NAME = "w_train"
# What `build_context` may give every model, read with `hp.get(name)`: the labels' classes, or
# the regression targets' outputs, and the inputs' shape, or each input's by name.
CONTEXT_NAMES = ("classes", "targets", "input_shape", "input_shapes")
_log = logging.getLogger(__name__)


def save_study_arrays(
    cache_dir: Path,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    w_train: np.ndarray | None = None,
    classes: int = 0,
) -> Path:
    """Writes the arrays once per study (a folder named by their fingerprint) and returns it.

    Arrays already written by an earlier run of the same study are not written again, nor
    are the same examples in another order (`_same_examples`): that earlier copy is returned.
    `w_train`, the training examples' weights, is written (and fingerprinted) when given.
    Class labels make `classes` classes, or more where a label's id needs them (the model's
    output may have room for classes the data lacks: `WiderOutput`).
    """
    arrays = dict(zip(ARRAY_NAMES, (x_train, y_train, x_val, y_val), strict=True))
    if w_train is not None:
        arrays[WEIGHTS_NAME] = w_train
    meta: dict[str, Any] = {"task": "arrays"}
    if is_targets(y_train):
        meta["targets"] = 1 if y_train.ndim == 1 else int(y_train.shape[1])
    else:
        meta["classes"] = max(int(max(y_train.max(), y_val.max())) + 1, classes)
    fingerprint = array_cache.fingerprint(arrays, meta)
    folder = cache_dir / f"arrays-{fingerprint}"
    if array_cache.cached(folder):
        return folder
    earlier = _same_examples(cache_dir, arrays, meta)
    if earlier is not None:
        return earlier
    array_cache.save_arrays(folder, arrays, {**meta, "fingerprint": fingerprint})
    return folder


def _examples(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str | None:
    # Which rows are training and which validation examples decides what trials learn and are
    # scored on (a `validation_split` of reshuffled data cuts other rows), their order nothing:
    # trials shuffle the training set each epoch and score the whole validation set.
    train = [arrays[name] for name in ("x_train", "y_train", WEIGHTS_NAME) if name in arrays]
    groups = {"train": train, "val": [arrays["x_val"], arrays["y_val"]]}
    return array_cache.unordered_fingerprint(groups, {k: meta[k] for k in sorted(meta)})


def _same_examples(
    cache_dir: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path | None:
    """The study's copy of the same examples as `arrays` in another order, if it has one.

    Running the same code again (a notebook cell) with an unseeded `Dataset.shuffle` gives the
    same examples reordered, so other arrays and another fingerprint, and the study, whose
    trials recorded the first copy's, would refuse them as other data. The first copy serves
    instead: its validation rows stay in the order of the earlier trials' predictions. Only
    looked for when the exact copy is missing, so a study's first search hashes nothing more.
    """
    earlier = [f for f in sorted(cache_dir.glob("arrays-*")) if array_cache.cached(f)]
    if not earlier:
        return None
    given = _examples(arrays, meta)
    if given is None:
        return None
    for folder in earlier:
        found = {k: v for k, v in _meta(folder).items() if k != "fingerprint"}
        if found != dict(meta):
            continue
        files = (folder / f"{name}.npy" for name in (*ARRAY_NAMES, WEIGHTS_NAME))
        copy = {f.stem: np.load(f, mmap_mode="r") for f in files if f.is_file()}
        if _examples(copy, found) == given:
            _log.info("the same examples as %s in another order: that copy is used", folder)
            return folder
    return None


def locate(config: StudyConfig, data_arg: str | None) -> Path:
    """The folder `save_study_arrays` wrote: the search's record of it, else `data.path`."""
    given = data_arg or config.data.path
    folder = Path(given) if given else None
    if folder is None or not (folder / array_cache.META_NAME).is_file():
        raise ConfigError(
            f"study {config.name!r} trains on arrays that hpo.Tuner.search(x, y, ...) writes "
            f"into the study's folder, and they are not there ({folder}). Run the Tuner's "
            f"search again with the same data."
        )
    return folder


def prepare(config: StudyConfig, data_arg: str | None, space: Space) -> Path:
    """Nothing to prepare: the Tuner wrote the arrays before the search."""
    return locate(config, data_arg)


def cache_folder(config: StudyConfig, source: Path, space: Space) -> Path:
    """The arrays' folder is their source (`locate`'s)."""
    return source


@functools.lru_cache(maxsize=2)
def _meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / array_cache.META_NAME).read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=2)
def _load(folder: Path) -> TrialData:
    array_cache.mark_used(folder)
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAY_NAMES}
    weights = folder / f"{WEIGHTS_NAME}.npy"
    w_train = np.load(weights, mmap_mode="r") if weights.is_file() else None
    return TrialData(**arrays, w_train=w_train)


def fingerprint(folder: Path) -> str:
    """The arrays' fingerprint, computed once as they were written."""
    return str(_meta(folder)["fingerprint"])


def trial_data(folder: Path, params: Mapping[str, Any]) -> TrialData:
    """The study's arrays, memory-mapped (read-only): every trial trains on them as they are."""
    return _load(folder)


def validation(folder: Path) -> TestSet:
    """The validation arrays, as models and exports take them."""
    data = _load(folder)
    return TestSet(raw=data.x_val, x=data.x_val, y=data.y_val, source=folder)


def load_test(config: StudyConfig, data_arg: str | None, folder: Path) -> TestSet:
    """Raises: the study holds no test set; the user's is given to the ensemble's `evaluate`."""
    raise ConfigError(
        f"study {config.name!r} was searched by hpo.Tuner on arrays, and holds no test set. "
        f"Evaluate its ensemble on yours: tuner.ensemble(top=5).evaluate(x_test, y_test)."
    )


def build_context(folder: Path) -> dict[str, Any]:
    """Models are built for the labels' classes (or regression targets' outputs) and the
    inputs' shape (`hp.get("classes")` or `hp.get("targets")`, `hp.get("input_shape")`);
    several inputs give `input_shapes`, by input name."""
    x = _load(folder).x_train
    meta = _meta(folder)
    key = "targets" if "targets" in meta else "classes"
    context: dict[str, Any] = {key: int(meta[key])}
    if packed(x):
        context["input_shapes"] = {name: shape for name, shape, _ in input_specs(x)}
    else:
        context["input_shape"] = tuple(x.shape[1:])
    return context


def class_names(folder: Path) -> list[str]:
    """The class indices, as names (none for regression targets)."""
    return [str(c) for c in range(int(_meta(folder).get("classes", 0)))]


def raw_input(folder: Path, backend: str) -> Any:
    """A Keras input of the arrays' shape and type (a dict or list of them, for several), on
    any backend."""
    return keras_inputs(_load(folder).x_train)


def cost_shape(params: Mapping[str, Any]) -> tuple[int, ...]:
    """Models are costed at the inputs' shape (models of several inputs are timed instead).

    Raises:
        ValueError: The model takes several inputs.
    """
    if "input_shape" not in params:
        raise ValueError("a model of several inputs is timed, not costed")
    return tuple(params["input_shape"])


# Batches, predictions and the export are the images task's: arrays in, no padding, no
# preprocessing between the raw inputs and a member.
ARRAYS = Task(
    name="arrays",
    families={},
    space={},
    defaults={},
    locate=locate,
    fingerprint=fingerprint,
    prepare=prepare,
    cache_folder=cache_folder,
    trial_data=trial_data,
    load_test=load_test,
    member_inputs=images.member_inputs,
    build_context=build_context,
    class_names=class_names,
    export_preprocessing=images.export_preprocessing,
    raw_input=raw_input,
    validation=validation,
    dataset=images.dataset,
    predict=images.predict,
    cost_shape=cost_shape,
    epoch_examples=images.epoch_examples,
    open_classes=True,
)
