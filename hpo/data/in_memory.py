"""Data given in memory to `hpo.Tuner`: numpy arrays, `tf.data` datasets and Keras `PyDataset`s.

Trials train in processes of their own, on arrays the study writes once (`hpo.tasks.arrays`):
a dataset is read once, batch after batch as `model.fit` would read one epoch of it, and its
batches are concatenated into arrays. Labels become class indices, or regression targets
(`labels_or_targets`).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpo.data.inputs import (
    describe,
    is_several,
    pack,
    packed,
    require_storable,
    same_inputs,
    text_bytes,
)
from hpo.errors import DataError

__all__ = [
    "SplitArrays",
    "class_labels",
    "input_array",
    "is_dataset",
    "is_multi_hot",
    "is_targets",
    "labels_or_targets",
    "read_batches",
    "read_inputs",
    "split_arrays",
]


@dataclass(frozen=True)
class SplitArrays:
    """Training and validation arrays, labels as class indices or regression targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    # The training examples' weights in the loss (`sample_weight=`), or None.
    w_train: np.ndarray | None = None
    # The training dataset's batch size (its first batch's rows); None for arrays.
    batch_size: int | None = None
    # The training labels are numbers, one an example, read as classes: whole numbers that a
    # model of one output takes as regression targets (`split_arrays(targets=True)`).
    numbered: bool = False


# The largest dense copy of a sparse input matrix hpo.Tuner makes.
MAX_DENSE_BYTES = 2 * 2**30
# The share of the memory left that a dataset read into memory may take: joining its batches
# holds it twice, and the trials need the rest.
_DATASET_SHARE = 0.4


def split_arrays(
    x: Any,
    y: Any,
    validation_data: Any = None,
    validation_split: float | None = None,
    sample_weight: Any = None,
    targets: bool | None = None,
) -> SplitArrays:
    """The training and validation arrays of a `search(x, y, validation_data=...)` call.

    Args:
        x: Inputs (an array), or a dataset of `(inputs, labels)` or `(inputs, labels,
            weights)` batches (then `y` is None).
        y: Labels: class indices, or one-hot rows.
        validation_data: `(x_val, y_val)`, or a dataset of `(inputs, labels)` batches.
        validation_split: Without `validation_data`: the last fraction of `x` and `y` (before
            any shuffling), as Keras's `fit` takes it.
        sample_weight: Each example of `x`'s weight in the training loss, as Keras's `fit`
            takes it (cut with `validation_split` as `x` is; validation is not weighted).
        targets: Read the labels as regression targets (True), as classes (False), or as
            `labels_or_targets` decides (None).

    Raises:
        DataError: Missing validation data, mismatched lengths, inputs that are not numbers,
            or labels that are not classes; each names the fix.
    """
    if sample_weight is not None and y is None:
        raise DataError(
            "sample_weight= goes with arrays x and y; a dataset carries its weights in its "
            "batches: make them (inputs, labels, weights)."
        )
    x_train, y_train, w_train, batch_size, numbered = _pair(x, y, "x", targets)
    # Validation labels are read as the training labels were: classes, or targets.
    regression = is_targets(y_train)
    if sample_weight is not None:
        w_train = _weights(sample_weight, len(x_train))
    if validation_data is not None:
        if validation_split:
            raise DataError("give validation_data or validation_split, not both.")
        if isinstance(validation_data, (tuple, list)):
            if len(validation_data) != 2:
                raise DataError(
                    f"validation_data must be (x_val, y_val), got a {type(validation_data)} of "
                    f"{len(validation_data)} items; validation is not weighted (trials are "
                    f"compared on every validation example alike): leave the weights out."
                )
            x_val, y_val, *_ = _pair(
                validation_data[0], validation_data[1], "validation_data", regression
            )
        else:
            x_val, y_val, w_val, *_ = _pair(validation_data, None, "validation_data", regression)
            if w_val is not None:
                raise DataError(
                    "validation_data: its batches carry weights, but validation is not weighted "
                    "(trials are compared on every validation example alike): drop them, "
                    "validation_data.map(lambda x, y, w: (x, y))."
                )
    elif validation_split:
        if not 0 < validation_split < 1:
            raise DataError(f"validation_split must be in (0, 1), got {validation_split}.")
        # Keras's fit rounds the training side down (its `train_validation_split`).
        cut = math.floor(len(x_train) * (1.0 - validation_split))
        if cut <= 0 or cut >= len(x_train):
            raise DataError(
                f"validation_split={validation_split} of {len(x_train)} examples leaves the "
                f"{'training' if cut <= 0 else 'validation'} side empty, as Keras's fit cuts "
                f"it; give more examples or another split."
            )
        x_train, x_val = x_train[:cut], x_train[cut:]
        y_train, y_val = y_train[:cut], y_train[cut:]
        w_train = None if w_train is None else w_train[:cut]
    else:
        raise DataError(
            "hpo.Tuner needs validation data to score and ensemble trials: pass "
            "validation_data=(x_val, y_val) or validation_split=0.2."
        )
    if not same_inputs(x_train, x_val):
        raise DataError(
            f"validation inputs are {describe(x_val)} per example, training inputs "
            f"{describe(x_train)}; give both the same inputs, shapes and types."
        )
    if regression:
        outputs = [1 if t.ndim == 1 else t.shape[1] for t in (y_train, y_val)]
        if outputs[0] != outputs[1]:
            raise DataError(
                f"validation targets have shape {list(y_val.shape)}, training targets "
                f"{list(y_train.shape)}; give both as many outputs."
            )
        y_val = y_val.reshape((len(y_val), *y_train.shape[1:]))  # [n] or [n, 1], as training
        if np.ptp(y_train, axis=0).max() == 0:
            raise DataError("the training targets hold a single value; nothing to learn.")
    elif len(np.unique(y_train)) < 2:
        raise DataError(
            "the training labels hold a single class: classification needs two or more. "
            "Regression targets are floats, such as y.astype('float32'), that are not all "
            "whole numbers."
        )
    if w_train is not None and not w_train.any():
        raise DataError("sample_weight: every training example weighs 0; nothing would train.")
    return SplitArrays(
        x_train, y_train, x_val, y_val, w_train, batch_size, numbered and not regression
    )


