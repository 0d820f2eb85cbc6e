"""hpo: hyperparameter search and ensembling for Keras models, on Optuna.

The public API (see docs/python.md):

- `hpo.Tuner(build_model, objective="val_accuracy", ...)`: KerasTuner's tuner interface on
  arrays in memory, with `search`, `get_best_models`, `get_best_hyperparameters`,
  `results_summary` and `ensemble`.
- `hpo.search(study_file)`, `hpo.ensemble(study_file)`, `hpo.distill(ensemble_dir)`: what
  `hpo search`, `hpo ensemble` and `hpo distill` do.
- `hpo.load_study(study_file)`, `hpo.load_model(path)`: read a study, load a model hpo wrote.

Importing `hpo` does not load Keras or TensorFlow (the names above are imported when first
used; only trial processes and model loading load Keras). It registers hpo's Keras layers for
whenever Keras is loaded, so `keras.models.load_model` opens hpo's checkpoints and exported
ensembles after `import hpo`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hpo._layers import register_on_keras_import
from hpo.config import StudyConfig, load_study_config
from hpo.errors import ConfigError, DataError, HpoError, StoreError, TrialProcessDied

if TYPE_CHECKING:
    from hpo.api import Study, load_model, load_study
    from hpo.tuner import Tuner

__all__ = [
    "ConfigError",
    "DataError",
    "HpoError",
    "StoreError",
    "Study",
    "StudyConfig",
    "TrialProcessDied",
    "Tuner",
    "distill",
    "ensemble",
    "load_model",
    "load_study",
    "load_study_config",
    "search",
]

__version__ = "0.1.0"

# Public names imported when first used, from these modules; `search`, `ensemble` and `distill`
# are packages that are also callable (`hpo._callable`).
_LAZY = {
    "Tuner": "hpo.tuner",
    "Study": "hpo.api",
    "load_study": "hpo.api",
    "load_model": "hpo.api",
    "search": "hpo.search",
    "ensemble": "hpo.ensemble",
    "distill": "hpo.distill",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}")
    if module == f"hpo.{name}":
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


register_on_keras_import()
