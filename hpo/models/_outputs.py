"""A layer that turns a user model's output into hpo's probabilities (see `hpo.training.interface`).

hpo's ensemble, metrics and export take one probability per example for two classes and a
softmax row otherwise. A model that gives logits, or two columns for two classes, is stored with
this layer on top, so every stored member gives the same kind of output.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["Probabilities", "leaning_accuracy"]


@keras.saving.register_keras_serializable(package="hpo")
class Probabilities(keras.layers.Layer):
    """Logits or probabilities -> hpo's probabilities, in float32.

    Args:
        from_logits: Apply a sigmoid (one column) or softmax (more) first.
        positive_column: Two columns for two classes: keep the second, the probability of
            class 1, as `[batch, 1]`.
    """

    def __init__(self, from_logits: bool, positive_column: bool, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.from_logits, self.positive_column = from_logits, positive_column

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        if self.from_logits:
            x = ops.sigmoid(x) if x.shape[-1] == 1 else ops.softmax(x, axis=-1)
        if self.positive_column:
            x = x[:, 1:2]
        return x

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*input_shape[:-1], 1) if self.positive_column else tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "positive_column": self.positive_column,
        }


@keras.saving.register_keras_serializable(package="hpo")
def leaning_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Any:
    """Binary accuracy against the class a soft target leans to (over 0.5: the first): a soft
    target such as 0.87 is no 0 or 1 that a thresholded prediction could equal."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(y_pred))
    hits = ops.equal(y_true > 0.5, ops.cast(y_pred, "float32") > threshold)
    return ops.mean(ops.cast(hits, "float32"), axis=-1)
