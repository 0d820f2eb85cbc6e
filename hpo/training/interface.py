"""How to train one trial: what a model takes and gives, read from the model itself.

hpo trains models it did not write (a user's `Sequential`, subclassed model or KerasTuner
hypermodel), so before training it reads from the built model, on a few validation examples:

- **its output**: one unit (binary tasks) or one per class, probabilities (sigmoid, softmax) or
  logits; for regression targets, one value per target. Anything else is a `ConfigError` naming
  the shape and the fix. The stored member of a classifier always gives probabilities in hpo's
  shape (`[n]` for two classes, `[n, classes]` otherwise): a model that gives logits, or two
  columns for two classes, is stored with a `Probabilities` layer on top (a regression model
  is stored as it is);
- **its labels**: class ids, or one-hot rows when its own loss expects them (KerasTuner's
  HyperResNet compiles with `categorical_crossentropy`), or regression targets as given;
- **its padding rule** (text): a model whose answer does not change when padding follows a text
  (it masks, as hpo's own families do) trains and predicts on length-bucketed batches; any other
  is trained, evaluated and exported on texts padded to the trial's `seq_len`, as KerasTuner
  would feed it, so the exported ensemble reproduces what was evaluated.

The result is recorded on the trial (`Attr.OUTPUT`, `Attr.LABELS`, `Attr.PADDING`).
"""

from __future__ import annotations

import dataclasses
import enum
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo._exception_text import exception_text
from hpo.data.inputs import (
    describe,
    given_as_list,
    input_specs,
    keras_inputs,
    packed,
    tensors,
)
from hpo.errors import ConfigError, OneValueOutput, WiderOutput

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras

__all__ = [
    "Labels",
    "ModelInterface",
    "Output",
    "Padding",
    "check_padding",
    "compile_as_built",
    "compile_model",
    "member_model",
    "members_model",
    "read_interface",
    "recompile",
    "to_probabilities",
    "tolerance",
]

# Largest difference between a text's prediction alone (cut to its length) and padded to the
# full length for a model to count as ignoring padding: float32 rounding, with margin. A model
# computing in 16 bits (mixed precision) rounds every activation to 8 or 11 bits of mantissa,
# and a program compiled for another width may round differently.
PADDING_TOLERANCE = 1e-5
HALF_PRECISION_TOLERANCE = 2e-3


def tolerance(precision: str | None) -> float:
    """How far two computations of the same prediction may differ in `precision`."""
    return PADDING_TOLERANCE if precision in (None, "float32") else HALF_PRECISION_TOLERANCE


def model_precision(model: Any) -> str:
    """The precision `model` computes in: its dtype policy's, or a 16-bit one where any of its
    layers computes in 16 bits (one made under a global `mixed_float16` policy the user's
    script set, say, in a model hpo built in float32)."""
    policy = str(getattr(getattr(model, "dtype_policy", None), "name", None) or "float32")
    if policy != "float32":
        return policy
    for layer in model._flatten_layers(include_self=False, recursive=True):
        compute = str(getattr(layer, "compute_dtype", "float32"))
        if compute in ("float16", "bfloat16"):
            return f"mixed_{compute}"
    return policy


# Rows of the validation set the probes run on.
PROBE_ROWS = 32
_ONE_HOT_LOSSES = (
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "kl_divergence",
    "kld",
    "kullback_leibler_divergence",
)


class Padding(enum.Enum):
    """How a text model's batches are padded."""

    BUCKETED = "bucketed"  # batches of similar length, cut to their longest text
    FIXED = "fixed"  # every text padded (or cut) to the trial's seq_len


class Labels(enum.Enum):
    """How labels reach the model's loss."""

    SPARSE = "sparse"  # class ids
    ONE_HOT = "one_hot"  # one row of zeros and a one per example
    TARGETS = "targets"  # regression targets, as given


