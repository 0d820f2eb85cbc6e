"""How to combine, after the ensemble: how fast models predict, measured side by side."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["PER", "latencies"]

# Latencies are milliseconds per this many inputs.
PER = 1000


def latencies(
    predictors: Mapping[str, Callable[[], object]], examples: int, repeats: int = 5
) -> dict[str, float]:
    """Milliseconds per 1,000 inputs of each predictor, measured side by side.

    Each predictor runs once to warm up (tracing, compiling, caches), then `repeats` rounds run
    every predictor once in turn; each one's median round counts. Taking turns keeps the ratios
    fair on a shared machine: a slow spell slows every model of that round, not one of them.

    Args:
        predictors: Calls that each predict the same `examples` inputs.
        examples: How many inputs one call predicts.
        repeats: Timed rounds (default 5).
    """
    for predict in predictors.values():
        predict()
    rounds: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(max(1, repeats)):
        for name, predict in predictors.items():
            started = time.perf_counter()
            predict()
            rounds[name].append(time.perf_counter() - started)
    return {
        name: round(float(np.median(seconds)) * 1000 * PER / max(1, examples), 3)
        for name, seconds in rounds.items()
    }