def _weights(sample_weight: Any, examples: int, what: str = "sample_weight") -> np.ndarray:
    """Sample weights as float32 `[examples]`.

    Raises:
        DataError: Weights of another length, negative or not finite.
    """
    try:
        weights = np.asarray(sample_weight, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numbers, one per example ({exc}).") from exc
    if weights.shape != (examples,):
        raise DataError(
            f"{what} must hold one weight per example of x, shape ({examples},); got "
            f"shape {weights.shape}."
        )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError(f"{what} must be finite and at least 0.")
    return weights


def _pair(
    x: Any, y: Any, what: str, targets: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None, bool]:
    """Inputs and labels (or regression targets: `labels_or_targets`), from arrays or a
    dataset's batches; with a dataset, also the weights its batches carry (or None) and its
    batch size; and whether the labels are numbers, one an example (`SplitArrays.numbered`)."""
    weights = batch_size = None
    # Labels given beside the inputs are named as `fit` names them (y), not as the inputs (x);
    # a dataset's, and validation_data's, are the dataset's.
    labelled = "y" if y is not None and what == "x" else what
    if y is None:
        x, y, weights, batch_size = read_batches(x, what)
    else:
        dataset = _dataset_kind(x)
        if dataset is not None:
            raise DataError(
                f"{what}: labels are given beside a {dataset}, whose batches carry their own "
                f"(Keras's fit refuses a y argument with a dataset too): give the dataset "
                f"alone, yielding (inputs, labels) batches, or x and y as arrays."
            )
        _check_one_output(y, labelled)
    raw = np.asarray(y)
    numbered = (
        raw.dtype != bool
        and np.issubdtype(raw.dtype, np.number)
        and (raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1))
    )
    labels = labels_or_targets(raw, labelled, targets)
    inputs = input_array(x, what, examples=len(labels))
    if not packed(inputs):  # several inputs were checked one by one
        require_storable(inputs, f"{what}: the inputs hold")
    if inputs.ndim < 1 or len(inputs) == 0:
        raise DataError(f"{what}: no examples (an array of shape {inputs.shape}).")
    if len(labels) != len(inputs):
        raise DataError(f"{what}: {len(inputs)} inputs but {len(labels)} labels; give as many.")
    if weights is not None:
        weights = _weights(weights, len(inputs), f"{what}: the batches' weights")
    return inputs, labels, weights, batch_size, numbered


