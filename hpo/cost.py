"""What to try, and at what price: a trial's seconds per epoch, estimated before it trains.

The estimate starts from the model itself: floating-point operations per example (each layer
with weights costs about two operations per weight per output position), times the examples an
epoch computes (for bucketed text, the token positions it really computes), three times for the
training pass (forward and backward) and once for validation; plus a per-step cost that grows
with the number of weights (the optimizer updates every weight every step). Constants measured on
a 2-core CPU make this a prior; the trials a study has already run calibrate it: the estimate is
scaled by the median ratio of actual to prior seconds per epoch of earlier trials of the same
family and precision (or of any family, before there is one).

A model the prior cannot analyse (a subclassed model, a layer whose output shape is unknown) is
estimated from what earlier trials of its family measured: the median seconds per epoch; before
any has, it has no estimate and its first epoch is the measurement.

Calibration is per device: the prior's rate is a CPU's, so on a GPU a trial has no estimate
until a trial of the study has measured that device (then every family takes that device's
ratio until it has its own).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.contract import Attr

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import keras
    from optuna.trial import FrozenTrial

__all__ = [
    "Calibration",
    "CostFeatures",
    "calibration",
    "estimate_epoch_seconds",
    "example_flops",
]

# Prior constants, measured with benchmarks/bench_padding.py on a 2-core CPU (float32).
PRIOR_FLOPS_PER_S = 150e9
PRIOR_STEP_S = 0.01
PRIOR_PARAM_STEP_S = 2e-9


@dataclass(frozen=True)
class CostFeatures:
    """What an epoch of one trial computes.

    Attributes:
        flops_per_example: Forward-pass operations for one example at the reference shape.
        train_examples: Training examples per epoch, in reference-shape equivalents (for
            bucketed text: computed token positions / reference length).
        val_examples: Validation examples likewise.
        steps: Optimizer steps per epoch.
        params: Trainable weights.
    """

    flops_per_example: float
    train_examples: float
    val_examples: float
    steps: int
    params: int

    @property
    def flops_per_epoch(self) -> float:
        """Operations per epoch: forward and backward on training data, forward on validation."""
        return self.flops_per_example * (3 * self.train_examples + self.val_examples)

    def prior_seconds(self) -> float:
        """Seconds per epoch before any calibration."""
        return self.flops_per_epoch / PRIOR_FLOPS_PER_S + self.steps * (
            PRIOR_STEP_S + self.params * PRIOR_PARAM_STEP_S
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


def example_flops(model: keras.Model, input_shape: tuple[int, ...]) -> float:
    """Forward-pass operations of `model` for one example of `input_shape` (batch dim excluded).

    Dimensions left open in the model's input (a text model takes any length) are fixed to
    `input_shape` by rebuilding the model from its config, so every layer's output size is known.
    """
    import keras

    if any(d is None for d in model.inputs[0].shape[1:]):
        # Functional and Sequential models alike: fix the input's shape in the config and
        # rebuild (a subclassed model has no input layer to fix, and raises).
        config = model.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"]["batch_shape"] = [None, *input_shape]
        if "build_input_shape" in config:
            config["build_input_shape"] = [None, *input_shape]
        model = type(model).from_config(config)
    total = 0.0
    for layer in model.layers:
        weights = sum(math.prod(w.shape) for w in layer.trainable_weights)
        if not weights or isinstance(layer, keras.layers.Embedding):
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        positions = math.prod(d or 1 for d in outputs[0].shape[1:-1])
        total += 2.0 * weights * positions
    return total


@dataclass(frozen=True)
class Calibration:
    """What earlier trials measured, by "family/precision".

    Attributes:
        ratios: Median ratio of actual to prior seconds per epoch (and overall, under "*").
        measured: Median actual seconds per epoch, for models the prior cannot analyse.
    """

    ratios: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)

    def estimate(
        self, features: CostFeatures | None, family: str, precision: str, device: str = "cpu"
    ) -> float | None:
        """Seconds per epoch of a trial of `family` in `precision` on `device`, or None if
        nothing tells (a model the prior cannot cost, or a GPU no trial has measured yet)."""
        key = _key(family, precision, device)
        if features is None:
            return self.measured.get(key)
        scale = self.ratios.get(key, self.ratios.get(_key("*", "*", device)))
        if scale is None:
            if device != "cpu":
                return None
            scale = 1.0
        return features.prior_seconds() * scale


def _key(family: str, precision: str, device: str) -> str:
    # Trials on a CPU keep the keys they had before devices were told apart.
    suffix = "" if device == "cpu" else f"@{device}"
    if family == "*":
        return f"*{suffix}"
    return f"{family}/{precision}{suffix}"


def calibration(trials: Iterable[FrozenTrial]) -> Calibration:
    """Medians of what earlier trials measured, by "family/precision" (see `Calibration`).

    Only trials that recorded an epoch's time (they trained at least one epoch) count; ratios
    need the prior too.
    """
    ratios: dict[str, list[float]] = {}
    measured: dict[str, list[float]] = {}
    for trial in trials:
        prior = trial.user_attrs.get(Attr.PRIOR_EPOCH_SECONDS)
        actual = trial.user_attrs.get(Attr.EPOCH_SECONDS)
        if not actual:
            continue
        attrs = trial.user_attrs
        device = str(attrs.get(Attr.DEVICE, "cpu"))
        key = _key(str(attrs.get(Attr.FAMILY)), str(attrs.get(Attr.PRECISION)), device)
        measured.setdefault(key, []).append(actual)
        if prior:
            ratios.setdefault(key, []).append(actual / prior)
            ratios.setdefault(_key("*", "*", device), []).append(actual / prior)
    return Calibration(
        ratios={key: statistics.median(values) for key, values in ratios.items()},
        measured={key: statistics.median(values) for key, values in measured.items()},
    )


def estimate_epoch_seconds(
    features: CostFeatures, family: str, precision: str, ratios: Mapping[str, float]
) -> float:
    """Calibrated seconds per epoch of a trial of `family` in `precision`."""
    scale = ratios.get(f"{family}/{precision}", ratios.get("*", 1.0))
    return features.prior_seconds() * scale
