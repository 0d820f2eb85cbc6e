"""What to try: SeparableConv2D image classifiers, the Xception-like convnet of the book."""

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
# The book's block (batch norm, residual, 3x3) at 16 filters doubling over 4 blocks: at the
# book's 32 filters and up, depthwise convolutions cost over 90 s per 45,000-image epoch on a
# 2-core CPU. Dropout below the book's 0.5: the head sees 128 features, not 512.
DEFAULTS: Mapping[str, Any] = {
    "blocks": 4,
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
    """Builds the SeparableConv2D classifier for `params` (see `_imageconv.build`)."""
    return _imageconv.build(params, separable=True, name="sepconv2d")
