"""What to try: Conv2D image classifiers, the plain-convolution twin of `sepconv2d`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.models import _imageconv
from hpo.space import suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import optuna

    from hpo.space import Space

SPACE: Space = _imageconv.SPACE
# The book's block (batch norm, residual, 3x3) at 16 filters over 3 blocks: plain
# convolutions cost four times the operations of separable ones per block, and at 32 filters
# an epoch of 45,000 images takes over 3 minutes on a 2-core CPU.
DEFAULTS: Mapping[str, Any] = {
    "blocks": 3,
    "filters": 16,
    "kernel_size": 3,
    "batch_norm": True,
    "residual": True,
    "dropout": 0.3,
}


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the Conv2D classifier for `params` (see `_imageconv.build`)."""
    return _imageconv.build(params, separable=False, name="conv2d")
