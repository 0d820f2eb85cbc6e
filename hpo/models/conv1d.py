"""Conv1D text classifiers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
PRIOR_RATES = Rates(flop_s=2.56e-12, element_s=6.46e-10, step_s=0.0148, param_step_s=1.25e-09)
SPACE: Space = _textconv.SPACE
# The hand-made three-branch model (kernels 3/5/7 x 128 filters, embedding 128, dropout 0.5).
DEFAULTS: Mapping[str, Any] = {
    "embedding_dim": 128,
    "blocks": 1,
    "filters": 128,
    "kernel_size": 3,
    "branches": 3,
    "block_pool": "max",
    "global_pool": "max",
    "dropout": 0.5,
    "batch_norm": False,
    "residual": False,
    "dense_units": 0,
}


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the Conv1D classifier for `params`."""
    from keras import layers

    return _textconv.build(params, conv=layers.Conv1D, name="conv1d")
