"""Binary-classification metrics on predicted probabilities (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy",
    "expected_calibration_error",
    "log_loss",
    "reliability_curve",
    "roc_auc",
    "summary",
]

_EPS = 1e-7


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Fraction of examples whose probability is on the right side of 0.5."""
    return float(np.mean((np.asarray(probabilities) > 0.5) == (np.asarray(labels) == 1)))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy, with probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted as one half."""
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
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, observed positive rate and count, per equal-width bin.

    Empty bins are left out.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=p, minlength=bins)
    rate = np.bincount(index, weights=y, minlength=bins)
    full = counts > 0
    return mean_p[full] / counts[full], rate[full] / counts[full], counts[full]


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10
) -> float:
    """Count-weighted mean gap between predicted probability and observed rate over bins."""
    mean_p, rate, counts = reliability_curve(labels, probabilities, bins)
    return float(np.sum(counts * np.abs(mean_p - rate)) / np.sum(counts))


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, ROC AUC, log-loss and expected calibration error, rounded to 6 places."""
    return {
        "accuracy": round(accuracy(labels, probabilities), 6),
        "roc_auc": round(roc_auc(labels, probabilities), 6),
        "log_loss": round(log_loss(labels, probabilities), 6),
        "ece": round(expected_calibration_error(labels, probabilities), 6),
    }