@dataclass(frozen=True)
class Output:
    """What a model's output holds.

    Attributes:
        units: 1 (the probability of class 1) or one per class (2 for a binary softmax); for
            regression, one per target.
        from_logits: Logits rather than probabilities.
        regression: Values of regression targets, stored as they are.
    """

    units: int
    from_logits: bool
    regression: bool = False

    @property
    def standard(self) -> bool:
        """Whether it is already hpo's shape: probabilities, one unit for two classes (or
        regression values, taken as they are)."""
        return self.regression or (not self.from_logits and self.units != 2)

    def describe(self) -> str:
        """`sigmoid`, `softmax`, `logits` or `softmax2` (two columns for two classes), or
        `regression` (`regression3` for three targets)."""
        if self.regression:
            return "regression" if self.units == 1 else f"regression{self.units}"
        kind = "logits" if self.from_logits else ("sigmoid" if self.units == 1 else "softmax")
        return f"{kind}{self.units}" if self.units == 2 else kind


@dataclass(frozen=True)
class ModelInterface:
    """What one trial's model takes and gives (see the module's docstring)."""

    output: Output
    labels: Labels
    padding: Padding | None  # None for inputs that are never padded (images)
    padding_reason: str = ""

    def encode_labels(self, y: np.ndarray, classes: int) -> np.ndarray:
        """Labels as the model's loss takes them."""
        if self.labels is Labels.TARGETS:
            return np.asarray(y, dtype=np.float32)
        if self.labels is Labels.ONE_HOT:
            return np.eye(max(classes, self.output.units), dtype=np.float32)[y]
        return y

    def soft(self) -> ModelInterface:
        """The interface for training on probabilities (`hpo distill`): one-hot rows for
        validation labels wherever the output has a column per class."""
        return dataclasses.replace(
            self, labels=Labels.SPARSE if self.output.units == 1 else Labels.ONE_HOT
        )

    def encode_probabilities(self, p: np.ndarray) -> np.ndarray:
        """hpo's probabilities (`[n]` for two classes, else `[n, classes]`) as soft targets of
        this output: `[n]` for one unit, a column per class otherwise."""
        p = np.asarray(p, dtype=np.float32)
        if self.output.units > 1 and p.ndim == 1:
            p = np.stack([1.0 - p, p], axis=1)
        return p

    @property
    def bucketed(self) -> bool:
        """Whether batches may be cut to their longest text."""
        return self.padding is not Padding.FIXED


def read_interface(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    *,
    family: str,
    text: bool,
    masks_padding: bool = False,
    targets: int = 0,
    open_classes: bool = False,
) -> ModelInterface:
    """Reads a built (or not yet built) model's output, labels and padding rule.

    Args:
        model: The model, compiled by its family or not.
        x: A few validation inputs (text: ids padded to the trial's length).
        y: Their labels.
        classes: The task's number of classes (0 for regression).
        targets: For regression, the number of targets an example has (else 0).
        family: The family's name, for messages.
        text: Whether inputs are padded token ids.
        masks_padding: The family is known to ignore padding (hpo's own text families).
        open_classes: The classes are known from the labels only (`Task.open_classes`).

    Raises:
        ConfigError: The output does not fit the task, or the model's loss takes neither class
            ids nor one-hot labels.
    """
    # One eager call serves the output's readings: on a recurrent model (a Python loop over the
    # time steps) it takes seconds; the padding check predicts compiled.
    p = _call(model, x, family)
    if targets:
        output, labels = read_regression_output(model, x, targets, family, p), Labels.TARGETS
    else:
        output = read_output(model, x, classes, family, p, open_classes=open_classes)
        labels = read_labels(model, output, y, classes, family)
    padding, reason = None, ""
    if text:
        padding, reason = (
            (Padding.BUCKETED, "the family masks padding")
            if masks_padding
            else check_padding(model, x)
        )
    return ModelInterface(output, labels, padding, reason)


