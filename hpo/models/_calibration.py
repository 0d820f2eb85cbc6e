"""The exported ensemble's last layer: its averaged probabilities with the fitted temperature.

`hpo.ensemble.calibration` fits the temperature and computes the same in numpy; this layer
makes `ensemble.keras` give the calibrated probabilities that were evaluated.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["Temperature"]

# As hpo.metrics.log_loss and hpo.ensemble.calibration clip.
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="hpo")
class Temperature(keras.layers.Layer):
    """Probabilities -> probabilities whose logits are divided by `temperature`, in float32.

    One column (`[batch, 1]`, the positive class) uses the logit and a sigmoid; more columns
    use `log(p)` and a softmax.

    Args:
        temperature: Above 1 makes predictions less confident, below 1 more; 1 changes nothing.
    """

    def __init__(self, temperature: float, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, x: Any) -> Any:
        p = ops.clip(ops.cast(x, "float32"), _EPSILON, 1 - _EPSILON)
        if x.shape[-1] == 1:
            # log(1 - p), not log1p(-p): ONNX has no log1p (tf2onnx refuses the export), and in
            # float32 1 - p is exact for p >= 0.5 and within 3e-8 below it, far inside the
            # export check's tolerance.
            return ops.sigmoid((ops.log(p) - ops.log(1.0 - p)) / self.temperature)
        return ops.softmax(ops.log(p) / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}
