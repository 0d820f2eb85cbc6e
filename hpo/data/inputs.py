"""Models of several inputs: their inputs kept as one structured array, one field per input.

Keras gives a model of several inputs its data as a dict (by input name) or a list (in the
model's order). hpo keeps such inputs as one numpy structured array, one field per input, each
with its own type and shape per example: everything that handles examples by row (the
validation split, shuffling, batching, memory-mapping, the cache's fingerprint) handles them as
it handles one array. Where rows reach Keras (`model_inputs`), they become the dict or the list
again. Fields of inputs given as a list carry a title (numpy's name for a field's second name),
which is how a list is told from a dict when the array is read back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hpo.errors import DataError

__all__ = [
    "describe",
    "given_as_list",
    "has_text",
    "input_specs",
    "is_several",
    "is_text",
    "keras_inputs",
    "model_inputs",
    "pack",
    "packed",
    "require_storable",
    "same_inputs",
    "tensors",
    "text_bytes",
]

_LIST_TITLE = "list item {}"
# The most text inputs may take stored: each text takes the longest's width.
MAX_TEXT_BYTES = 2 * 2**30
# Examples checked for NaN at a time.
_FINITE_CHUNK = 65_536


def is_several(x: Any, examples: int | None = None) -> bool:
    """Whether `x` holds the inputs of a model of several inputs, as Keras's `fit` reads them:
    a dict, or a list or tuple of two or more arrays, each of `examples` rows.

    A list of arrays can also be rows, one array per example: with `examples` unknown, arrays
    that are fewer than the rows each holds are taken as inputs (a model's inputs are few, its
    examples many).
    """
    if isinstance(x, Mapping):
        return True
    if not (isinstance(x, (list, tuple)) and len(x) > 1):
        return False
    if not all(hasattr(item, "shape") and len(item.shape) > 0 for item in x):
        return False
    lengths = {item.shape[0] for item in x}
    if len(lengths) > 1:  # inputs that disagree (`pack` says so), or rows of several lengths
        return examples != len(x)
    (length,) = lengths
    return length == examples if examples is not None else len(x) < length


def pack(x: Any, convert: Callable[[Any, str], np.ndarray], what: str) -> np.ndarray:
    """The inputs of a model of several inputs as one structured array.

    Args:
        x: A dict of inputs (keys: the model's input names) or a list of them.
        convert: Makes one input an array (a tensor, a sparse matrix: see `input_array`).
        what: Where the inputs come from, for errors.

    Raises:
        DataError: An empty dict, a key that is not a string, inputs of different lengths,
            or an input that is not numbers.
    """
    if isinstance(x, Mapping):
        if not x:
            raise DataError(f"{what}: an empty dict of inputs.")
        odd = [key for key in x if not isinstance(key, str) or not key]
        if odd:
            raise DataError(
                f"{what}: input names must be strings (the model's input names), got {odd[0]!r}."
            )
        # By name: Keras matches a dict to the model's inputs by name, whatever its order.
        items = [(key, key, convert(x[key], f"{what}[{key!r}]")) for key in sorted(x)]
    else:
        items = [
            (f"input_{i}", _LIST_TITLE.format(i), convert(item, f"{what}[{i}]"))
            for i, item in enumerate(x)
        ]
    for label, _, array in items:
        if array.ndim == 0:
            raise DataError(f"{what}: input {label!r} is a single value, not one per example.")
    lengths = {label: len(array) for label, _, array in items}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{label}: {n}" for label, n in lengths.items())
        raise DataError(f"{what}: the inputs hold different numbers of examples ({listed}).")
    for label, _, array in items:
        require_storable(array, f"{what}: input {label!r} holds")
    fields = [
        ((title, name) if title != name else name, array.dtype, array.shape[1:])
        for name, title, array in items
    ]
    out = np.empty(len(items[0][2]), dtype=np.dtype(fields))
    for name, _, array in items:
        out[name] = array
    return out


def require_storable(array: np.ndarray, subject: str) -> None:
    """Refuses inputs that are neither numbers (nor booleans) nor text as UTF-8 bytes
    (`text_bytes`), and NaN or infinite values, from which every trial would learn a NaN loss.

    Args:
        subject: What holds them, as the message begins ("x: input 'a' holds").

    Raises:
        DataError: Naming their type, or where the first value that is not finite is, and the
            fix.
    """
    if array.dtype.kind == "S":  # text, as UTF-8 bytes (`text_bytes`)
        return
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(
            f"{subject} {array.dtype}, neither numbers nor text (str or bytes): hpo writes "
            f"inputs to disk as arrays of one type; give numbers, or strings only."
        )
    if not np.issubdtype(array.dtype, np.inexact) or array.ndim == 0:
        return
    count, first = 0, None
    for start in range(0, len(array), _FINITE_CHUNK):  # without a copy of the whole array
        rows = ~np.isfinite(array[start : start + _FINITE_CHUNK])
        if rows.any():
            count += int(rows.sum())
            if first is None:
                first = start + int(np.argmax(rows.reshape(len(rows), -1).any(axis=1)))
    if count:
        raise DataError(
            f"{subject} {count} NaN or infinite value(s), the first in example {first}, from "
            f"which a model computes NaN (losses, predictions): fill them (np.nan_to_num(x), "
            f"or a column's mean) or drop those examples, with their labels, first."
        )


def text_bytes(array: np.ndarray, what: str) -> np.ndarray:
    """Text inputs (str, or bytes, in a numpy, object or pandas array) as UTF-8 bytes: what
    TensorFlow's string tensors hold, at a quarter of numpy's str size; other arrays as they are.

    Raises:
        DataError: The texts would take more than `MAX_TEXT_BYTES` stored, each at the
            longest's width; naming the longest and the fix.
    """
    flat = array.reshape(-1)
    if array.dtype.kind == "U" or (array.dtype == object and all(isinstance(v, str) for v in flat)):
        encoded = [str(v).encode("utf-8") for v in flat]
    elif array.dtype == object and all(isinstance(v, bytes) for v in flat):
        encoded = list(flat)
    else:
        return array
    lengths = np.array([len(v) for v in encoded] or [0])
    if lengths.size * int(lengths.max()) > MAX_TEXT_BYTES:
        longest = int(lengths.argmax())
        raise DataError(
            f"{what}: {lengths.size} texts, stored each at the longest's width "
            f"({int(lengths.max()):,} bytes, text {longest}; the median is "
            f"{int(np.median(lengths)):,}), would take {lengths.size * lengths.max() / 2**30:.1f} "
            f"GiB (at most {MAX_TEXT_BYTES / 2**30:.0f} GiB). Cut the longest texts first, "
            f"texts = [t[:20_000] for t in texts]: a TextVectorization keeps only its "
            f"output_sequence_length tokens anyway."
        )
    return np.array(encoded, dtype=f"S{max(1, int(lengths.max()))}").reshape(array.shape)


def has_text(x: np.ndarray) -> bool:
    """Whether any of the inputs is text."""
    return any(is_text(dtype) for _, _, dtype in input_specs(x))


def is_text(dtype: np.dtype) -> bool:
    """Whether inputs of `dtype` are text (`text_bytes`'s, or numpy's str)."""
    return dtype.kind in "SU"


def _type_name(dtype: np.dtype) -> str:
    """An input's type as messages name it, and as inputs are compared: text of any width is
    "text"."""
    return "text" if is_text(dtype) else str(dtype)


def same_inputs(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `a` and `b` hold the same inputs, shapes and types per example (text of any
    length alike)."""

    def specs(x: np.ndarray) -> list[tuple[str, tuple[int, ...], str]]:
        return [(name, shape, _type_name(dtype)) for name, shape, dtype in input_specs(x)]

    return a.shape[1:] == b.shape[1:] and specs(a) == specs(b)


def packed(x: np.ndarray) -> bool:
    """Whether `x` holds several inputs (`pack`'s structured array)."""
    return x.dtype.names is not None


def tensors(x: np.ndarray) -> Any:
    """`model_inputs(x)` with text as TensorFlow strings, as `model.predict` and a model's call
    take text (Keras refuses numpy's str and bytes arrays); numbers as they are, or as
    TensorFlow tensors beside text (a call refuses tensors mixed with arrays)."""
    inputs = model_inputs(x)
    text = has_text(x)

    def convert(array: np.ndarray) -> Any:
        if not text:
            return array
        import tensorflow as tf

        return tf.constant(array)

    if isinstance(inputs, dict):
        return {name: convert(array) for name, array in inputs.items()}
    if isinstance(inputs, list):
        return [convert(array) for array in inputs]
    return convert(inputs)


def _names(x: np.ndarray) -> tuple[str, ...]:
    return x.dtype.names or ()


def given_as_list(x: np.ndarray) -> bool:
    """Whether `x` holds several inputs given as a list (else a dict, or one input)."""
    fields = x.dtype.fields
    return fields is not None and any(len(fields[name]) > 2 for name in _names(x))


def model_inputs(x: np.ndarray, *, contiguous: bool = True) -> Any:
    """Rows as a model takes them: one array as it is; several inputs as the dict or the list
    they were given as, each input contiguous (as Keras converts it; copied), or else a view
    of its field in `x` (`contiguous=False`: nothing copied).

    Text stays numpy bytes, which `tf.data` takes; Keras's `predict` and a model's call take
    it as TensorFlow strings only (`tensors`).
    """
    if not packed(x):
        return x
    arrays = [np.ascontiguousarray(x[n]) if contiguous else x[n] for n in _names(x)]
    if given_as_list(x):
        return arrays
    return dict(zip(_names(x), arrays, strict=True))


def input_specs(x: np.ndarray) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Each input's name, shape per example and type (one, unnamed, for one array)."""
    if not packed(x):
        return [("", x.shape[1:], x.dtype)]
    return [(name, x.dtype[name].shape, x.dtype[name].base) for name in _names(x)]


def describe(x: np.ndarray) -> str:
    """The inputs' types and shapes per example, for messages."""
    if not packed(x):
        return f"{_type_name(x.dtype)} {x.shape[1:]}"
    given = "list" if given_as_list(x) else "dict"
    inner = ", ".join(
        f"{name!r}: {_type_name(dtype)} {shape}" for name, shape, dtype in input_specs(x)
    )
    return f"a {given} of inputs ({inner})"


def keras_inputs(x: np.ndarray, name: str = "inputs") -> Any:
    """`keras.Input`s for rows like `x`'s: one, or the dict or list of several, named as
    the data name them (so a functional model matches a dict to its inputs by name)."""
    import keras

    def dtype(of: np.dtype) -> str:
        return "string" if is_text(of) else str(of)

    if not packed(x):
        return keras.Input(shape=x.shape[1:], dtype=dtype(x.dtype), name=name)
    inputs = {
        field: keras.Input(shape=shape, dtype=dtype(kind), name=field)
        for field, shape, kind in input_specs(x)
    }
    return list(inputs.values()) if given_as_list(x) else inputs
