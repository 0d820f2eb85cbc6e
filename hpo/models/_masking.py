"""Padding-aware layers: a text model scores a review the same however much padding follows it.

Token id 0 is padding. A model built from these layers zeroes padded positions after every block
and pools only over real tokens (an n-gram that touches padding is padding too), so a review
scores the same alone, in a batch cut to its own length, or padded to 800 tokens. That is what
lets the runner batch reviews of similar length and cut each batch to its longest review (see
`hpo.data.batching`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["MaskedGlobalPooling1D", "MaskedPooling1D", "NGramHash", "PaddingMask", "ZeroPadded"]

# Added to padded positions before a max: far below any activation, and finite in bfloat16.
_NEG = -1e9


def _fill(x: Any, mask: Any, value: float) -> Any:
    """`x` where `mask` is 1, `value` where it is 0: a select, not a product, so a diverging
    model's infinite activations never turn padding into NaN (inf * 0)."""
    return ops.where(ops.greater(mask, 0), x, ops.cast(value, x.dtype))


@keras.saving.register_keras_serializable(package="hpo")
class PaddingMask(keras.layers.Layer):
    """Token ids [batch, time] -> float mask [batch, time, 1]: 1 for a token, 0 for padding."""

    def call(self, tokens: Any) -> Any:
        return ops.expand_dims(ops.cast(ops.not_equal(tokens, 0), self.compute_dtype), -1)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*input_shape, 1)


@keras.saving.register_keras_serializable(package="hpo")
class ZeroPadded(keras.layers.Layer):
    """Sets padded positions of [batch, time, ch] values to exactly zero.

    A select, not a product (see `_fill`).
    """

    def call(self, x: Any, real: Any) -> Any:
        return _fill(x, real, 0.0)

    def compute_output_shape(self, x_shape: tuple[Any, ...], real_shape: Any) -> Any:
        return x_shape