def _check_one_output(y: Any, what: str) -> None:
    """Raises DataError for the labels of a model of several outputs: a dict of arrays by
    output name, or a list of arrays, one an output, each longer than the list (a list of
    one-hot rows, one an example, is one output's labels)."""
    if isinstance(y, dict):
        given = f"a dict of {len(y)} outputs' labels ({', '.join(map(repr, y))})"
    elif (
        isinstance(y, (list, tuple))
        and y
        and all(getattr(v, "ndim", 0) >= 1 and len(v) == len(y[0]) for v in y)
        and len(y[0]) > len(y)
    ):
        given = f"a {type(y).__name__} of {len(y)} arrays, one an output"
    else:
        return
    raise DataError(
        f"{what}: the labels are {given}; hpo tunes models of one output, whose labels are one "
        f"array (class indices, one-hot rows or targets). Search a model of one output (each "
        f"output's model on its own, or several targets as one Dense(outputs) for regression)."
    )


def is_targets(labels: np.ndarray) -> bool:
    """Whether labels as `_pair` reads them are regression targets (float32) rather than
    class indices (int32)."""
    return bool(np.issubdtype(np.asarray(labels).dtype, np.floating))


def _fractional(values: np.ndarray) -> bool:
    """Whether labels are floats that are not all whole numbers (regression targets)."""
    return bool(
        np.issubdtype(values.dtype, np.floating)
        and values.size > 0
        and not np.array_equal(values, np.round(values))
    )


def _no_classes(values: np.ndarray) -> bool:
    """Whether numbers can be no class labels: floats below 0, or rows of several numbers not
    all 0s and 1s."""
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number) or values.size == 0:
        return False
    if values.ndim == 2 and values.shape[1] > 1:
        return not ((values == 0) | (values == 1)).all()
    return bool(np.issubdtype(values.dtype, np.floating) and values.min() < 0)


