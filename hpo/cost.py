"""What to try, and at what price: a trial's seconds per epoch, estimated before it trains.

The estimate starts from the model itself: floating-point operations per example (each layer
with weights costs about two operations per weight per output position) and the values its
layers write per example (every layer's output: the memory traffic that bounds depthwise
convolutions, normalization and activations, which FLOPs miss), times the examples an epoch
computes (for bucketed text, the token positions it really computes), three times for the
training pass (forward and backward) and once for validation; plus a per-step cost that grows
with the number of weights (the optimizer updates every weight every step). Rates measured on a
2-core CPU make this a prior: hpo's defaults (`DEFAULT_RATES`), or a family's own where its module
sets `PRIOR_RATES` (hpo's text families do: what each unit of work costs differs between them,
fitted on earlier studies with `benchmarks/bench_rates.py`); the trials a study has already run
calibrate it: the estimate is
scaled by the ratio of actual to prior seconds per epoch that earlier trials measured: their
family's bias (same family and precision; none before there is one) times the machine's recent
speed (recent trials weigh more, see `calibration`).

A model the prior cannot analyse (a subclassed model, a layer whose output shape is unknown) is
estimated from what earlier trials of its family measured: the median seconds per epoch; before
any has, it has no estimate and its first epoch is the measurement.

Calibration is per device: the prior's rate is a CPU's, so on a GPU a trial has no estimate
until a trial of the study has measured that device (then every family takes that device's
ratio until it has its own).
"""

from __future__ import annotations

import datetime
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.contract import Attr

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import keras
    from optuna.trial import FrozenTrial

__all__ = [
    "DEFAULT_RATES",
    "Calibration",
    "CostFeatures",
    "ExampleWork",
    "Priced",
    "Rates",
    "calibration",
    "cheapest_epoch",
    "example_flops",
    "example_work",
    "family_rates",
    "weighted_median",
]

# Calibration follows the machine's speed with this half-life, in finished trials.
HALF_LIFE = 4

# Prior constants for one core of a 2-core CPU (float32). Their ratios are what matters (the
# calibration scales each family's prior by what its trials measured); their level only prices
# a family's first trial and the budget check before any trial. First measured with
# benchmarks/bench_padding.py; the per-weight step cost (the optimizer's dense update of every
# weight, embeddings included) then rose 5 times beside the others when replaying two IMDB
# studies (`benchmarks/bench_clock.py --param-step-s`, RESULTS.md): hashed n-gram tables of
# 8-67M weights cost their epoch in those updates, not in operations. Then the output values
# (below), and all four halved together, so that the median actual/prior ratio of the two
# studies that measured them was about 1 again (0.54 without it).
PRIOR_FLOPS_PER_S = 300e9
PRIOR_STEP_S = 0.005
PRIOR_PARAM_STEP_S = 5e-9
# Layer output values written per second. Within a family the actual/prior ratio rose with the
# output values per FLOP (correlation 0.76-0.82 in each of the four text families of two 1-hour
# IMDB studies); with this term the replayed median error fell from 33% and 29% to 20% and 18%
# (`benchmarks/bench_clock.py --rebuild`, RESULTS.md).
PRIOR_ELEMENTS_PER_S = 6e8


@dataclass(frozen=True)
class Rates:
    """What each unit of an epoch's work costs, in seconds (one core of a 2-core CPU, float32).

    Their ratios are what matters within a family (the calibration scales its prior by what its
    trials measured); their level prices a family's first trial and the budget check before any
    trial.

    Attributes:
        flop_s: Per floating-point operation.
        element_s: Per layer output value written.
        step_s: Per optimizer step.
        param_step_s: Per weight per optimizer step (the update of every weight).
    """

    flop_s: float = 1 / PRIOR_FLOPS_PER_S
    element_s: float = 1 / PRIOR_ELEMENTS_PER_S
    step_s: float = PRIOR_STEP_S
    param_step_s: float = PRIOR_PARAM_STEP_S

    def seconds(self, flops: float, elements: float, steps: float, params: float) -> float:
        """Seconds for this work: operations and output values per epoch, optimizer steps
        per epoch, and trainable weights."""
        return (
            flops * self.flop_s
            + elements * self.element_s
            + steps * (self.step_s + params * self.param_step_s)
        )


DEFAULT_RATES = Rates()


def family_rates(family: object) -> Rates:
    """A family's prior rates: its module's `PRIOR_RATES`, else `DEFAULT_RATES`."""
    rates = getattr(family, "PRIOR_RATES", None)
    return rates if isinstance(rates, Rates) else DEFAULT_RATES


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
        elements_per_example: Output values all layers write for one example at the reference
            shape (0 in trials recorded before it was counted).
    """

    flops_per_example: float
    train_examples: float
    val_examples: float
    steps: int
    params: int
    elements_per_example: float = 0.0

    @property
    def _passes(self) -> float:
        # Forward and backward on training data, forward on validation.
        return 3 * self.train_examples + self.val_examples

    @property
    def flops_per_epoch(self) -> float:
        """Operations per epoch: forward and backward on training data, forward on validation."""
        return self.flops_per_example * self._passes

    @property
    def elements_per_epoch(self) -> float:
        """Output values written per epoch, counted as `flops_per_epoch`."""
        return self.elements_per_example * self._passes

    def prior_seconds(self, rates: Rates = DEFAULT_RATES) -> float:
        """Seconds per epoch before any calibration, at the family's `rates`."""
        return rates.seconds(self.flops_per_epoch, self.elements_per_epoch, self.steps, self.params)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


@dataclass(frozen=True)
class ExampleWork:
    """One example's forward pass: operations, and output values all layers write."""

    flops: float
    elements: float