@keras.saving.register_keras_serializable(package="hpo")
class MaskedPooling1D(keras.layers.Layer):
    """Max or average pooling over real positions only; returns the pooled values and mask.

    Args:
        kind: "max" or "average".
        pool_size: Window and stride.
    """

    def __init__(self, kind: str, pool_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in ("max", "average"):
            raise ValueError(f"kind must be 'max' or 'average', got {kind!r}")
        self.kind, self.pool_size = kind, pool_size

    def call(self, x: Any, real: Any) -> tuple[Any, Any]:
        # `real` is the PaddingMask (not named `mask`, which Keras reserves for its own masks).
        mask = ops.cast(real, x.dtype)
        size = self.pool_size
        # Windows start at position 0 whatever the length ("same" padding would centre them, so
        # they would move with the amount of padding): pad the end to a multiple of the window.
        extra = (-ops.shape(x)[1]) % size
        x = ops.pad(x, [[0, 0], [0, extra], [0, 0]])
        mask = ops.pad(mask, [[0, 0], [0, extra], [0, 0]])
        pooled_mask = ops.max_pool(mask, size, size, padding="valid")
        if self.kind == "max":
            pooled = ops.max_pool(_fill(x, mask, _NEG), size, size, padding="valid")
        else:
            total = ops.average_pool(_fill(x, mask, 0.0), size, size, padding="valid")
            count = ops.average_pool(mask, size, size, padding="valid")
            pooled = total / ops.maximum(count, 1e-6)
        return _fill(pooled, pooled_mask, 0.0), pooled_mask

    def compute_output_spec(self, x: Any, real: Any) -> tuple[Any, Any]:
        time = None if x.shape[1] is None else -(-x.shape[1] // self.pool_size)
        return (
            keras.KerasTensor((x.shape[0], time, x.shape[2]), dtype=x.dtype),
            keras.KerasTensor((real.shape[0], time, 1), dtype=x.dtype),
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="hpo")
class MaskedGlobalPooling1D(keras.layers.Layer):
    """Global max or average over real positions only: [batch, time, ch] -> [batch, ch].

    Args:
        kind: "max" or "average".
    """

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in ("max", "average"):
            raise ValueError(f"kind must be 'max' or 'average', got {kind!r}")
        self.kind = kind

    def call(self, x: Any, real: Any) -> Any:
        # `real` is the PaddingMask (not named `mask`, which Keras reserves for its own masks).
        mask = ops.cast(real, x.dtype)
        count = ops.sum(mask, axis=1)
        if self.kind == "max":
            # An empty review (no token at all) pools to zeros rather than to the fill value.
            pooled = ops.max(_fill(x, mask, _NEG), axis=1)
            return _fill(pooled, ops.minimum(count, 1.0), 0.0)
        return ops.sum(_fill(x, mask, 0.0), axis=1) / ops.maximum(count, 1.0)

    def compute_output_shape(self, x_shape: tuple[Any, ...], real_shape: Any) -> Any:
        return (x_shape[0], x_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind}


# Hashing, version 1: h = (h * _PRIME + token) mod _MODULUS over the n tokens, in int64 (h < 2^31
# and tokens < 2^31, so h * _PRIME + token < 2^52), then into the buckets. JAX computes in 32
# bits unless told otherwise, so version 2, every new model's, keeps to int32: h = h * _PRIME +
# token wrapping modulo 2^32 as every backend's int32 arithmetic does, then a floor modulo into
# the buckets (non-negative on TensorFlow, JAX and PyTorch alike).
_PRIME = 1_000_003
_MODULUS = 2**31 - 1
HASH_VERSION = 2


@keras.saving.register_keras_serializable(package="hpo")
class NGramHash(keras.layers.Layer):
    """Token ids [batch, time] -> hashed n-gram ids [batch, time - n + 1] in [1, buckets).

    The n-gram that starts at position i covers tokens i .. i + n - 1; an n-gram that touches
    padding (id 0) gets id 0, so it is padding too.

    Args:
        n: Tokens per n-gram (2 or more).
        buckets: Rows of the n-gram embedding; id 0 is reserved for padding.
        version: The hash (see above): 2 for new models; checkpoints saved before versions
            existed load as 1, which needs 64-bit integers (TensorFlow, PyTorch).
    """

    def __init__(self, n: int, buckets: int, version: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n < 2 or buckets < 2:
            raise ValueError(f"need n >= 2 and buckets >= 2, got n={n}, buckets={buckets}")
        if version not in (1, 2):
            raise ValueError(f"hash version must be 1 or 2, got {version}")
        self.n, self.buckets, self.version = n, buckets, version

    def call(self, tokens: Any) -> Any:
        dtype = "int64" if self.version == 1 else "int32"
        tokens = ops.cast(tokens, dtype)
        length = ops.shape(tokens)[1]
        h = ops.zeros_like(tokens[:, : length - self.n + 1])
        real = ops.ones_like(h)
        for offset in range(self.n):
            part = tokens[:, offset : length - self.n + 1 + offset]
            if self.version == 1:
                h = ops.mod(h * _PRIME + part, _MODULUS)
            else:
                h = h * ops.cast(_PRIME, dtype) + part
            real = real * ops.cast(ops.not_equal(part, 0), dtype)
        rows = ops.cast(self.buckets - 1, dtype)
        # The floor modulo of a wrapped (negative) hash, taken again of a sum that is never
        # negative: the same ids, and the same in ONNX, where tf2onnx writes TensorFlow's
        # FloorMod of integers as a remainder truncated toward zero (negative for negative h).
        ids = ops.mod(ops.mod(h, rows) + rows, rows) + 1
        return ops.cast(ids * real, "int32")

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        time = None if input_shape[1] is None else max(input_shape[1] - self.n + 1, 0)
        return (input_shape[0], time)

    def compute_output_spec(self, tokens: Any) -> Any:
        return keras.KerasTensor(self.compute_output_shape(tokens.shape), dtype="int32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n": self.n,
            "buckets": self.buckets,
            "version": self.version,
        }
