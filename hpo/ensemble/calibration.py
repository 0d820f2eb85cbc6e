"""How to combine, after weighting: one temperature on the ensemble's logits, fitted on validation.

Averaging members' probabilities changes how confident the ensemble is (often less than it
should be); temperature scaling (Guo et al., 2017) divides the logits of the averaged
probabilities by one scalar `T` chosen to minimise validation log-loss. It never changes which
class is predicted, so accuracy and the ranking behind ROC AUC stay as they were.

Binary `[n]` probabilities use the logit `log(p / (1 - p))` and a sigmoid; multi-class
`[n, classes]` ones use `log(p)` (logits up to a constant per row) and a softmax. Probabilities
are clipped to `[1e-7, 1 - 1e-7]` first, as `hpo.metrics.log_loss` clips them, and the exported
`hpo.models._calibration.Temperature` layer computes the same.

`T` is fitted to Platt's (1999) targets rather than to the labels themselves: an example of a
class with `N` validation examples counts as `(N + 1) / (N + 2)` of its class, the rest spread
over the other classes. On validation the ensemble gets all right the labels alone would drive
`T` to its bound (a 3-epoch model's 0.14-0.86 became 1e-15 to 1 - 1e-15, and one wrong test
example then cost 34 nats); Platt's targets keep it as sure as that many examples can show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from hpo import metrics
from hpo.metrics import ECE_BINS

__all__ = [
    "ECE_BINS",
    "EPSILON",
    "Calibration",
    "apply_temperature",
    "fit_temperature",
    "platt_targets",
    "temperature_slope",
]

EPSILON = 1e-7
# 1/T is searched in [1/20, 20]: wide enough for any network seen here (Guo et al. report
# 1.1-3.5), narrow enough that a validation set the ensemble gets all right stays finite.
_INVERSE_BOUNDS = (0.05, 20.0)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and validation log-loss before and after it.

    Attributes:
        temperature: Divides the logits; 1 leaves the predictions as they are, above 1 makes
            them less confident, below 1 more.
    """

    temperature: float
    val_log_loss_before: float
    val_log_loss_after: float


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities with their logits divided by `temperature`, in float64."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    if p.ndim == 1:
        return 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))
    z = np.log(p) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> Calibration:
    """The temperature that minimises log-loss on these (validation) predictions.

    Log-loss is convex in 1/T, so a bounded scalar search finds its minimum; T = 1 is kept where
    the search does not beat it, so calibration never raises the validation log-loss, and where
    temperatures fitted on each half of the examples do not lower the other halves' log-loss:
    on ten examples a model near chance was otherwise "calibrated" to T = 0.06, which made its
    test log-loss worse.
    """
    before = metrics.log_loss(labels, probabilities)
    inverse = _fitted_inverse(probabilities, labels)
    after = metrics.log_loss(labels, apply_temperature(probabilities, 1.0 / inverse))
    if not np.isfinite(after) or after >= before or not _holds_out(probabilities, labels):
        return Calibration(temperature=1.0, val_log_loss_before=before, val_log_loss_after=before)
    return Calibration(
        temperature=1.0 / inverse, val_log_loss_before=before, val_log_loss_after=after
    )


def _fitted_inverse(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The 1/T that minimises the cross-entropy against Platt's targets.

    The loss is computed from the logits, not from clipped probabilities: clipped, it is flat
    wherever every example saturates, and the bounded search, starting there, drifted to the
    sharpest bound (T = 0.05) for members 0.99 sure. From the logits it is convex in 1/T; a
    log-spaced grid finds its basin, and a bounded search refines within it.
    """
    targets = platt_targets(labels, probabilities.shape[1] if probabilities.ndim == 2 else 2)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    if p.ndim == 1:
        z = np.log(p) - np.log1p(-p)

        def loss(inverse: float) -> float:
            s = z * inverse
            return float(
                np.mean(targets * np.logaddexp(0, -s) + (1 - targets) * np.logaddexp(0, s))
            )

    else:
        z = np.log(p)

        def loss(inverse: float) -> float:
            s = z * inverse
            s = s - s.max(axis=1, keepdims=True)
            log_q = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
            return float(-np.mean(np.sum(targets * log_q, axis=1)))

    grid = np.geomspace(*_INVERSE_BOUNDS, 49)
    losses = [loss(g) for g in grid]
    best = int(np.argmin(losses))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(found.x) if found.fun <= losses[best] else float(grid[best])


def platt_targets(labels: np.ndarray, classes: int) -> np.ndarray:
    """Platt's targets for integer `labels`: `[n]` probabilities of class 1 where `classes` is
    2, else `[n, classes]` rows. An example of a class with `N` examples gets `(N + 1) / (N +
    2)` for its class and the rest, `1 / (N + 2)`, shared by the other classes."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=classes)
    rest = 1.0 / (counts[y] + 2.0)
    if classes == 2:
        return np.where(y == 1, 1.0 - rest, rest)
    targets = np.repeat((rest / (classes - 1))[:, None], classes, axis=1)
    targets[np.arange(len(y)), y] = 1.0 - rest
    return targets


def _holds_out(probabilities: np.ndarray, labels: np.ndarray) -> bool:
    """Whether temperatures fitted on each half of the examples (a fixed shuffle) lower the log-
    loss of the other half, the two halves together (a 2-fold cross-validated log-loss): a fit
    that generalizes, not one to a few examples' noise."""
    order = np.random.default_rng(0).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    if min(len(half) for half in halves) == 0:
        return False
    fitted = unfitted = 0.0
    for fit, held in (halves, halves[::-1]):
        inverse = _fitted_inverse(probabilities[fit], labels[fit])
        p, y = probabilities[held], labels[held]
        fitted += len(held) * metrics.log_loss(y, apply_temperature(p, 1.0 / inverse))
        unfitted += len(held) * metrics.log_loss(y, p)
    return fitted < unfitted


def temperature_slope(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Per example, how much a change in the input probability moves the calibrated one.

    Binary only (`[n]`): near 0 or 1 a float32 input holds `1 - p` to a few 1e-8, and a
    temperature above 1 magnifies that by `p'(1 - p') / (T p (1 - p))`; the export check
    allows its tolerance times this slope there. Multi-class probabilities are each held to
    float32's relative precision, which `softmax(log p / T)` keeps, so their slope is 1.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1:
        return np.ones(len(p))
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    q = apply_temperature(clipped, temperature)
    return np.maximum(1.0, q * (1 - q) / (temperature * clipped * (1 - clipped)))