def read_output(
    model: keras.Model,
    x: np.ndarray,
    classes: int,
    family: str,
    p: np.ndarray | None = None,
    *,
    open_classes: bool = False,
) -> Output:
    """The model's output units and whether it gives logits, from a call on `x` (or `p`, the
    output of `_call` on it).

    Raises:
        WiderOutput: With `open_classes`, a softmax (or logits, for a loss compiled
            `from_logits=True`) of more units than `classes`, 3 at least.
        ConfigError: An output of another shape than the classes need.
    """
    if p is None:
        p = _call(model, x, family)
    _check_one_prediction(p, len(x), family)
    units = 1 if p.ndim == 1 else p.shape[1]
    if open_classes and units > max(classes, 2) and _class_scores(model, p):
        raise WiderOutput(
            f"family {family!r}: its model outputs {units} values an example, and the labels' "
            f"largest class id is {classes - 1}: the model is taken as a classifier of {units} "
            f"classes, of which the data holds fewer.",
            units,
        )
    binary_ok = classes == 2 and units in (1, 2)
    if not (binary_ok or (units == classes and classes > 2)):
        expected = (
            "[batch, 1] (one sigmoid unit) or [batch, 2]"
            if classes == 2
            else (f"[batch, {classes}] (a softmax over the classes)")
        )
        message = (
            f"family {family!r}: its model outputs shape {list(p.shape)} for a batch of "
            f"{len(x)}, but this task has {classes} classes: the output must be {expected}. "
            f"End the model with Dense({1 if classes == 2 else classes}, "
            f"activation={'sigmoid' if classes == 2 else 'softmax'!r})."
        )
        if units == 1 and classes > 2 and _binary_classifier(model):
            raise ConfigError(
                f"family {family!r}: its model is a classifier of two classes (one sigmoid "
                f"unit, or a binary loss), but the labels, training and validation together, "
                f"hold {classes} classes (0 to {classes - 1}). Give labels 0 and 1 only (look "
                f"for a validation label that no training label has), or end the model with "
                f"Dense({classes}, activation='softmax') and compile it with "
                f"sparse_categorical_crossentropy."
            )
        # One value an example for 3+ classes: no classifier, so the labels may be regression
        # targets (hpo.Tuner then reads them so).
        raise (OneValueOutput if units == 1 and classes > 2 else ConfigError)(message)
    if p.ndim == 1:
        p = p[:, None]
    if (loss := _regression_loss(model)) and _output_activation(model) == "linear":
        # Dense(1) and "mse" on 0/1 labels fits the labels as numbers (a linear probability
        # model): taken as logits, a sigmoid of its values was scored at 0 instead of 0.5.
        if units == 1:
            raise OneValueOutput(
                f"family {family!r}: its model gives one value an example, without an "
                f"activation, and is compiled with {loss}, a regression loss: its labels are "
                f"regression targets. For a classifier, end it with Dense(1, "
                f"activation='sigmoid') and compile it with binary_crossentropy."
            )
        raise ConfigError(
            f"family {family!r}: its model gives {units} values an example without an "
            f"activation and is compiled with {loss}, a regression loss, so its values are "
            f"neither class probabilities nor logits. For a classifier, end it with "
            f"Dense({units}, activation='softmax') and compile it with "
            f"categorical_crossentropy; for regression, give the targets as floats."
        )
    return Output(units=units, from_logits=_gives_logits(model, p))


def read_regression_output(
    model: keras.Model, x: np.ndarray, targets: int, family: str, p: np.ndarray | None = None
) -> Output:
    """The output of a model of targets (regression values, or multi-label rows), from a call
    on `x` (or `p`, the output of `_call` on it): one value per target.

    Raises:
        ConfigError: Another shape, naming the one the targets need.
    """
    if p is None:
        p = _call(model, x, family)
    _check_one_prediction(p, len(x), family)
    units = 1 if p.ndim == 1 else p.shape[1]
    if units != targets:
        raise ConfigError(
            f"family {family!r}: its model outputs shape {list(p.shape)} for a batch of "
            f"{len(x)}, but the targets have {targets} value(s) an example: the output must "
            f"be [batch, {targets}]. End the model with Dense({targets}) (no activation for "
            f"regression values, a sigmoid for multi-label rows of 0s and 1s). Class labels "
            f"are whole numbers, one class an example: floats that are not all whole are "
            f"read as regression targets."
        )
    return Output(units=units, from_logits=False, regression=True)


def _check_one_prediction(p: np.ndarray, batch: int, family: str) -> None:
    """Refuses an output of a prediction a position (`[batch, steps, classes]`, `[batch,
    height, width, classes]`): hpo ranks, ensembles and scores one prediction an example.

    Raises:
        ConfigError: Naming the shape and both ways out.
    """
    if p.ndim <= 2:
        return
    positions = int(np.prod(p.shape[1:-1]))
    raise ConfigError(
        f"family {family!r}: its model outputs shape {list(p.shape)} for a batch of {batch}: "
        f"a prediction for each of {positions} positions an example, where hpo takes one an "
        f"example (a class, or a row of values), which it ranks, ensembles and scores. For one "
        f"an example, pool or flatten before the last layer (keras.layers."
        f"GlobalAveragePooling2D() or Flatten() before the Dense); a label a position (a tag "
        f"a token, a class a pixel) is beyond hpo: tune such a model with KerasTuner."
    )


