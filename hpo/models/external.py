"""What to try, from the user's code: model families named by import path in the study file.

`[families]` in a study file maps a family name to `module:attribute`. The attribute may be a
KerasTuner `HyperModel` (class or instance), a KerasTuner `build(hp)` function, or a family
module like hpo's own (`SPACE`, `DEFAULTS`, `suggest(trial, space)`, `build(params)`; name the
module alone, `module`, or `module:attribute` for a module attribute). Only modules that a study
file names are imported; the study file's folder is searched first, then the Python path.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from hpo.tasks import Family

__all__ = ["load_families", "register_keras_classes"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NATIVE = ("SPACE", "DEFAULTS", "suggest", "build")


def load_families(
    specs: Mapping[str, str],
    base: Path,
    builtin: Mapping[str, Family],
    reserved: set[str],
    space: Mapping[str, list[Any]] | None = None,
) -> dict[str, Family]:
    """Imports the study file's `[families]`.

    Args:
        specs: Family name -> `module:attribute`.
        base: The study file's folder, searched for modules before the Python path.
        builtin: The task's own families; a name may not shadow one.
        reserved: Parameter names hpo already uses (shared and built-in families' ones): a
            hypermodel parameter of the same name gets its family's name as a prefix.
        space: The study file's `[space]` entries named `family/parameter`, which narrow a
            hypermodel's own parameters (a list of choices, or `[low, high]`).

    Raises:
        ConfigError: A bad name or path, a module that fails to import, or an attribute that is
            neither a hypermodel nor a family module.
    """
    from hpo.cli import quiet_tensorflow

    with quiet_tensorflow(os.environ.get("HPO_VERBOSE") == "1"):
        # KerasTuner imports Keras, and so TensorFlow and its start-up chatter.
        from hpo.models.hypermodel import HyperModelFamily, as_hypermodel

    loaded: dict[str, Any] = {}
    for name, spec in specs.items():
        key = f"families.{name}"
        if not _NAME.fullmatch(name) or name in builtin:
            raise ConfigError(
                f"'{key}': a family name must be letters, digits and '_' and differ from the "
                f"task's own families {sorted(builtin)}; rename it."
            )
        loaded[name] = _import(spec, key, base)
    hypermodels = {name: as_hypermodel(target) for name, target in loaded.items()}
    # With two hypermodels in a study, their parameters might share names: prefix them all.
    several = sum(h is not None for h in hypermodels.values()) > 1
    families: dict[str, Family] = {}
    for name, target in loaded.items():
        hypermodel = hypermodels[name]
        if hypermodel is not None:
            rename = _renamer(name, reserved, several)
            own = {
                key.partition("/")[2]: value
                for key, value in (space or {}).items()
                if key.partition("/")[0] == name
            }
            families[name] = HyperModelFamily(name, hypermodel, rename, own)
        elif all(hasattr(target, attr) for attr in _NATIVE):
            families[name] = target
        else:
            raise ConfigError(
                f"'families.{name}' = {specs[name]!r} is a {type(target).__name__}: expected a "
                f"KerasTuner HyperModel (class or instance), a build(hp) function, or a module "
                f"with {', '.join(_NATIVE)}."
            )
    return families


def _renamer(family: str, reserved: set[str], always: bool) -> Any:
    def rename(name: str) -> str:
        return f"{family}/{name}" if always or name in reserved else name

    return rename


def _import(spec: str, key: str, base: Path) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not _MODULE.fullmatch(module_name) or (attribute and not _NAME.fullmatch(attribute)):
        raise ConfigError(
            f"'{key}' must be an import path 'package.module:attribute', got {spec!r}."
        )
    from hpo.cli import quiet_tensorflow

    try:
        # A user's module usually imports Keras, and so TensorFlow and its start-up chatter.
        with _searching(base), quiet_tensorflow(os.environ.get("HPO_VERBOSE") == "1"):
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"'{key}' = {spec!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc}). "
            f"Put the module beside the study file ({base}) or on the Python path."
        ) from exc
    register_keras_classes(module)
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        public = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
        )
        raise ConfigError(
            f"'{key}' = {spec!r}: module {module_name!r} has no {attribute!r}; it defines "
            f"{public[:10]}."
        ) from exc


def register_keras_classes(module: Any) -> None:
    """Registers the module's own Keras layer and model classes with Keras's serialization.

    A checkpoint of a subclassed model or a custom layer names its class; Keras loads it only if
    the class is registered. KerasTuner's examples do not register theirs (KerasTuner keeps
    weights and builds again), so hpo does, under the module's name, for the classes the module
    itself defines and leaves unregistered. Loading such a checkpoint later needs the same study
    file (which imports the module again).
    """
    keras = sys.modules.get("keras")
    if keras is None:  # the module defines no Keras class without importing Keras
        return
    for value in list(vars(module).values()):
        if (
            inspect.isclass(value)
            and value.__module__ == module.__name__
            and issubclass(value, keras.layers.Layer)
            and keras.saving.get_registered_name(value) == value.__name__
        ):
            keras.saving.register_keras_serializable(package=module.__name__)(value)


@contextmanager
def _searching(folder: Path) -> Iterator[None]:
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)
