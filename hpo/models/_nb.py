"""Layers of the `nbsvm` family: a text's set of n-gram ids, and a linear model over that set
whose features are scaled by naive-Bayes log-count ratios (Wang & Manning 2012).

Token id 0 is padding, and so is n-gram id 0 (`NGramHash`): a text scores the same however
much padding follows it, which lets the runner cut batches by length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from hpo.models._masking import NGramHash

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NGramFeatures", "NaiveBayesLinear", "log_count_ratios"]


@keras.saving.register_keras_serializable(package="hpo")
class NGramFeatures(keras.layers.Layer):
    """Token ids [batch, time] -> feature ids [batch, order * time - ...]: the text's words and
    hashed n-grams (2 .. `order`) in one id space of `vocab_size + buckets` rows.

    Word ids keep their own rows; an n-gram's hashed id `h` (1 .. buckets - 1) becomes
    `vocab_size + h`. Padding, and an n-gram that touches it, is 0.
    """

    def __init__(self, order: int, vocab_size: int, buckets: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if order < 1 or vocab_size < 2 or buckets < 2:
            raise ValueError(
                f"need order >= 1, vocab_size >= 2 and buckets >= 2, got order={order}, "
                f"vocab_size={vocab_size}, buckets={buckets}"
            )
        self.order, self.vocab_size, self.buckets = order, vocab_size, buckets
        self._hashes = [NGramHash(n, buckets, version=2) for n in range(2, order + 1)]

    @property
    def features(self) -> int:
        """Rows of the id space: words, then hashed n-grams."""
        return self.vocab_size + self.buckets

    def build(self, input_shape: tuple[Any, ...]) -> None:
        # The hash layers hold no weights; building them says so to Keras, which otherwise warns
        # that this layer's state is unbuilt.
        for hash_layer in self._hashes:
            hash_layer.build(input_shape)

    def call(self, tokens: Any) -> Any:
        tokens = ops.cast(tokens, "int32")
        parts = [tokens]
        for hash_layer in self._hashes:
            ids = hash_layer(tokens)
            parts.append(ops.where(ops.greater(ids, 0), ids + self.vocab_size, 0))
        return ops.concatenate(parts, axis=1) if len(parts) > 1 else tokens

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        time = input_shape[1]
        if time is None:
            return (input_shape[0], None)
        return (input_shape[0], sum(max(time - n + 1, 0) for n in range(1, self.order + 1)))

    def compute_output_spec(self, tokens: Any) -> Any:
        return keras.KerasTensor(self.compute_output_shape(tokens.shape), dtype="int32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "order": self.order,
            "vocab_size": self.vocab_size,
            "buckets": self.buckets,
        }


@keras.saving.register_keras_serializable(package="hpo")
class NaiveBayesLinear(keras.layers.Layer):
    """Feature ids [batch, time] -> logits [batch, units]: the sum, over the distinct nonzero ids
    of each row, of `kernel[id] * ratios[id]`, plus a bias.

    Each feature counts once per text however often it occurs (NBSVM's binarized features).
    `ratios` are not trained: `log_count_ratios` computes them from the training split before
    training (the family's `adapt`), and they are saved with the model.
    """

    def __init__(self, features: int, units: int = 1, l2: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features, self.units, self.l2 = features, units, l2

    def build(self, input_shape: tuple[Any, ...]) -> None:
        regularizer = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.kernel = self.add_weight(
            shape=(self.features, self.units),
            initializer="zeros",
            regularizer=regularizer,
            name="kernel",
        )
        self.ratios = self.add_weight(
            shape=(self.features, self.units), initializer="zeros", trainable=False, name="ratios"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, ids: Any) -> Any:
        ids = ops.sort(ops.cast(ids, "int32"), axis=-1)
        # After sorting, a feature's first occurrence is where the id changes.
        changed = ops.not_equal(ids[:, 1:], ids[:, :-1])
        first = ops.concatenate([ops.ones_like(changed[:, :1]), changed], axis=1)
        keep = ops.cast(ops.logical_and(first, ops.not_equal(ids, 0)), self.compute_dtype)
        weights = ops.take(self.kernel, ids, axis=0) * ops.take(self.ratios, ids, axis=0)
        return ops.sum(weights * ops.expand_dims(keep, -1), axis=1) + self.bias

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (input_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "features": self.features,
            "units": self.units,
            "l2": self.l2,
        }


def log_count_ratios(
    batches: Iterator[np.ndarray], labels: np.ndarray, features: int, units: int, alpha: float
) -> np.ndarray:
    """Naive-Bayes log-count ratios [features, units] of binarized feature counts.

    For two classes (`units` 1): log((p / |p|) / (q / |q|)) with p and q the number of class-1
    and class-0 texts holding each feature, plus `alpha`. For more, each class against the rest.
    Row 0 (padding) is 0.

    Args:
        batches: Feature ids [rows, time] of consecutive rows of the training split.
        labels: Their class ids, in the same order.
    """
    classes = 2 if units == 1 else units
    counts = np.zeros((classes, features), dtype=np.float64)
    start = 0
    for ids in batches:
        rows = labels[start : start + len(ids)]
        start += len(ids)
        if len(rows) < len(ids):
            break
        # Each row sorted, a feature's first occurrence is where the id changes (as the layer
        # finds them): a sort of short rows, 7-20 times faster than np.unique over the batch.
        ids = np.sort(ids, axis=1)
        first = np.ones(ids.shape, dtype=bool)
        np.not_equal(ids[:, 1:], ids[:, :-1], out=first[:, 1:])
        first &= ids > 0
        for c in range(classes):
            chosen = first & (rows == c)[:, None]
            counts[c] += np.bincount(ids[chosen], minlength=features)
    if start != len(labels):
        raise ValueError(f"the batches hold {start} rows for {len(labels)} labels")
    total = counts.sum(axis=0)
    positive = counts[1:2] if units == 1 else counts
    p = alpha + positive
    q = alpha + (total - positive)
    ratios = np.log(p / p.sum(axis=1, keepdims=True)) - np.log(q / q.sum(axis=1, keepdims=True))
    ratios[:, 0] = 0.0
    return ratios.T.astype(np.float32)