def _call(model: keras.Model, x: np.ndarray, family: str) -> np.ndarray:
    """The model's one output for `x`, as float64.

    Raises:
        ConfigError: No Keras model, a model that fails on `x`, or several outputs.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"family {family!r}: its build returned a {type(model).__name__}, not a Keras "
            f"model; build the model and end with `return model` (a keras.Model, a "
            f"keras.Sequential or a subclass)."
        )
    try:
        raw = model(tensors(x), training=False)
    except Exception as exc:
        raise ConfigError(
            f"family {family!r}: its model fails on a batch of the task's inputs "
            f"({_batch_description(x)}): {type(exc).__name__}: {exception_text(exc)}. "
            f"Take inputs of shape {_input_hint(x)}."
        ) from exc
    if isinstance(raw, (list, tuple, dict)):
        raise ConfigError(
            f"family {family!r}: its model has {len(raw)} outputs; hpo tunes models with one "
            f"output: [batch, 1] (sigmoid) or [batch, classes] (softmax) for classes, "
            f"[batch, targets] for regression."
        )
    return _numpy(raw).astype(np.float64)


def _gives_logits(model: keras.Model, p: np.ndarray) -> bool:
    from_logits = _loss_config(_compiled_loss(model)).get("from_logits")
    if from_logits is not None:
        return bool(from_logits)
    activation = _output_activation(model)
    if activation in ("sigmoid", "softmax"):
        return False
    if activation == "linear":
        return True
    # A subclassed model: read the values.
    return not _probability_rows(p)


def _class_scores(model: keras.Model, p: np.ndarray) -> bool:
    """Whether an output of several units is evidently one score a class: probabilities whose
    rows sum to 1, or logits for a loss compiled with `from_logits=True` (a layer of features
    left without a head is neither)."""
    return bool(_loss_config(_compiled_loss(model)).get("from_logits")) or _probability_rows(p)


def _compiled_loss(model: keras.Model) -> Any:
    """The loss `model` is compiled with; None for a model not compiled."""
    return getattr(model, "loss", None) if getattr(model, "compiled", False) else None


def _probability_rows(p: np.ndarray) -> bool:
    """Whether `p` (`[n, units]`) holds probabilities: values in [0, 1], whose rows sum to 1
    where there are several units (a softmax)."""
    if np.any(p < 0) or np.any(p > 1):
        return False
    return p.shape[1] == 1 or bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-3))


def _binary_classifier(model: keras.Model) -> bool:
    """Whether a model of one output unit is evidently a classifier of two classes: it ends in
    a sigmoid or is compiled with a binary loss (a regression model does neither)."""
    loss = _compiled_loss(model)
    named = loss is not None and not isinstance(loss, (list, tuple, dict))
    return _output_activation(model) == "sigmoid" or (
        named and _loss_name(loss).startswith("binary")
    )


def _output_activation(model: keras.Model) -> str | None:
    """The activation of the layer that makes a functional or Sequential model's output."""
    try:
        layer = model.layers[-1]
        outputs = model.outputs
    except (AttributeError, ValueError, IndexError):
        return None
    if not outputs or layer.output is not outputs[0]:
        return None
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def read_labels(
    model: keras.Model, output: Output, y: np.ndarray, classes: int, family: str
) -> Labels:
    """Class ids, or one-hot rows when the model's own loss expects them."""
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        return Labels.SPARSE
    loss = model.loss
    if isinstance(loss, (list, tuple, dict)):
        raise ConfigError(
            f"family {family!r}: its model is compiled with several losses ({loss!r}); hpo tunes "
            f"models with one output and one loss."
        )
    name = _loss_name(loss)
    if name in _ONE_HOT_LOSSES:
        return _agreeing_metrics(model, Labels.ONE_HOT, name, family)
    if output.units == 1:
        return Labels.SPARSE
    if name.startswith("binary"):
        # Several sigmoid units, each scoring its class (Keras's "binary_crossentropy" on
        # one-hot rows): they take the rows of the output's width, as Keras fits them.
        return _agreeing_metrics(model, Labels.ONE_HOT, name, family)
    if name.startswith("sparse"):
        return _agreeing_metrics(model, Labels.SPARSE, name, family)
    # A loss of the user's own: one-hot if it takes those and not class ids.
    import keras

    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    p = np.full((len(y), output.units), 1.0 / output.units, dtype=np.float32)
    for labels, encoded in (
        (Labels.SPARSE, y),
        (Labels.ONE_HOT, np.eye(max(classes, output.units), dtype=np.float32)[y]),
    ):
        try:
            value = _numpy(fn(encoded, p))
        except Exception:
            continue
        if np.all(np.isfinite(value)):
            return _agreeing_metrics(model, labels, name, family)
    raise ConfigError(
        f"family {family!r}: its loss {name!r} takes neither class ids nor one-hot labels for an "
        f"output of {output.units} units; compile with sparse_categorical_crossentropy or "
        f"categorical_crossentropy, or leave the model uncompiled for hpo to compile."
    )


