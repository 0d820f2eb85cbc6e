"""What a task and a model family provide."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hpo.data import layout

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    import keras
    import numpy as np
    import optuna

    from hpo.config import StudyConfig
    from hpo.data.tokenizer import Tokenizer
    from hpo.space import Space


class Family(Protocol):
    """A model family: a module with a search space, defaults, `suggest` and `build`."""

    SPACE: Space
    DEFAULTS: Mapping[str, Any]

    def suggest(self, trial: optuna.Trial, space: Space) -> dict[str, Any]: ...

    def build(self, params: Mapping[str, Any]) -> keras.Model: ...


@dataclass(frozen=True)
class TrialData:
    """The arrays one trial trains and validates on."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    # Each training example's weight in the loss (`hpo.Tuner.search(sample_weight=)`), or None.
    w_train: np.ndarray | None = None


@dataclass(frozen=True)
class TestSet:
    """Labelled inputs, raw and encoded: the held-out test set, read only by the final
    evaluation, or the validation split a trial's export is checked on (`Task.validation`).

    Attributes:
        raw: Raw inputs, as the exported ensemble takes them (review texts for IMDB).
        x: Inputs encoded at the prepared data's full size (see `Task.member_inputs`).
        y: Labels.
        source: Where the examples were read from (a file, folder or archive; the prepared
            folder for validation).
    """

    raw: np.ndarray
    x: np.ndarray
    y: np.ndarray
    source: Path


