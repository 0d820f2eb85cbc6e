"""How to combine, from the whole study: greedy selection from a pool of trials, guarded so that
it does not fit the validation set's noise.

Caruana et al. (2004) build an ensemble by greedy forward selection with replacement: each round
adds the member that most lowers the validation log-loss of the average. Chosen from many
trials, a member can win a round by fitting what is peculiar to these validation examples. Here
each half of the validation set is held out for the other: a member joins (or gains weight) only
if its addition raises the log-loss on *neither* stratified half, and the first one must beat
chance on both. A member that fits one half's noise and is no better than chance on the other never
joins. Ties go to the better-ranked member, so duplicates of a member add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hpo import metrics
from hpo.ensemble.calibration import EPSILON
from hpo.ensemble.weighting import true_class

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Selection", "cross_fitted_log_loss", "guarded_selection", "halves"]

SELECTION_ROUNDS = 50
# A round must lower each half's log-loss by more than float rounding.
_MARGIN = 1e-9


@dataclass(frozen=True)
class Selection:
    """Weights over a pool and how they came about.

    Attributes:
        weights: One per pool member (best-ranked first), non-negative, summing to 1.
        rounds: Rounds taken (members added, with replacement).
        fallback: No member beat chance on both halves; the best-ranked member stands alone.
    """

    weights: np.ndarray
    rounds: int
    fallback: bool = False


def halves(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed, stratified split of the examples: True for the first half, False for the other."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    # Each class's examples in random order, classes one after another, dealt out alternately.
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
        or [np.zeros(0, dtype=np.int64)]
    )
    first = np.zeros(len(labels), dtype=bool)
    first[order[0::2]] = True
    return first


def guarded_selection(
    predictions: np.ndarray,
    labels: np.ndarray,
    max_members: int,
    rounds: int = SELECTION_ROUNDS,
    seed: int = 0,
) -> Selection:
    """Greedy forward selection with replacement over a pool, each step held out on both halves.

    Each round takes, among the pool members whose addition raises the validation log-loss on
    neither half of `halves(labels, seed)`, the one with the lowest log-loss on the whole
    validation set (ties: the better-ranked); the first round's member must beat chance
    (`log(classes)`) on both halves. Selection stops when no member qualifies or after
    `rounds`, never holds more than `max_members` distinct members, and keeps the shortest
    prefix with the lowest whole-set log-loss (as Caruana et al.'s best prefix).

    Args:
        predictions: `[pool, n]` (binary) or `[pool, n, classes]` validation probabilities,
            best-ranked member first.
        labels: `[n]` validation labels.
        max_members: The most distinct members the ensemble may hold (`--top`).
        rounds: The most members added, counting repeats (default 50).
        seed: Of the split into halves.
    """
    hit = np.clip(true_class(predictions, labels), EPSILON, 1 - EPSILON)
    pool, n = hit.shape
    first = halves(labels, seed)
    sides = [side for side in (first, ~first) if side.any()]
    chance = float(np.log(2 if np.ndim(predictions) == 2 else np.shape(predictions)[2]))
    counts = np.zeros(pool, dtype=np.int64)
    running = np.zeros(n)
    current = [chance] * len(sides)
    best_loss, best_counts = np.inf, counts.copy()
    for size in range(1, rounds + 1):
        logs = np.log(np.clip((running + hit) / size, EPSILON, 1 - EPSILON))
        by_half = [-logs[:, side].mean(axis=1) for side in sides]
        allowed = counts > 0 if np.count_nonzero(counts) >= max_members else np.ones(pool, bool)
        for loss, now in zip(by_half, current, strict=True):
            # The first member must beat chance; later ones may leave a half as it was, so that
            # a member re-added now can make room for a smaller share of another next round.
            allowed &= loss < now - _MARGIN if size == 1 else loss <= now + _MARGIN
        if not allowed.any():
            break
        candidates = np.flatnonzero(allowed)
        whole = -logs[candidates].mean(axis=1)
        choice = int(candidates[np.argmin(whole)])
        counts[choice] += 1
        running += hit[choice]
        current = [float(loss[choice]) for loss in by_half]
        if whole.min() < best_loss - _MARGIN:
            best_loss, best_counts = float(whole.min()), counts.copy()
    counts = best_counts
    if not counts.any():
        weights = np.zeros(pool)
        weights[0] = 1.0
        return Selection(weights=weights, rounds=0, fallback=True)
    return Selection(weights=counts / counts.sum(), rounds=int(counts.sum()))


def cross_fitted_log_loss(
    fit: Callable[[np.ndarray, np.ndarray], np.ndarray],
    predictions: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
) -> float:
    """The validation log-loss of a way of fitting weights, each half scored by weights fitted
    on the other: an estimate of how it does on examples it did not choose with.

    Args:
        fit: `(predictions, labels) -> weights`, called on each half in turn.
    """
    first = halves(labels, seed + 1)
    losses, sizes = [], []
    for fit_on, score_on in ((first, ~first), (~first, first)):
        if not fit_on.any() or not score_on.any():
            continue
        weights = fit(predictions[:, fit_on], labels[fit_on])
        used = weights > 0
        blended = metrics.blend(weights[used], predictions[used][:, score_on])
        losses.append(metrics.log_loss(labels[score_on], blended))
        sizes.append(int(score_on.sum()))
    return float(np.average(losses, weights=sizes))
