"""Length-bucketed batches: reviews of similar length train together, each batch cut to its longest.

Token arrays are stored padded to the study's longest sequence (id 0 = padding, tokens first).
Padding is most of such an array: IMDB's training reviews have a median of 174 tokens, so at 600
tokens 62% of a padded batch is zeros. Each epoch, `bucketed_dataset` shuffles the examples, sorts
them by length within chunks of `chunk_batches` batches, cuts each chunk into batches and shuffles
the batches, so the model computes on tokens and the order stays random from epoch to epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras

__all__ = [
    "batch_plan",
    "bucketed_dataset",
    "compiled_predict",
    "computed_tokens",
    "cut_predictions",
    "fixed_plan",
    "predict_bucketed",
    "token_lengths",
]

# Batch widths are rounded up to a multiple of this, so a model meets few distinct shapes.
WIDTH_MULTIPLE = 8
# On a backend that compiles a program per input shape (JAX; TensorFlow's XLA on a GPU), widths
# come from this ladder instead (and the full length): a handful of compilations per trial.
COMPILED_WIDTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
CHUNK_BATCHES = 32
_ladder = False


def use_width_ladder(on: bool) -> None:
    """Widths from `COMPILED_WIDTHS` (True) or multiples of `WIDTH_MULTIPLE`, in this process."""
    global _ladder
    _ladder = on


def token_lengths(x: np.ndarray) -> np.ndarray:
    """Tokens per row of a padded id array (padding is id 0 and only trails)."""
    return np.count_nonzero(x, axis=1)


def batch_plan(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    chunk_batches: int = CHUNK_BATCHES,
) -> list[np.ndarray]:
    """Row indices of each batch, every row exactly once.

    Args:
        lengths: Tokens per example.
        batch_size: Examples per batch (the last batch of a chunk may be smaller).
        rng: Shuffles examples, buckets and batch order; None sorts the whole set by length and
            keeps that order (for evaluation).
        chunk_batches: Batches per length-sorted chunk; larger gives tighter batches, smaller
            gives more randomness.
    """
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_width(lengths: np.ndarray, limit: int) -> int:
    """Columns a batch keeps: its longest row, rounded up to `WIDTH_MULTIPLE` (or to the next
    step of `COMPILED_WIDTHS`, see `use_width_ladder`), at most `limit`."""
    longest = int(lengths.max(initial=1))
    if _ladder:
        return min(limit, next((w for w in COMPILED_WIDTHS if w >= longest), limit))
    return max(1, min(limit, -(-longest // WIDTH_MULTIPLE) * WIDTH_MULTIPLE))


def computed_tokens(lengths: np.ndarray, batch_size: int, limit: int, seed: int = 0) -> int:
    """Token positions one bucketed epoch computes (real tokens plus the padding left)."""
    plan = batch_plan(lengths, batch_size, np.random.default_rng(seed))
    return sum(len(rows) * batch_width(lengths[rows], limit) for rows in plan)


def fixed_plan(n: int, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Row indices of each batch for padded (not bucketed) batches: shuffled, or in order."""
    order = np.arange(n) if rng is None else rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _plan(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, bucketed: bool
) -> list[np.ndarray]:
    if bucketed:
        return batch_plan(lengths, batch_size, rng)
    return fixed_plan(len(lengths), batch_size, rng)


def bucketed_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    seed: int | None = None,
    *,
    bucketed: bool = True,
) -> Any:
    """A dataset of length-bucketed, cut batches (`hpo.data.batches`: any backend).

    Args:
        x: Padded token ids [n, max_len].
        y: Labels [n] (or one-hot rows [n, classes]), or None for inputs only.
        batch_size: Examples per batch.
        seed: With a seed, each pass (epoch) draws a new shuffled plan from (seed, pass); without,
            rows come sorted by length (see `predict_bucketed` for the original order).
        bucketed: False gives batches of the full width instead, for a model whose answer
            depends on the padding (see `hpo.training.interface`): shuffled, or in order.
    """
    from hpo.data.batches import epoch_batches

    lengths = token_lengths(x)

    def plan(epoch: int) -> list[np.ndarray]:
        rng = None if seed is None else np.random.default_rng([seed, epoch])
        return _plan(lengths, batch_size, rng, bucketed)

    def width(rows: np.ndarray) -> int:
        return batch_width(lengths[rows], x.shape[1]) if bucketed else x.shape[1]

    return epoch_batches(x, y, plan, width)


def predict_bucketed(
    model: keras.Model, x: np.ndarray, batch_size: int = 512, *, bucketed: bool = True
) -> np.ndarray:
    """`model.predict` on length-sorted cut batches, returned in the rows' original order.

    With `bucketed=False`, on batches of the full width, in order.
    """
    lengths = token_lengths(x)
    plan = _plan(lengths, batch_size, None, bucketed)
    order = np.concatenate(plan) if len(x) else np.zeros(0, int)
    predictions = model.predict(bucketed_dataset(x, None, batch_size, bucketed=bucketed), verbose=0)
    result = np.empty_like(predictions)
    result[order] = predictions
    return result


def compiled_predict(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """A function that predicts one batch of token ids with `model`, compiled as `model.fit`
    would run it rather than called eagerly, for inputs of any width.

    Called eagerly, a recurrent layer (LSTM, GRU) runs a Python loop over a batch's time steps:
    on a bidirectional LSTM, 20 to 30 times `model.predict`'s time. On TensorFlow it is one
    graph, traced once or twice for every width (not XLA, which would compile a program a
    width); elsewhere `predict_on_batch`, which JAX compiles once a width and PyTorch runs as
    it runs a call.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(model.predict_on_batch(x))
    import tensorflow as tf

    step = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    return lambda x: np.asarray(step(x))


def cut_predictions(
    model: keras.Model,
    x: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Each row's prediction with its padding cut as a bucket would cut it alone.

    Rows of equal width are predicted together, by `predict` (`compiled_predict(model)` by
    default). The result is in the rows' order.
    """
    predict = predict or compiled_predict(model)
    lengths = token_lengths(x)
    widths = np.array([batch_width(lengths[i : i + 1], x.shape[1]) for i in range(len(x))])
    result: np.ndarray | None = None
    for width in np.unique(widths):
        rows = np.flatnonzero(widths == width)
        part = predict(x[rows, :width])
        if result is None:
            result = np.empty((len(x), *part.shape[1:]), dtype=part.dtype)
        result[rows] = part
    return np.zeros((0,)) if result is None else result