def _agreeing_metrics(model: keras.Model, labels: Labels, loss: str, family: str) -> Labels:
    """`labels`, which the loss takes, where the model's compiled metrics take them too.

    Raises:
        ConfigError: A metric takes class ids (`sparse_...`) and the loss one-hot rows, or
            the other way round: hpo gives the loss and the metrics the same labels.
    """
    import keras

    try:
        config = keras.saving.deserialize_keras_object(model.get_compile_config() or {})
    except Exception:  # a metric Keras cannot rebuild here: fit will say
        return labels
    metrics = config.get("metrics") if isinstance(config, dict) else None
    names = [_loss_name(m) for m in metrics or () if not isinstance(m, (list, tuple, dict))]
    if labels is Labels.ONE_HOT:
        other = [n for n in names if n.startswith("sparse")]
    else:
        other = [n for n in names if n in _ONE_HOT_LOSSES or n == "categorical_accuracy"]
    if other:
        takes = {Labels.ONE_HOT: "one-hot rows", Labels.SPARSE: "class ids"}
        raise ConfigError(
            f"family {family!r}: its loss {loss!r} takes {takes[labels]} and its metric "
            f"{other[0]!r} takes "
            f"{takes[Labels.SPARSE if labels is Labels.ONE_HOT else Labels.ONE_HOT]}; hpo gives "
            f"the loss and the metrics the same labels: compile it with metrics that take "
            f"{takes[labels]} (or 'accuracy', which takes either)."
        )
    return labels


# Keras's losses of values rather than of classes, by the names `_loss_name` gives them.
_REGRESSION_LOSSES = frozenset(
    {
        "mse",
        "mae",
        "mape",
        "msle",
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "huber",
        "huber_loss",
        "log_cosh",
        "logcosh",
    }
)


def _regression_loss(model: keras.Model) -> str | None:
    """The name of the regression loss `model` is compiled with (one loss), or None."""
    loss = _compiled_loss(model)
    if loss is None or isinstance(loss, (list, tuple, dict)):
        return None
    name = _loss_name(loss)
    return name if name.lower() in _REGRESSION_LOSSES else None


def _loss_name(loss: Any) -> str:
    if isinstance(loss, str):
        return loss
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
    return str(name)


def _loss_config(loss: Any) -> dict[str, Any]:
    get_config = getattr(loss, "get_config", None)
    if get_config is None:
        return {}
    try:
        return dict(get_config())
    except Exception:
        return {}


def check_padding(model: keras.Model, x: np.ndarray) -> tuple[Padding, str]:
    """Whether the model scores each text the same cut to its length as padded to `x`'s width.

    Both are predicted compiled, by one function (`hpo.data.batching.compiled_predict`): they
    differ by the padding alone, not by an eager call's rounding beside a compiled one's.

    Returns:
        The padding rule, and why.
    """
    from hpo.data.batching import compiled_predict, cut_predictions

    predict = compiled_predict(model)
    full = predict(x)
    try:
        cut = cut_predictions(model, x, predict)
    except Exception as exc:
        return Padding.FIXED, f"its input takes only full-length texts ({type(exc).__name__})"
    difference = float(np.max(np.abs(cut.astype(np.float64) - full))) if len(x) else 0.0
    if difference > tolerance(model_precision(model)):
        return (
            Padding.FIXED,
            f"its output changes by {difference:.2g} with the padding after a text (it does not "
            f"mask padding), so every batch is padded to seq_len",
        )
    return Padding.BUCKETED, f"its output ignores padding (within {difference:.1g})"