def is_multi_hot(values: np.ndarray) -> bool:
    """Whether labels are rows of 0s and 1s, `[n, labels]`, some of which hold other than one
    1: multi-label targets (an example may have several labels, or none)."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] < 2 or values.size == 0:
        return False
    if not (values.dtype == bool or np.issubdtype(values.dtype, np.number)):
        return False
    return bool(((values == 0) | (values == 1)).all() and (values.sum(axis=1) != 1).any())


def labels_or_targets(y: Any, what: str = "y", targets: bool | None = None) -> np.ndarray:
    """Class indices `[n]` (int32), or targets `[n]` or `[n, k]` (float32).

    Labels of a floating type that hold a value that is no whole number (prices, say) or below
    0 are regression targets, as are rows of several numbers that are not all 0s and 1s (counts,
    say), and rows of 0s and 1s that are not all one-hot are multi-label targets
    (`is_multi_hot`); any others are classes (`class_labels`), as are whole numbers of 0 and
    more of a floating type (`y.astype("float32")` of class indices). A model of one output
    takes whole numbers as targets: `hpo.Tuner.search` reads them again (`targets=True`).

    Args:
        targets: Read them as targets (True) or classes (False), as the training labels were
            read; None: decide as above.

    Raises:
        DataError: Targets that are not finite or not one row each; labels that are no classes.
    """
    values = np.asarray(y)
    missing = _missing(values)
    if missing is not None and missing.any():
        rows = missing.reshape(len(values), -1).any(axis=1)
        raise DataError(
            f"{what}: {int(rows.sum())} example(s) have no label (NaN, None or infinite), the "
            f"first at example {int(np.argmax(rows))}; drop those examples (or fill their "
            f"labels) first."
        )
    if targets is None:
        targets = _fractional(values) or is_multi_hot(values) or _no_classes(values)
    if not targets:
        return class_labels(values, what)
    try:
        result = values.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: regression targets must be numbers ({exc}).") from exc
    # Kept as given ([n, 1] too): a metric of the user's own may not broadcast another shape.
    if result.ndim not in (1, 2):
        raise DataError(_per_position(what, result))
    bad = ~np.isfinite(result.reshape(len(result), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} regression targets are NaN or infinite, the first at "
            f"example {int(np.argmax(bad))}; drop or fill those examples first."
        )
    return result


def _missing(values: np.ndarray) -> np.ndarray | None:
    """Which labels are missing (NaN, None, pandas' NA) or infinite; None where none can be."""
    if values.ndim == 0:
        return None
    if np.issubdtype(values.dtype, np.floating):
        return ~np.isfinite(values)
    if values.dtype == object:
        import pandas as pd

        return np.asarray(pd.isna(values), dtype=bool)
    return None


def class_labels(y: Any, what: str = "y") -> np.ndarray:
    """Labels as class indices `[n]` (int32): from indices, or from one-hot rows.

    Raises:
        DataError: The labels are not class indices nor one-hot rows.
    """
    labels = np.asarray(y)
    if labels.dtype == bool:  # False and True: classes 0 and 1, as Keras takes them
        labels = labels.astype(np.int32)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2:
        if not (np.issubdtype(labels.dtype, np.number) and ((labels == 0) | (labels == 1)).all()):
            raise DataError(f"{what}: 2-D labels must be one-hot rows of 0 and 1.")
        ones = labels.sum(axis=1)
        if (ones != 1).any():
            row = int(np.argmax(ones != 1))
            raise DataError(
                f"{what}: one-hot rows must hold exactly one 1; row {row} holds "
                f"{int(ones[row])}. The training labels are one class an example; multi-label "
                f"targets (several classes an example, or none) are taken as such where the "
                f"training labels are multi-label too."
            )
        return labels.argmax(axis=1).astype(np.int32)
    if labels.ndim == 1 and not np.issubdtype(labels.dtype, np.number):
        raise DataError(
            f"{what}: labels must be class indices 0, 1, 2, ..., got {labels.dtype} values such "
            f"as {labels[:3].tolist()}; number the classes first: names, y = np.unique(y, "
            f"return_inverse=True)."
        )
    if labels.ndim > 2:
        raise DataError(_per_position(what, labels))
    if labels.ndim != 1:
        raise DataError(
            f"{what}: labels must be class indices [n] or one-hot rows [n, classes], got "
            f"{labels.dtype} {labels.shape}."
        )
    if len(labels) and (labels.min() < 0 or not np.array_equal(labels, np.round(labels))):
        bad = np.unique(labels[(labels < 0) | ~np.isclose(labels, np.round(labels))])
        raise DataError(
            f"{what}: labels must be class indices 0, 1, 2, ..., got {bad.size} other value(s) "
            f"such as {bad[:3].tolist()}: number the classes from 0 (labels -1 and 1: "
            f"y = (y > 0).astype(int)). Regression targets are floats: give "
            f"y.astype('float32')."
        )
    return labels.astype(np.int32)


def _per_position(what: str, labels: np.ndarray) -> str:
    """Why labels of an array an example (a class a pixel, an image to give back) are refused."""
    return (
        f"{what}: the labels are {labels.dtype} {labels.shape}, an array of "
        f"{list(labels.shape[1:])} an example (a class a pixel or a token, an image to give "
        f"back), where hpo takes one prediction an example: class indices [n] or one-hot rows "
        f"[n, classes], targets [n] or [n, outputs], which it ranks, ensembles and scores. "
        f"Values of another shape can be flattened, y.reshape(len(y), -1), for a model whose "
        f"output is flattened to match (keras.layers.Flatten()); a class a position is beyond "
        f"hpo: tune such a model with KerasTuner."
    )


def input_array(x: Any, what: str, examples: int | None = None) -> np.ndarray:
    """Inputs as one numpy array: an array, rows, a torch tensor, or a scipy sparse matrix
    (dense, where that fits); the inputs of a model of several inputs (a dict, or a list of
    arrays) as one structured array (`hpo.data.inputs`).

    Args:
        examples: How many examples `x` holds, where the labels tell (see `is_several`).

    Raises:
        DataError: A sparse matrix too large, or several inputs that do not fit together.
    """
    if is_several(x, examples):
        return pack(x, _one_feature, what)
    return _one_feature(x, what)


def _one_feature(x: Any, what: str) -> np.ndarray:
    """One input as an array, text as UTF-8 bytes."""
    return text_bytes(_one_input(x, what), what)


def _one_input(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "toarray"):
        return _dense(x, what)
    if type(x).__module__.startswith("pandas") and hasattr(x, "columns"):
        return _frame(x, what)
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu()
    try:
        array = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc):
            raise DataError(f"{what}: not an array of numbers ({exc}).") from exc
        raise DataError(_unpadded(what, str(exc).split(". ")[-1].rstrip("."))) from exc
    # Rows of different lengths as objects: a tf.RaggedTensor's, or an array of lists.
    rows = array[:1000] if array.dtype == object and array.ndim == 1 else ()
    if len(rows) and all(isinstance(r, (list, tuple, np.ndarray)) for r in rows):
        lengths = sorted({len(r) for r in rows})
        raise DataError(_unpadded(what, f"{lengths[0]} to {lengths[-1]} values a row"))
    return array


