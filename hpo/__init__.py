"""hpo: hyperparameter search and ensembling for Keras models, on Optuna.

Importing `hpo` does not load Keras or TensorFlow; only trial processes do. It registers hpo's
Keras layers for whenever Keras is loaded, so `keras.models.load_model` opens hpo's checkpoints
and exported ensembles after `import hpo`.
"""

from __future__ import annotations

from hpo._layers import register_on_keras_import
from hpo.config import StudyConfig, load_study_config
from hpo.errors import ConfigError, DataError, HpoError, StoreError, TrialProcessDied

__all__ = [
    "ConfigError",
    "DataError",
    "HpoError",
    "StoreError",
    "StudyConfig",
    "TrialProcessDied",
    "load_study_config",
]

__version__ = "0.1.0"

register_on_keras_import()
