"""How batches reach Keras on every backend: `tf.data` on TensorFlow, a `PyDataset` elsewhere.

A trial's batches are planned per epoch (which rows, in which order, cut to which width) by the
task (`hpo.data.batching` for text, a shuffle for images). On TensorFlow they stream through a
`tf.data` generator with a prefetching thread; on JAX and PyTorch through a Keras `PyDataset`,
which needs no TensorFlow. Importing this module loads Keras: import it where batches are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from hpo.data.inputs import given_as_list, input_specs, model_inputs, packed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["PlannedBatches", "epoch_batches"]

Plan = list[np.ndarray]


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray | None,
    plan: Callable[[int], Plan],
    width: Callable[[np.ndarray], int] | None = None,
    weights: np.ndarray | None = None,
) -> Any:
    """A dataset of `(x, y)` batches (inputs only when `y` is None), planned anew each epoch.

    Args:
        x: Inputs, first axis the examples.
        y: Labels (ids or one-hot rows), or None.
        plan: `plan(epoch)` gives each batch's rows for that epoch; every epoch has as many
            batches.
        width: Columns of `x` a batch keeps (text cut to its longest row); None keeps all.
        weights: Each example's weight in the loss (`fit(sample_weight=)`): batches are then
            `(x, y, weights)`.
    """
    if str(keras.config.backend()) == "tensorflow":
        return _tf_dataset(x, y, plan, width, weights)
    return PlannedBatches(x, y, plan, width, weights)


def _batch(
    x: np.ndarray,
    y: np.ndarray | None,
    rows: np.ndarray,
    width: Callable[[np.ndarray], int] | None,
    weights: np.ndarray | None = None,
) -> Any:
    inputs = model_inputs(x[rows]) if width is None else x[rows, : width(rows)]
    if isinstance(inputs, list):  # several inputs in order: a tuple, as tf.data nests them
        inputs = tuple(inputs)
        if y is None:  # alone, Keras would read a tuple as (inputs, labels)
            return (inputs,)
    if y is None:
        return inputs
    return (inputs, y[rows]) if weights is None else (inputs, y[rows], weights[rows])


def _tf_dataset(
    x: np.ndarray,
    y: np.ndarray | None,
    plan: Callable[[int], Plan],
    width: Callable[[np.ndarray], int] | None,
    weights: np.ndarray | None,
) -> Any:
    import tensorflow as tf

    passes = iter(range(1 << 62))
    n_batches = len(plan(0))

    def generate() -> Iterator[Any]:
        for rows in plan(next(passes)):
            yield _batch(x, y, rows, width, weights)

    x_spec: Any
    if packed(x):  # several inputs: a spec each, in the dict or list the batches hold
        specs = {
            name: tf.TensorSpec((None, *shape), tf.as_dtype(dtype))
            for name, shape, dtype in input_specs(x)
        }
        x_spec = tuple(specs.values()) if given_as_list(x) else specs
    else:
        shape = (None, *([None] if width is not None else x.shape[1:2]), *x.shape[2:])
        x_spec = tf.TensorSpec(shape, tf.as_dtype(x.dtype))
    signature: Any = (x_spec,) if y is None and isinstance(x_spec, tuple) else x_spec
    if y is not None:
        signature = (x_spec, tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)))
        if weights is not None:
            signature = (*signature, tf.TensorSpec((None,), tf.as_dtype(weights.dtype)))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


class PlannedBatches(keras.utils.PyDataset):
    """Batches of a plan drawn anew at the end of each epoch (JAX and PyTorch backends)."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray | None,
        plan: Callable[[int], Plan],
        width: Callable[[np.ndarray], int] | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.x, self.y, self.plan, self.width, self.weights = x, y, plan, width, weights
        self.epoch = 0
        self.rows = plan(0)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        return _batch(self.x, self.y, self.rows[index], self.width, self.weights)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.rows = self.plan(self.epoch)
