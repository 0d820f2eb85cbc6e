"""Model families: modules with `SPACE`, `DEFAULTS`, `suggest(trial, space)`, `build(params)`.

Modules here import Keras only inside `build`, so that sampling hyperparameters (in the search
process) never loads TensorFlow; only trial processes do.
"""

from __future__ import annotations

from hpo.models import conv1d, sepconv1d

__all__ = ["conv1d", "sepconv1d"]
