from __future__ import annotations

import inspect

import pytest

from hpo.directions import Direction, known_direction, settled_direction

# Keras 3's built-in metrics (keras.metrics, by class and function) that are better higher; each
# other one but the bases below is an error, a loss or a count of mistakes, as is each loss.
_MAXIMIZED = {
    "AUC",
    "Accuracy",
    "BinaryAccuracy",
    "BinaryIoU",
    "CategoricalAccuracy",
    "ConcordanceCorrelation",
    "CosineSimilarity",
    "F1Score",
    "FBetaScore",
    "IoU",
    "MeanIoU",
    "OneHotIoU",
    "OneHotMeanIoU",
    "PearsonCorrelation",
    "Precision",
    "PrecisionAtRecall",
    "R2Score",
    "Recall",
    "RecallAtPrecision",
    "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "SpecificityAtSensitivity",
    "TopKCategoricalAccuracy",
    "TrueNegatives",
    "TruePositives",
    "binary_accuracy",
    "categorical_accuracy",
    "concordance_correlation",
    "pearson_correlation",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
}
# What a model's metrics are made of, no metric of a direction.
_BASES = {"Metric", "Mean", "Sum", "MeanMetricWrapper", "Loss", "LossFunctionWrapper", "Reduction"}
_ARGUMENTS = {
    "num_classes": 2,
    "target_class_ids": [0],
    "recall": 0.5,
    "precision": 0.5,
    "specificity": 0.5,
    "sensitivity": 0.5,
}


def _builtins() -> list[tuple[Direction, str, list[str]]]:
    """Each of Keras's metrics and losses: its direction, its name in its module, and the names
    Keras logs it under (its class's or function's name, and an instance's default name)."""
    keras = pytest.importorskip("keras")
    found = []
    for module, maximized in ((keras.metrics, _MAXIMIZED), (keras.losses, set())):
        for attribute in dir(module):
            value = getattr(module, attribute)
            if attribute.startswith("_") or attribute in _BASES or not callable(value):
                continue
            if inspect.isclass(value) and issubclass(
                value, (keras.metrics.Metric, keras.losses.Loss)
            ):
                parameters = inspect.signature(value).parameters
                made = value(**{k: v for k, v in _ARGUMENTS.items() if k in parameters})
                names = [attribute, made.name.rstrip("_0123456789")]
            elif inspect.isfunction(value) and attribute not in ("get", "serialize", "deserialize"):
                names = [value.__name__]
            else:
                continue
            found.append(
                (Direction.MAX if attribute in maximized else Direction.MIN, attribute, names)
            )
    return found


def test_every_keras_metric_and_loss_is_known_by_each_name_keras_logs_it_under() -> None:
    # KerasTuner's table minimizes R2Score, F1Score, IoU and the correlations; a Keras that adds a
    # metric fails here until the table knows it.
    builtins = _builtins()
    assert len(builtins) > 60
    for expected, attribute, names in builtins:
        for name in names:
            for logged in (name, f"val_{name}", f"val_{name}_1"):
                if attribute in ("CosineSimilarity", "cosine_similarity"):
                    # A loss logged under a metric's name: which one, only the user can tell.
                    assert known_direction(logged) is Direction.MAX, logged
                    assert settled_direction(logged) is None, logged
                else:
                    assert known_direction(logged) is expected, (attribute, logged)
                    assert settled_direction(logged) is expected, (attribute, logged)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("val_r2_score", Direction.MAX),
        ("val_auc", Direction.MAX),
        ("val_AUC", Direction.MAX),  # compile(metrics=["AUC"])
        ("val_acc", Direction.MAX),
        ("val_mean_iou", Direction.MAX),
        ("val_mse", Direction.MIN),
        ("val_MAE", Direction.MIN),
        ("loss", Direction.MIN),
        ("val_huber_loss", Direction.MIN),  # keras.losses.Huber()'s name
        ("val_mean", None),
        ("val_sum", None),
        ("val_my_metric", None),
        ("val_custom_1", None),
        ("train_auc", None),
    ],
)
def test_names_keras_logs_and_names_of_ones_own(name: str, direction: Direction | None) -> None:
    assert known_direction(name) is direction


def test_cosine_similarity_is_maximized_unless_its_direction_is_given() -> None:
    # keras.metrics.CosineSimilarity is better higher; keras.losses.cosine_similarity, its
    # negative, is logged under the same name where a model is compiled with it as a metric.
    assert known_direction("val_cosine_similarity") is Direction.MAX
    assert settled_direction("val_cosine_similarity") is None
    assert settled_direction("val_r2_score") is Direction.MAX