def example_flops(model: keras.Model, input_shape: tuple[int, ...]) -> float:
    """Forward-pass operations of `model` for one example of `input_shape` (see `example_work`)."""
    return example_work(model, input_shape).flops


def example_work(model: keras.Model, input_shape: tuple[int, ...]) -> ExampleWork:
    """Forward-pass work of `model` for one example of `input_shape` (batch dim excluded).

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
    flops = elements = 0.0
    for layer in model.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        elements += sum(math.prod(d or 1 for d in output.shape[1:]) for output in outputs)
        weights = sum(math.prod(w.shape) for w in layer.trainable_weights)
        if not weights or isinstance(layer, keras.layers.Embedding):
            continue
        positions = math.prod(d or 1 for d in outputs[0].shape[1:-1])
        flops += 2.0 * weights * positions
    return ExampleWork(flops, elements)


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
        self,
        features: CostFeatures | None,
        family: str,
        precision: str,
        device: str = "cpu",
        rates: Rates = DEFAULT_RATES,
    ) -> float | None:
        """Seconds per epoch of a trial of `family` in `precision` on `device` (its prior at
        the family's `rates`, calibrated), or None if nothing tells (a model the prior cannot
        cost, or a GPU no trial has measured yet)."""
        key = _key(family, precision, device)
        if features is None:
            return self.measured.get(key)
        scale = self.ratios.get(key, self.ratios.get(_key("*", "*", device)))
        if scale is None:
            if device != "cpu":
                return None
            scale = 1.0
        return features.prior_seconds(rates) * scale


@dataclass(frozen=True)
class Priced:
    """A model as the clock prices it before it trains: its calibration key and its work.

    Attributes:
        features: What one of its epochs computes; None for a model the prior cannot analyse.
        rates: Its family's prior rates (`family_rates`).
    """

    family: str
    precision: str
    device: str
    features: CostFeatures | None
    rates: Rates = DEFAULT_RATES

    def seconds(self, calibration: Calibration) -> float | None:
        """Its seconds per epoch under `calibration`; None where nothing tells."""
        return calibration.estimate(
            self.features, self.family, self.precision, self.device, self.rates
        )


def cheapest_epoch(models: Iterable[Priced], calibration: Calibration) -> float | None:
    """The fewest seconds per epoch among `models` under `calibration`; None if none is priced."""
    seconds = [s for model in models if (s := model.seconds(calibration)) is not None]
    return min(seconds) if seconds else None


def _key(family: str, precision: str, device: str) -> str:
    # Trials on a CPU keep the keys they had before devices were told apart.
    suffix = "" if device == "cpu" else f"@{device}"
    if family == "*":
        return f"*{suffix}"
    return f"{family}/{precision}{suffix}"


def calibration(trials: Iterable[FrozenTrial]) -> Calibration:
    """What earlier trials measured, by "family/precision" (see `Calibration`).

    Only trials that recorded an epoch's time (they trained at least one epoch) count; ratios
    need the prior too. A ratio is the family's median ratio (what the prior misjudges about that
    kind of model) times how much faster or slower than their family's median the recent trials
    ran (a median weighted by recency: half weight every `HALF_LIFE` trials back, in the order
    they finished), so that a machine that becomes busier or quieter is followed within a few
    trials instead of being averaged over the whole study.
    """
    timed = [t for t in trials if t.user_attrs.get(Attr.EPOCH_SECONDS)]
    timed.sort(key=_finished)
    measured: dict[str, list[float]] = {}
    # device -> [(key, ratio)] in the order the trials finished
    ratios: dict[str, list[tuple[str, float]]] = {}
    for trial in timed:
        attrs = trial.user_attrs
        actual = float(attrs[Attr.EPOCH_SECONDS])
        device = str(attrs.get(Attr.DEVICE, "cpu"))
        key = _key(str(attrs.get(Attr.FAMILY)), str(attrs.get(Attr.PRECISION)), device)
        measured.setdefault(key, []).append(actual)
        if prior := attrs.get(Attr.PRIOR_EPOCH_SECONDS):
            ratios.setdefault(device, []).append((key, actual / float(prior)))
    scales: dict[str, float] = {}
    for device, rows in ratios.items():
        # Each family's median ratio, and how much slower or faster than its family's median
        # each trial ran: the recent ones say how fast the machine is now.
        median = {
            key: statistics.median(r for k, r in rows if k == key) for key in {k for k, _ in rows}
        }
        ages = range(len(rows) - 1, -1, -1)
        speed = weighted_median(
            [ratio / median[key] for key, ratio in rows],
            [0.5 ** (age / HALF_LIFE) for age in ages],
        )
        scales |= {key: m * speed for key, m in median.items()}
        # A family not measured yet: the median of all ratios.
        scales[_key("*", "*", device)] = statistics.median(r for _, r in rows) * speed
    return Calibration(
        ratios=scales,
        measured={key: statistics.median(values) for key, values in measured.items()},
    )


def _finished(trial: FrozenTrial) -> datetime.datetime:
    # A trial still running has timed an epoch just now: the latest news of all.
    return trial.datetime_complete or datetime.datetime.max


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at which the sorted values' cumulative weight reaches half the total (the mean
    of the two middle values where it falls exactly between them, as `statistics.median`)."""
    pairs = sorted(zip(values, weights, strict=True))
    half = sum(weights) / 2
    cumulative = 0.0
    for i, (value, weight) in enumerate(pairs):
        cumulative += weight
        if math.isclose(cumulative, half) and i + 1 < len(pairs):
            return (value + pairs[i + 1][0]) / 2
        if cumulative > half:
            return value
    return pairs[-1][0]
