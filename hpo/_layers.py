"""hpo's own Keras layers, registered with Keras whenever Keras is (or gets) imported.

Checkpoints and exported ensembles hold hpo's layers (`PaddingMask`, `NGramHash`,
`Probabilities`, ...), which `keras.models.load_model` finds only once they are registered.
`import hpo` registers them without importing Keras itself (which loads TensorFlow, seconds that
`hpo status` should not pay): if Keras is already imported they are registered at once, else as
soon as anything imports it. So `import hpo` and then `keras.models.load_model(path)` works in
either order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

__all__ = ["register_layers", "register_on_keras_import"]

_MODULES = (
    "hpo.models._calibration",
    "hpo.models._masking",
    "hpo.models._nb",
    "hpo.models._outputs",
    "hpo.models._tokens",
)


def register_layers() -> None:
    """Imports the modules that define (and so register) hpo's Keras layers; imports Keras."""
    for name in _MODULES:
        importlib.import_module(name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds `keras` as the other finders do, and registers hpo's layers once it has loaded."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            register_layers()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def register_on_keras_import() -> None:
    """Registers hpo's layers now if Keras is loaded, else when it is first imported."""
    if "keras" in sys.modules:
        register_layers()
    elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