def _unpadded(what: str, detail: str) -> str:
    return (
        f"{what}: rows of different lengths ({detail}); hpo stores inputs as arrays: pad them to "
        f"one length first, such as token ids with keras.utils.pad_sequences(rows, "
        f"padding='post') (a tf.RaggedTensor: x.to_tensor())."
    )


def _frame(frame: Any, what: str) -> np.ndarray:
    """A pandas DataFrame's columns as one array. Columns of numbers and booleans together (the
    one-hot columns `pd.get_dummies` makes are bool) take their common type, as Keras's `fit`
    takes them; columns of text alone stay text.

    Raises:
        DataError: Columns of numbers beside columns of anything else, naming the latter.
    """
    import pandas as pd

    numeric = {
        name: pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        for name, dtype in frame.dtypes.items()
    }
    if not any(numeric.values()):
        return np.asarray(frame)
    others = [name for name, number in numeric.items() if not number]
    if others:
        raise DataError(
            f"{what}: DataFrame column(s) {others[:10]} hold {frame[others[0]].dtype} beside "
            f"columns of numbers; a model takes numbers: encode them first "
            f"(pd.get_dummies(df, columns={others[:3]}, dtype='float32')) or drop them."
        )
    try:
        dtype = np.result_type(*(np.dtype(d) for d in frame.dtypes))
    except TypeError:  # pandas' own types (nullable integers): as floats, missing values NaN
        return np.asarray(frame.to_numpy(dtype="float64", na_value=np.nan))
    return np.asarray(frame.to_numpy(dtype=dtype))


def _dense(matrix: Any, what: str) -> np.ndarray:
    """A scipy sparse matrix (TF-IDF features, say) as the dense array hpo stores, if it fits."""
    rows, columns = matrix.shape
    size = rows * columns * np.dtype(matrix.dtype).itemsize
    if size > MAX_DENSE_BYTES:
        raise DataError(
            f"{what}: a sparse {rows} x {columns} matrix; hpo.Tuner stores inputs as dense "
            f"arrays, {size / 2**30:.1f} GiB for this one (at most "
            f"{MAX_DENSE_BYTES / 2**30:.0f} GiB). Keep fewer features (max_features= of the "
            f"vectorizer, or SelectKBest), or give token ids to an Embedding model instead."
        )
    return np.asarray(matrix.toarray())


