"""What to try: whether an objective is better higher or lower, told from the name Keras logs.

Keras logs a metric under its `name`: a built-in metric's default is its class's name in snake
case (`R2Score()` logs "r2_score", `BinaryIoU()` "binary_io_u"), a second one of the same default
name in a process gets "_1", "_2" after it ("auc_1"), a string given to `compile(metrics=...)` is
logged as written ("mae", "AUC") and a function under its own name ("log_cosh"); the validation
value has "val_" before it. KerasTuner's `infer_metric_direction` maximizes only the metrics of
its older list and minimizes every other Keras metric, R² and F1 among them; this table knows
each of Keras 3's built-in metrics and losses, and a name it does not know has no direction.
"""

from __future__ import annotations

import enum
import re

__all__ = ["DEFAULT_OBJECTIVE", "Direction", "known_direction", "settled_direction"]

# KerasTuner's objective when it is given none: the value a hypermodel's `fit` returns,
# minimized (its `DefaultObjective`), which `hpo.Tuner` ranks by where such a fit returns one.
DEFAULT_OBJECTIVE = "default_objective"


class Direction(enum.Enum):
    """Whether the study's objective is better higher or lower."""

    MAX = "max"
    MIN = "min"


# Keras 3's metric classes (keras.metrics) by direction; their snake-case names are known too.
_MAX_CLASSES = (
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "AUC",
    "Precision",
    "Recall",
    "PrecisionAtRecall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SpecificityAtSensitivity",
    "TruePositives",
    "TrueNegatives",
    "F1Score",
    "FBetaScore",
    "IoU",
    "BinaryIoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "R2Score",
    "CosineSimilarity",
    "PearsonCorrelation",
    "ConcordanceCorrelation",
)
# Keras 3's metric classes that are errors or losses, and its loss classes (keras.losses).
_MIN_CLASSES = (
    "FalsePositives",
    "FalseNegatives",
    "MeanSquaredError",
    "RootMeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "LogCoshError",
    "LogCosh",
    "Huber",
    "Hinge",
    "SquaredHinge",
    "CategoricalHinge",
    "KLDivergence",
    "Poisson",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalGeneralizedCrossEntropy",
    "SparseCategoricalCrossentropy",
    "Dice",
    "Tversky",
    "Circle",
    "CTC",
)
# Other names Keras logs them under: default names that are not the class's in snake case,
# the short names `compile` takes, and the names people give IoU metrics.
_MAX_NAMES = (
    "acc",
    "ACC",
    "fbeta_score",
    "iou",
    "binary_iou",
    "mean_iou",
    "one_hot_iou",
    "one_hot_mean_iou",
)
_MIN_NAMES = (
    "loss",
    "logcosh",
    "huber_loss",
    "mse",
    "MSE",
    "mae",
    "MAE",
    "mape",
    "MAPE",
    "msle",
    "MSLE",
    "bce",
    "BCE",
    "kld",
    "KLD",
    "crossentropy",
    "ce",
)
# keras.metrics.CosineSimilarity is better higher; keras.losses.cosine_similarity, its negative,
# logged under the same name where a model is compiled with it as a metric, is better lower.
_EITHER = frozenset({"cosine_similarity", "CosineSimilarity"})


def _snake_case(name: str) -> str:
    # As keras.src.utils.naming.to_snake_case names a metric after its class.
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _names(classes: tuple[str, ...], others: tuple[str, ...]) -> set[str]:
    return {*classes, *map(_snake_case, classes), *others}


_KNOWN = {
    **dict.fromkeys(_names(_MIN_CLASSES, _MIN_NAMES), Direction.MIN),
    **dict.fromkeys(_names(_MAX_CLASSES, _MAX_NAMES), Direction.MAX),
}


def _metric(objective: str) -> str:
    """The metric an objective names: without "val_", and without the "_1" Keras adds to a
    second metric of a built-in name."""
    name = objective.removeprefix("val_")
    return name if name in _KNOWN else re.sub(r"_\d+$", "", name)


def known_direction(objective: str) -> Direction | None:
    """The direction of an objective named as Keras logs a built-in metric or loss.

    Args:
        objective: The name Keras logs the metric under: "val_r2_score", "val_auc", "loss".

    Returns:
        `Direction.MAX` for accuracies, AUC, precision and recall, F-scores, IoUs, R² and
        correlations; `Direction.MIN` for losses and errors; None for a name that no Keras
        built-in is logged under (a metric of the user's own, or Keras's `Mean` and `Sum`).
    """
    return _KNOWN.get(_metric(objective))


def settled_direction(objective: str) -> Direction | None:
    """The direction of an objective that no other direction makes sense for: `known_direction`,
    except for a name a Keras metric and a Keras loss share that go opposite ways
    ("cosine_similarity")."""
    name = _metric(objective)
    return None if name in _EITHER else _KNOWN.get(name)
