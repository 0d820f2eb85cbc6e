"""hpo: hyperparameter search and ensembling for Keras models, on Optuna.

Importing `hpo` does not load TensorFlow; only trial processes do.
"""

from __future__ import annotations

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
