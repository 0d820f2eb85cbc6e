"""SeparableConv1D text classifiers: depthwise then pointwise convolutions, far fewer weights."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from optuna.distributions import IntDistribution

from hpo.cost import Rates
from hpo.models import _textconv
from hpo.space import suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import optuna

    from hpo.space import Space

# Its answer never depends on the padding after a text (tested), so batches may be cut.
MASKS_PADDING = True
# What a unit of this family's epoch costs, for the clock's prior (`hpo.cost.Rates`): fitted on
# six IMDB studies' 272 trials by benchmarks/bench_rates.py (RESULTS.md, "Each family's own
# prior rates").
PRIOR_RATES = Rates(flop_s=8.3e-12, element_s=7.1e-10, step_s=0.00411, param_step_s=5.67e-09)
SPACE: Space = {**_textconv.SPACE, "depth_multiplier": IntDistribution(1, 2)}
# Settings where this family learns from the first epoch. A plain SeparableConv1D twin of the
# classic model trained with rmsprop at 1e-3 stays at chance for epochs; residual connections
# and a learning rate of 3e-3 make it learn (measured on the smoke study's subset).
DEFAULTS: Mapping[str, Any] = {
    "embedding_dim": 128,
    "blocks": 2,
    "filters": 128,
    "kernel_size": 5,
    "branches": 1,
    "block_pool": "max",
    "global_pool": "max",
    "dropout": 0.4,
    "batch_norm": False,
    "residual": True,
    "dense_units": 0,
    "depth_multiplier": 1,
    "learning_rate": 3e-3,
}


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the SeparableConv1D classifier for `params`."""
    from keras import layers

    conv = functools.partial(layers.SeparableConv1D, depth_multiplier=params["depth_multiplier"])
    return _textconv.build(params, conv=conv, name="sepconv1d")