@dataclass(frozen=True)
class Task:
    """A data set, its model families and the metric a study optimizes.

    Attributes:
        name: Name used in study files (`task = "..."`).
        families: Model families by name; the family is itself a hyperparameter.
        space: Task-level hyperparameters (such as input size), shared by every family.
        defaults: Values of `space` for the enqueued default trials.
        locate: Resolves where the data is read from: `locate(config, data_arg)`, in the
            order --data flag > environment variable > study file > download.
        fingerprint: A hash of the prepared data (`prepare`'s folder), independent of where
            the data was read from; trials and the ensemble must see the same one.
        prepare: Runs once per study before any trial (for example tokenizes and caches the
            data) and returns the folder that `trial_data` reads. Never reads test data.
        cache_folder: The folder `prepare` returns, worked out without reading the data (from
            the settings and the source's file sizes and times): `cache_folder(config, source,
            space)`, `source` as `locate` gives it and `space` the shared one. `hpo gc` keeps it.
        trial_data: Loads the inputs of one trial from the prepared folder, given its params.
        load_test: Reads and encodes the test set; only the ensemble's evaluation calls it.
        member_inputs: Turns full-size encoded inputs into one trial's inputs, given its params.
        build_context: What every model of the study is built for, from the prepared data and
            not searched (for images: the number of classes and the image shape); `build`
            receives it with the trial's parameters.
        class_names: The class names, label index = position (from the prepared data).
        export_preprocessing: A Keras layer from raw inputs to one trial's inputs, and a key
            that is equal for trials that can share it: `(folder, params, backend)`, `backend`
            the one the export is made for (`raw_input`'s).
        raw_input: A `keras.Input` for raw inputs, given the prepared data's folder and the
            backend the export is made for (the study's, whichever backend writes it): text
            is raw strings for TensorFlow, token ids for the others.
        validation: The validation split as a `TestSet`, from the prepared folder: what an
            export of one trial is checked on, since only the ensemble reads the test set.
        dataset: A `tf.data.Dataset` of (inputs, labels) batches, or inputs only when labels are
            None: `dataset(x, y, batch_size, seed, bucketed=True)`; a seed shuffles anew every
            epoch, no seed keeps an order that `predict` undoes; `bucketed=False` pads every
            batch to the full length (text; see `hpo.training.interface`).
        predict: A model's predictions for inputs, in their order:
            `predict(model, x, bucketed=True)`.
        cost_shape: The input shape (batch excluded) at which a trial's model is costed.
        epoch_examples: Examples one epoch over `x` computes at `cost_shape`, in equivalents
            (bucketed text computes fewer positions than it stores): `(x, batch_size, params)`.
        monitor: The validation metric the study maximizes, as Keras logs name it.
        padded: Inputs are token ids padded at the end (id 0), so batches may be cut to their
            longest row for a model that ignores padding.
        open_classes: The classes are known only from the labels (arrays in memory): a
            classifier's output with more units than the largest label's id has room for
            classes the data lacks, and `read_output` says so (`WiderOutput`) instead of
            refusing it.
        tokenizer: Text tasks: the study's tokenizer (raw text to the prepared token ids),
            saved beside an export for `hpo predict`.
        augmented: Altered copies of the training inputs, as one trial's inputs, for a
            distilled student to learn the ensemble on inputs no member learned from:
            `augmented(folder, params, copies, seed)`, the same copies for the same seed
            whatever the trial; None where the task has none.
        model_space: The names in `space` that only hpo's own families read as they build
            (images: `upscale`, `augment`), which the task's data never needs: a hypermodel,
            which builds from its own hyperparameters, is not given them (they would be
            searched for nothing).
    """

    name: str
    families: Mapping[str, Family]
    space: Space
    defaults: Mapping[str, Any]
    locate: Callable[[StudyConfig, str | None], Path]
    fingerprint: Callable[[Path], str]
    prepare: Callable[[StudyConfig, str | None, Space], Path]
    cache_folder: Callable[[StudyConfig, Path, Space], Path]
    trial_data: Callable[[Path, Mapping[str, Any]], TrialData]
    load_test: Callable[[StudyConfig, str | None, Path], TestSet]
    member_inputs: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
    build_context: Callable[[Path], Mapping[str, Any]]
    class_names: Callable[[Path], list[str]]
    export_preprocessing: Callable[[Path, Mapping[str, Any], str], tuple[Any, keras.layers.Layer]]
    raw_input: Callable[[Path, str], Any]
    validation: Callable[[Path], TestSet]
    dataset: Callable[..., Any]
    predict: Callable[..., np.ndarray]
    cost_shape: Callable[[Mapping[str, Any]], tuple[int, ...]]
    epoch_examples: Callable[[np.ndarray, int, Mapping[str, Any]], float]
    monitor: str = "val_accuracy"
    padded: bool = False
    open_classes: bool = False
    tokenizer: Callable[[Path], Tokenizer] | None = None
    augmented: Callable[[Path, Mapping[str, Any], int, int], np.ndarray] | None = None
    model_space: frozenset[str] = frozenset()


def source_settings(config: StudyConfig, source: Path) -> dict[str, Any]:
    """What a prepared cache depends on besides the space: the source and the split settings.

    A file is known by its size and modification time; a folder by those of every file in it
    (`folder_signature`): a folder's own time changes only when an entry directly in it does,
    not when a file moves between its class or split folders.
    """
    stat = source.stat()
    return {
        "source": str(source),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        **({"source_files": folder_signature(source)} if source.is_dir() else {}),
        "val_size": config.data.val_size,
        "train_size": config.data.train_size,
        "seed": config.data.seed,
    }


def folder_signature(folder: Path) -> str:
    """A hash of the path, size and modification time of every file under `folder` (symbolic
    links followed, as `layout.walk` follows them), leaving out a test split's folder beside
    a train split's (`layout.split_of`: `test/` beside `train/`, `Testing/` beside `Training/`):
    the search never reads the test split, and it is not prepared with the rest."""
    digest = hashlib.sha256()
    for root, dirs, files in layout.walk(folder):
        named = {name: layout.split_of(name) for name in dirs}
        if "train" in named.values() and "test" in named.values():
            dirs[:] = [name for name in dirs if named[name] != "test"]
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: the reader skips it too
                continue
            relative = os.path.relpath(path, folder)
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
