"""Model families: modules with `SPACE`, `DEFAULTS`, `suggest(trial, space)`, `build(params)`.

Modules here import Keras only inside `build`, so that sampling hyperparameters (in the search
process) never loads TensorFlow; only trial processes do.
"""

from __future__ import annotations

from hpo.models import conv1d, conv2d, ngram, sepconv1d, sepconv2d

__all__ = ["conv1d", "conv2d", "ngram", "sepconv1d", "sepconv2d"]