def compile_model(
    model: keras.Model,
    interface: ModelInterface,
    make_optimizer: Callable[[], keras.optimizers.Optimizer],
    *,
    soft_targets: bool = False,
) -> None:
    """Compiles the model for training: its own loss and optimizer if it has them, else hpo's.

    Either way a classifier gains the accuracy metric the study monitors, named `accuracy` and
    right for its output (a threshold of 0 for one logit, argmax otherwise); its own metrics
    stay. A regression model compiled by its family is left as it is; any other is compiled for
    the mean squared error.

    Args:
        soft_targets: Train on probabilities (`ModelInterface.soft`): cross-entropy against
            them (binary for one unit, categorical otherwise) replaces any loss of the model's
            own, which was written for class labels; its own optimizer stays.
    """
    import keras

    output = interface.output
    own_optimizer = (
        getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None
    )
    if output.regression:
        # Targets: a model compiled for them trains as it is. Any other: a sigmoid output
        # (multi-label rows of 0s and 1s, say) on the binary cross-entropy, its binary accuracy
        # beside it; else on the mean squared error, its mean absolute error beside it.
        if own_optimizer:
            return
        if _output_activation(model) == "sigmoid":
            loss: keras.losses.Loss = keras.losses.BinaryCrossentropy()
            metric: keras.metrics.Metric = keras.metrics.BinaryAccuracy(name="accuracy")
        else:
            loss = keras.losses.MeanSquaredError()
            metric = keras.metrics.MeanAbsoluteError(name="mean_absolute_error")
        model.compile(optimizer=make_optimizer(), loss=loss, metrics=[metric])
        return
    accuracy: keras.metrics.Metric
    if output.units == 1 and soft_targets:
        # A soft target is no 0 or 1 that a thresholded prediction could equal: it is the class
        # the target leans to (validation's hard labels score the same either way).
        from hpo.models._outputs import leaning_accuracy

        accuracy = keras.metrics.MeanMetricWrapper(
            leaning_accuracy, name="accuracy", threshold=0.0 if output.from_logits else 0.5
        )
    elif output.units == 1:
        accuracy = keras.metrics.BinaryAccuracy(
            name="accuracy", threshold=0.0 if output.from_logits else 0.5
        )
    elif interface.labels is Labels.ONE_HOT:
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if soft_targets:
        soft_loss: keras.losses.Loss = (
            keras.losses.BinaryCrossentropy(from_logits=output.from_logits)
            if output.units == 1
            else keras.losses.CategoricalCrossentropy(from_logits=output.from_logits)
        )
        optimizer = model.optimizer if own_optimizer else make_optimizer()
        model.compile(optimizer=optimizer, loss=soft_loss, metrics=[accuracy])
        return
    if own_optimizer:
        recompile(model, accuracy)
        return
    loss = (
        keras.losses.BinaryCrossentropy(from_logits=output.from_logits)
        if output.units == 1
        else keras.losses.SparseCategoricalCrossentropy(from_logits=output.from_logits)
    )
    model.compile(optimizer=make_optimizer(), loss=loss, metrics=[accuracy])


# The compile arguments of the models `recompile` changed, as their builders gave them, and
# the accuracy metric it added.
_BUILT_AS: weakref.WeakKeyDictionary[Any, tuple[dict[str, Any], Any]] = weakref.WeakKeyDictionary()


def recompile(model: keras.Model, accuracy: keras.metrics.Metric | str) -> None:
    """Compiles a compiled model again as it was (its optimizer, loss, loss weights and other
    metrics), with `accuracy` in place of any accuracy metric of its own."""
    config = dict(getattr(getattr(model, "_compile_config", None), "config", {}) or {})
    _BUILT_AS[model] = (config, accuracy)
    own = [m for m in (config.get("metrics") or []) if not _is_accuracy(m)]
    _compile_as(model, config, metrics=[*own, accuracy])


