"""Ensemble weights fitted on validation predictions only."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hpo import metrics
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Method",
    "Weights",
    "caruana_selection",
    "ensemble_arguments",
    "fit_weights",
    "greedy_selection",
    "squared_error_selection",
    "true_class",
]

CARUANA_ROUNDS = 50
# As hpo.metrics.log_loss clips.
_EPSILON = 1e-7


class Method(enum.Enum):
    """How ensemble weights are chosen."""

    CARUANA = "caruana"
    SCORE = "score"
    UNIFORM = "uniform"


@dataclass(frozen=True)
class Weights:
    """Fitted weights and what they score on validation.

    Attributes:
        weights: One non-negative weight per member, summing to 1.
        val_log_loss, val_accuracy: The weighted ensemble on the validation set.
        rounds: For Caruana selection, the rounds of the best prefix; else 0.
    """

    weights: np.ndarray
    val_log_loss: float
    val_accuracy: float
    rounds: int = 0


def fit_weights(method: Method, predictions: np.ndarray, labels: np.ndarray) -> Weights:
    """Fits weights for members' validation predictions.

    Args:
        method: Caruana selection, validation-score weights, or uniform weights.
        predictions: [members, examples] (binary) or [members, examples, classes] predicted
            probabilities on the validation set.
        labels: [examples] validation labels.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    rounds = 0
    if method is Method.CARUANA:
        weights, rounds = caruana_selection(predictions, labels)
    elif method is Method.SCORE:
        chance = metrics.chance_accuracy(predictions[0])
        above_chance = np.array(
            [max(metrics.accuracy(labels, p) - chance, 0.0) for p in predictions]
        )
        total = above_chance.sum()
        weights = (
            above_chance / total if total > 0 else np.full(len(predictions), 1 / len(predictions))
        )
    else:
        weights = np.full(len(predictions), 1 / len(predictions))
    blended = metrics.blend(weights, predictions)
    return Weights(
        weights=weights,
        val_log_loss=metrics.log_loss(labels, blended),
        val_accuracy=metrics.accuracy(labels, blended),
        rounds=rounds,
    )


def caruana_selection(
    predictions: np.ndarray, labels: np.ndarray, rounds: int = CARUANA_ROUNDS
) -> tuple[np.ndarray, int]:
    """Greedy forward selection with replacement (Caruana et al., 2004).

    Each round adds the member whose addition gives the lowest validation log-loss of the
    averaged selection; the weights are the selection counts of the best prefix over the
    rounds, divided by its length (as AutoGluon's and auto-sklearn's ensemble selection do).
    Ties go to the earlier (better-ranked) member.

    Returns:
        (weights, length of the best prefix).
    """
    hit = true_class(predictions, labels)
    return greedy_selection(
        hit, lambda mean: -np.log(np.clip(mean, _EPSILON, 1 - _EPSILON)).mean(axis=1), rounds
    )


def squared_error_selection(
    predictions: np.ndarray, targets: np.ndarray, rounds: int = CARUANA_ROUNDS
) -> tuple[np.ndarray, int]:
    """Caruana selection of regression members by the mean squared error of their average.

    Args:
        predictions: `[members, n]` or `[members, n, targets]` validation predictions.
        targets: `[n]` or `[n, targets]` validation targets.

    Returns:
        (weights, length of the best prefix).
    """
    p = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), len(targets), -1)
    t = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    return greedy_selection(p, lambda mean: ((mean - t) ** 2).mean(axis=(1, 2)), rounds)


def greedy_selection(
    terms: np.ndarray, loss: Callable[[np.ndarray], np.ndarray], rounds: int = CARUANA_ROUNDS
) -> tuple[np.ndarray, int]:
    """Greedy forward selection with replacement over members' `terms` (`[members, ...]`):
    each round adds the member whose addition gives the lowest `loss` of the selection's mean
    (`loss` maps the `[members, ...]` candidate means to one loss each).

    Returns:
        (weights: the best prefix's selection counts over its length, that length).
    """
    counts = np.zeros(len(terms), dtype=np.int64)
    running = np.zeros(terms.shape[1:])
    best_loss, best_counts, best_rounds = np.inf, counts.copy(), 0
    for size in range(1, rounds + 1):
        losses = loss((running + terms) / size)
        choice = int(np.argmin(losses))
        counts[choice] += 1
        running += terms[choice]
        if losses[choice] < best_loss - 1e-12:
            best_loss, best_counts, best_rounds = float(losses[choice]), counts.copy(), size
    return best_counts / best_counts.sum(), best_rounds


def true_class(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`[members, n]`: each member's probability of each example's label.

    The log-loss of an average depends on these alone, which makes a selection round over a
    pool of multi-class members cost as little as over binary ones.
    """
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim == 2:
        return np.where(y == 1, p, 1 - p)
    return p[:, np.arange(len(y)), y]


def ensemble_arguments(top: int, method: str) -> Method:
    """The weighting `method` of an ensemble of at most `top` members, checked.

    Raises:
        ConfigError: `top` below 1, or no such method.
    """
    if top < 1:
        raise ConfigError(f"top must be at least 1, got {top}. Use top=5 for the five best trials.")
    try:
        return Method(method)
    except ValueError as exc:
        raise ConfigError(
            f"method must be one of {[m.value for m in Method]}, got {method!r}."
        ) from exc