def read_batches(data: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """A dataset's `(inputs, labels)` or `(inputs, labels, weights)` batches, read once and
    concatenated, and its batch size: the first batch's rows, as Keras's `fit` would train."""
    batches = _batches(data, what)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    read, limit = 0, memory_available() * _DATASET_SHARE
    for batch in batches:
        if read > limit:
            raise DataError(
                f"{what}: the dataset passed {read / 2**30:.1f} GiB read into memory, and the "
                f"search keeps its data in memory (twice, as the batches are joined): this "
                f"machine has {memory_available() / 2**30:.1f} GiB left. Give fewer or smaller "
                f"examples (dataset.take(n); images at a smaller image_size; uint8 pixels "
                f"rather than float32, rescaled in the model), or run on a larger machine."
            )
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            size = f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            raise DataError(
                f"{what}: each batch must be (inputs, labels) or (inputs, labels, weights); "
                f"got a {type(batch).__name__}{size}."
            )
        if (ws and len(batch) == 2) or (xs and not ws and len(batch) == 3):
            raise DataError(f"{what}: some batches carry weights and others do not.")
        _check_one_output(batch[1], what)
        labels = _one_input(batch[1], what)
        if labels.ndim == 0:
            raise DataError(
                f"{what}: the dataset yields single examples (a label of shape ()), not "
                f"batches, which Keras's fit takes: batch it, dataset.batch(32)."
            )
        xs.append(input_array(batch[0], what, examples=len(labels)))
        ys.append(labels)
        read += xs[-1].nbytes + labels.nbytes
        if len(batch) == 3:
            ws.append(np.reshape(_one_input(batch[2], what), -1))
    if not xs:
        raise DataError(f"{what}: the dataset is empty.")
    weights = np.concatenate(ws) if ws else None
    return _joined(xs), np.concatenate(ys), weights, len(ys[0])


def memory_available() -> float:
    """Bytes of memory this machine has left (Linux's MemAvailable); infinite where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def _joined(batches: list[np.ndarray]) -> np.ndarray:
    """Batches of inputs concatenated; several inputs' batches whose text fields differ in
    width (each batch's longest text) first widened to the widest."""
    if not packed(batches[0]) or len({b.dtype for b in batches}) == 1:
        return np.concatenate(batches)
    first = batches[0].dtype
    layout: list[tuple[Any, np.dtype]] = []
    for name, field in (first.fields or {}).items():
        if len(field) > 2 and name == field[2]:
            continue  # a title, listed again beside its field's name
        kind = max((b.dtype[name] for b in batches), key=lambda d: d.itemsize)
        layout.append(((field[2], name) if len(field) > 2 else name, kind))
    widest = np.dtype(layout)
    return np.concatenate([b.astype(widest) for b in batches])


def _random_ops(dataset: Any) -> list[str]:
    """The random-number operations in a `tf.data` pipeline's functions (a `map` that augments),
    shuffling aside; empty where the pipeline cannot be read."""
    import tensorflow as tf

    try:
        graph = tf.compat.v1.GraphDef()
        serialized = tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor)
        graph.ParseFromString(serialized.numpy())
    except Exception:  # a private handle, or a dataset TensorFlow cannot serialize
        return []
    nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
    return sorted({n.op for n in nodes if "Random" in n.op and "Shuffle" not in n.op})


def is_dataset(data: Any) -> bool:
    """Whether `data` is a dataset of batches hpo reads: a `tf.data.Dataset`, a
    `keras.utils.PyDataset` or a torch `DataLoader`."""
    tf, keras, torch = (sys.modules.get(name) for name in ("tensorflow", "keras", "torch"))
    return (
        (tf is not None and isinstance(data, tf.data.Dataset))
        or (keras is not None and isinstance(data, keras.utils.PyDataset))
        or (torch is not None and isinstance(data, torch.utils.data.DataLoader))
    )


def read_inputs(data: Any, what: str) -> np.ndarray:
    """A dataset's inputs, batch after batch, concatenated, as Keras's `predict` reads one:
    the first item of an `(inputs, labels)` or `(inputs, labels, weights)` batch, else the
    batch itself."""
    xs = []
    for batch in _batches(data, what):
        if isinstance(batch, list):
            batch = tuple(batch)
        inputs = batch[0] if isinstance(batch, tuple) and 1 <= len(batch) <= 3 else batch
        xs.append(input_array(inputs, what))
    if not xs:
        raise DataError(f"{what}: the dataset is empty.")
    return _joined(xs)


def _dataset_kind(data: Any) -> str | None:
    """What kind of dataset `data` is (one that yields batches of its own), or None."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return "tf.data.Dataset"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(data, keras.utils.PyDataset):
        return "keras.utils.PyDataset"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(data, torch.utils.data.DataLoader):
        return "torch DataLoader"
    if isinstance(data, Iterator):
        return type(data).__name__
    return None


def _check_batched(tf: Any, data: Any, what: str) -> None:
    """Raises DataError where a tf.data dataset's elements are single examples: no part of
    them has an unknown first dimension (`.batch(n)` gives one) and their first dimensions
    differ (an image (32, 32, 3) beside a one-hot label (10,)), which read as batches gave
    a wrong count of examples, or none of the inputs' where one part is a scalar."""
    shapes = [spec.shape for spec in tf.nest.flatten(data.element_spec)]
    if any(shape.rank is None or (shape.rank and shape[0] is None) for shape in shapes):
        return
    firsts = {shape[0] if shape.rank else None for shape in shapes}
    if len(firsts) > 1:
        shown = tf.nest.map_structure(lambda spec: tuple(spec.shape), data.element_spec)
        raise DataError(
            f"{what}: the dataset yields single examples (shapes {shown}), not batches, which "
            f"Keras's fit takes: batch it, dataset.batch(32)."
        )


def _batches(data: Any, what: str) -> Any:
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        if data.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise DataError(f"{what}: the dataset repeats forever; remove its .repeat().")
        _check_batched(tf, data, what)
        drawn = _random_ops(data)
        if drawn:
            warnings.warn(
                f"{what}: the dataset's pipeline draws random numbers ({', '.join(drawn)}), "
                f"random augmentation say; hpo reads it once, so they are drawn once, not anew "
                f"each epoch. Put augmentation layers in the model instead "
                f"(keras.layers.RandomFlip, ...), where they run on every training batch.",
                stacklevel=6,  # the line calling hpo.Tuner.search
            )
        return data.as_numpy_iterator()
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(data, keras.utils.PyDataset):
        count = data.num_batches
        if count is None:
            raise DataError(f"{what}: the PyDataset has no length (num_batches is None).")
        return (data[i] for i in range(count))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(data, torch.utils.data.DataLoader):
        try:
            len(data)
        except TypeError:
            raise DataError(
                f"{what}: the DataLoader has no length (its dataset is an IterableDataset, "
                f"which may never end); give it a map-style dataset, such as a TensorDataset."
            ) from None
        return iter(data)
    if isinstance(data, Iterator):
        raise DataError(
            f"{what}: a {type(data).__name__} may never end, so hpo does not read it; make "
            f"arrays of a finite one's (inputs, labels) batches first: x, y = "
            f"map(np.concatenate, zip(*batches)); or pass a tf.data.Dataset, a "
            f"keras.utils.PyDataset or a torch DataLoader."
        )
    raise DataError(
        f"{what}: expected a numpy array with labels, a tf.data.Dataset, a "
        f"keras.utils.PyDataset or a torch DataLoader of (inputs, labels) batches, got "
        f"{type(data).__name__}."
    )