def compile_as_built(model: keras.Model, objective: str) -> None:
    """Compiles `model` again as its builder compiled it, where `recompile` changed that: its
    own metrics, so that `model.evaluate` gives what its code expects (`loss, auc =
    model.evaluate(...)`), as KerasTuner's `get_best_models` does; hpo's accuracy metric
    stays only where it is the `objective` and the model has none of its own. A model its
    builder left uncompiled keeps hpo's compilation."""
    built = _BUILT_AS.pop(model, None)
    if built is None:
        return
    config, accuracy = built
    metrics = list(config.get("metrics") or [])
    if objective.removeprefix("val_") == "accuracy" and not any(map(_is_accuracy, metrics)):
        metrics.append(accuracy)
    # [] for none: Keras keeps a model's earlier metrics where compile is given None.
    _compile_as(model, config, metrics=metrics)


def _compile_as(model: keras.Model, config: dict[str, Any], metrics: Any) -> None:
    model.compile(
        optimizer=model.optimizer,
        loss=model.loss,
        loss_weights=config.get("loss_weights"),
        metrics=metrics,
        weighted_metrics=config.get("weighted_metrics"),
        run_eagerly=bool(config.get("run_eagerly", False)),
        steps_per_execution=config.get("steps_per_execution", 1),
        jit_compile=config.get("jit_compile", "auto"),
    )


def _is_accuracy(metric: Any) -> bool:
    name = metric if isinstance(metric, str) else getattr(metric, "name", "")
    return name in ("accuracy", "acc")


def to_probabilities(predictions: np.ndarray, output: Output) -> np.ndarray:
    """A model's raw predictions as hpo's probabilities: `[n]` for two classes, else a softmax."""
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if output.from_logits:
        if p.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-p))
        else:
            e = np.exp(p - p.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
    if p.ndim == 2 and output.units == 2:
        p = p[:, 1]
    return p


def member_model(model: keras.Model, output: Output, x: np.ndarray) -> keras.Model:
    """The model as the ensemble takes it: probabilities in hpo's shape.

    A model that already gives them is returned as it is; any other gets a `Probabilities`
    layer on top (a sigmoid or softmax for logits, the positive column for two columns).
    """
    if output.standard:
        return model
    import keras

    from hpo.models._outputs import Probabilities

    inputs = _model_input(model, x)
    probabilities = Probabilities(
        from_logits=output.from_logits, positive_column=output.units == 2, name="probabilities"
    )(model(inputs))
    return keras.Model(inputs, probabilities, name=f"{model.name}_probabilities")


def members_model(member: keras.Model) -> keras.Model:
    """The model a member was made from (the inverse of `member_model`): the model inside the
    `Probabilities` layer `member_model` put on top of it, or else the member itself."""
    import keras

    from hpo.models._outputs import Probabilities

    # After its inputs (one, or one per input of a model of several), the two layers.
    layers = [x for x in member.layers if not isinstance(x, keras.layers.InputLayer)]
    if (
        len(layers) == 2
        and isinstance(layers[0], keras.Model)
        and isinstance(layers[1], Probabilities)
    ):
        return layers[0]
    return member


def _model_input(model: keras.Model, x: np.ndarray) -> Any:
    import keras

    if packed(x):
        return keras_inputs(x)
    try:
        spec = model.inputs[0]
        return keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name="inputs")
    except (AttributeError, ValueError, IndexError, TypeError):
        shape = (None,) if x.ndim == 2 and np.issubdtype(x.dtype, np.integer) else x.shape[1:]
        return keras.Input(shape=shape, dtype=str(x.dtype), name="inputs")


def _batch_description(x: np.ndarray) -> str:
    if packed(x):
        return f"{len(x)} examples of {describe(x)}"
    return f"shape {list(x.shape)}, {x.dtype}"


def _input_hint(x: np.ndarray) -> str:
    if packed(x):
        inputs = ", ".join(
            f"keras.Input(shape={shape}, dtype={str(dtype)!r}, name={name!r})"
            for name, shape, dtype in input_specs(x)
        )
        given = "in this order" if given_as_list(x) else "matched by name"
        return f"per input ({given}): {inputs}"
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        return "(None,) of token ids: keras.Input(shape=(None,), dtype='int32')"
    return f"{tuple(x.shape[1:])} of {x.dtype}: keras.Input(shape={tuple(x.shape[1:])})"


def _numpy(value: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))
