"""How to combine, step 2: which members and weights, and the temperature, all from validation.

Two ensembles are fitted on the pool's validation predictions: the plain one over the `top` best
trials (weighted by `--method`, as `hpo ensemble` always did) and the guarded selection from the
whole pool (`hpo.ensemble.pool`). The one whose way of fitting scores the lower cross-fitted
validation log-loss (weights fitted on one half, scored on the other) is kept; ties keep the
plain one. A temperature is then fitted on its validation predictions (`calibration`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import numpy as np

from hpo import metrics
from hpo.ensemble.calibration import Calibration, apply_temperature, fit_temperature
from hpo.ensemble.pool import Selection, cross_fitted_log_loss, guarded_selection
from hpo.ensemble.weighting import Method, Weights, fit_weights

__all__ = ["Choice", "Source", "choose"]


class Source(enum.Enum):
    """Which of the two fitted ensembles is kept."""

    POOL = "pool"
    TOP = "top"


@dataclass(frozen=True)
class Choice:
    """The two ensembles over a pool (best-ranked member first), the kept one and its temperature.

    Attributes:
        top: The plain ensemble: weights over the pool, zero beyond its first `top` members.
        uniform: The uniform average of the same `top` members.
        pool: The guarded selection from the whole pool.
        chosen: Which one is kept (exported and evaluated on test).
        cross_fitted: Each one's cross-fitted validation log-loss, by `Source` value.
        calibration: The kept one's temperature; None with calibration off.
    """

    top: Weights
    uniform: np.ndarray
    pool: Selection
    chosen: Source
    cross_fitted: dict[str, float]
    calibration: Calibration | None

    @property
    def weights(self) -> np.ndarray:
        """The kept ensemble's weights over the pool."""
        return self.pool.weights if self.chosen is Source.POOL else self.top.weights

    @property
    def temperature(self) -> float:
        """The kept ensemble's temperature (1 without calibration)."""
        return 1.0 if self.calibration is None else self.calibration.temperature

    def used(self) -> np.ndarray:
        """Pool indices (ascending) of the members that need a model: the kept ensemble's and the
        plain ensemble's (its test scores are reported beside the kept one's)."""
        top = np.zeros(len(self.weights), dtype=bool)
        top[: int(np.count_nonzero(self.uniform))] = True
        return np.flatnonzero((self.weights > 0) | top)

    def subset(self, indices: np.ndarray) -> Choice:
        """The same ensembles over the pool members at `indices` (all those with weight)."""
        return dataclasses.replace(
            self,
            top=dataclasses.replace(self.top, weights=self.top.weights[indices]),
            uniform=self.uniform[indices],
            pool=dataclasses.replace(self.pool, weights=self.pool.weights[indices]),
        )

    def blend(self, predictions: np.ndarray) -> np.ndarray:
        """The kept ensemble's probabilities before calibration, from its members' predictions."""
        return metrics.blend(self.weights, predictions)

    def predict(self, predictions: np.ndarray) -> np.ndarray:
        """The kept ensemble's (calibrated) probabilities, as its export gives them."""
        blended = self.blend(predictions)
        return blended if self.calibration is None else apply_temperature(blended, self.temperature)


def choose(
    predictions: np.ndarray,
    labels: np.ndarray,
    top: int,
    method: Method = Method.CARUANA,
    calibrate: bool = True,
) -> Choice:
    """Fits both ensembles on validation predictions, keeps one, and fits its temperature.

    Args:
        predictions: `[pool, n]` or `[pool, n, classes]` validation probabilities, best-ranked
            trial first.
        labels: `[n]` validation labels.
        top: The plain ensemble's size, and the most members the pool's may hold.
        method: How the plain ensemble is weighted (default Caruana selection).
        calibrate: Fit a temperature (default True); else it stays 1.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    size = min(top, len(predictions))

    def fit_top(p: np.ndarray, y: np.ndarray) -> np.ndarray:
        weights = np.zeros(len(p))
        weights[:size] = fit_weights(method, p[:size], y).weights
        return weights

    def fit_pool(p: np.ndarray, y: np.ndarray) -> np.ndarray:
        return guarded_selection(p, y, size).weights

    plain = fit_weights(method, predictions[:size], labels)
    top_weights = Weights(
        weights=fit_top(predictions, labels),
        val_log_loss=plain.val_log_loss,
        val_accuracy=plain.val_accuracy,
        rounds=plain.rounds,
    )
    uniform = np.zeros(len(predictions))
    uniform[:size] = 1 / size
    cross_fitted = {
        Source.POOL.value: cross_fitted_log_loss(fit_pool, predictions, labels),
        Source.TOP.value: cross_fitted_log_loss(fit_top, predictions, labels),
    }
    chosen = (
        Source.POOL
        if cross_fitted[Source.POOL.value] < cross_fitted[Source.TOP.value]
        else Source.TOP
    )
    pool = guarded_selection(predictions, labels, size)
    weights = pool.weights if chosen is Source.POOL else top_weights.weights
    calibration = (
        fit_temperature(metrics.blend(weights, predictions), labels) if calibrate else None
    )
    return Choice(
        top=top_weights,
        uniform=uniform,
        pool=pool,
        chosen=chosen,
        cross_fitted={k: round(v, 6) for k, v in cross_fitted.items()},
        calibration=calibration,
    )
