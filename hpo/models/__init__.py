"""Model families: modules with `SPACE`, `DEFAULTS`, `suggest(trial, space)`, `build(params)`.

Modules here import Keras only inside `build`, so that sampling hyperparameters (in the search
process) never loads TensorFlow; only trial processes do.
"""

from __future__ import annotations

from typing import Any

from hpo.models import conv1d, conv2d, nbsvm, ngram, sepconv1d, sepconv2d

__all__ = ["conv1d", "conv2d", "is_builtin", "nbsvm", "ngram", "sepconv1d", "sepconv2d"]


def is_builtin(family: Any) -> bool:
    """Whether a family is one of hpo's own modules (tested here), not a user's."""
    return getattr(family, "__name__", "").startswith("hpo.models.")
