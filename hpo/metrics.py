"""Classification metrics on predicted probabilities (numpy only).

Probabilities come in one of two shapes, and every function takes both:

- binary: `[n]`, the probability of class 1 (a sigmoid output);
- multi-class: `[n, classes]`, one row per example summing to 1 (a softmax output).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ECE_BINS",
    "absolute_error",
    "accuracy",
    "as_probabilities",
    "binary_accuracy",
    "binary_targets",
    "blend",
    "chance_accuracy",
    "confusion_matrix",
    "expected_calibration_error",
    "log_loss",
    "per_class_accuracy",
    "reliability_curve",
    "roc_auc",
    "squared_error",
    "summary",
    "top_k_accuracy",
]

_EPS = 1e-7
# The equal-width bins of every expected calibration error hpo reports (the report's summaries,
# its calibration section, ensemble.png): one model, one ECE.
ECE_BINS = 15


def as_probabilities(predictions: np.ndarray) -> np.ndarray:
    """A model's output as float64 `[n]` (one sigmoid unit) or `[n, classes]` (softmax)."""
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        return p[:, 0]
    return p


def blend(weights: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Members' predictions averaged by weight: `[members, n(, classes)]` -> `[n(, classes)]`."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), predictions, axes=1)


def predicted_class(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each example."""
    p = np.asarray(probabilities)
    return (p > 0.5).astype(np.int64) if p.ndim == 1 else np.argmax(p, axis=1)


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Fraction of examples whose most probable class is the label (binary: p > 0.5 is 1)."""
    return float(np.mean(predicted_class(probabilities) == np.asarray(labels)))


def chance_accuracy(probabilities: np.ndarray) -> float:
    """Accuracy of a uniform guess: 1 / classes."""
    p = np.asarray(probabilities)
    return 0.5 if p.ndim == 1 else 1.0 / p.shape[1]


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int = 3) -> float:
    """Fraction of examples whose label is among the `k` most probable classes (multi-class)."""
    p = np.asarray(probabilities)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy, with probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels)
    if p.ndim == 2:
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    y = y.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def squared_error(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Mean squared error of regression predictions (over examples and targets)."""
    t = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64).reshape(t.shape)
    return float(np.mean((p - t) ** 2))


def absolute_error(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Mean absolute error of regression predictions (over examples and targets)."""
    t = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64).reshape(t.shape)
    return float(np.mean(np.abs(p - t)))


def binary_targets(targets: np.ndarray) -> bool:
    """Whether targets are all 0s and 1s (multi-label rows, say)."""
    t = np.asarray(targets)
    return bool(t.size and ((t == 0) | (t == 1)).all())


def binary_accuracy(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Keras's binary accuracy: the share of 0/1 targets a probability over 0.5 gets right,
    each target of each example alike (multi-label rows)."""
    t = np.asarray(targets, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64).reshape(t.shape)
    return float(np.mean((p > 0.5) == (t > 0.5)))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the ROC curve (binary): the Mann-Whitney statistic, ties counted as one half."""
    y = np.asarray(labels) == 1
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(probabilities, kind="mergesort")
    sorted_p = np.asarray(probabilities)[order]
    ranks = np.empty(len(order), dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2
    ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def reliability_curve(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, observed frequency and count, per equal-width bin; empty bins left out.

    Binary: the predicted probability of class 1 against the observed fraction of class 1.
    Multi-class: the top class's probability against the fraction where it is right.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim == 2:
        confidence, hit = p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)
    else:
        confidence, hit = p, y.astype(np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=confidence, minlength=bins)
    rate = np.bincount(index, weights=hit, minlength=bins)
    full = counts > 0
    return mean_p[full] / counts[full], rate[full] / counts[full], counts[full]


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Count-weighted mean gap between confidence and observed frequency over bins."""
    mean_p, rate, counts = reliability_curve(labels, probabilities, bins)
    return float(np.sum(counts * np.abs(mean_p - rate)) / np.sum(counts))


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, classes: int) -> np.ndarray:
    """Counts `[true class, predicted class]`."""
    index = np.asarray(labels) * classes + predicted_class(probabilities)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(labels: np.ndarray, probabilities: np.ndarray, classes: int) -> list[float]:
    """Accuracy on the examples of each class (its recall); NaN for a class with none."""
    matrix = confusion_matrix(labels, probabilities, classes)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in np.diag(matrix) / totals]


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Headline metrics, rounded to 6 places.

    Binary: accuracy, ROC AUC, log-loss and expected calibration error. Multi-class: accuracy,
    top-3 accuracy, log-loss and (top-label) expected calibration error.
    """
    second = (
        ("roc_auc", roc_auc(labels, probabilities))
        if np.ndim(probabilities) == 1
        else ("top3_accuracy", top_k_accuracy(labels, probabilities, 3))
    )
    return {
        "accuracy": round(accuracy(labels, probabilities), 6),
        second[0]: round(second[1], 6),
        "log_loss": round(log_loss(labels, probabilities), 6),
        "ece": round(expected_calibration_error(labels, probabilities), 6),
    }
