"""What to try, from the user's code: model families named by import path in the study file.

`[families]` in a study file maps a family name to `module:attribute`. The attribute may be a
KerasTuner `HyperModel` (class or instance), a KerasTuner `build(hp)` function, or a family
module like hpo's own (`SPACE`, `DEFAULTS`, `suggest(trial, space)`, `build(params)`; name the
module alone, `module`, or `module:attribute` for a module attribute). Only modules that a study
file names are imported; the study file's folder is searched first, then the Python path.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo._env import VERBOSE_VAR, env_flag
from hpo._script import script_outside_guard
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from hpo.tasks import Family

__all__ = [
    "accept_base_arguments",
    "complete_config",
    "installed_package",
    "load_families",
    "modules_loaded_by_path",
    "record_model_arguments",
    "register_user_objects",
    "user_objects_for",
    "uses_user_classes",
]

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

    with quiet_tensorflow(env_flag(VERBOSE_VAR)):
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

    _check_not_running_script(module_name, spec, key, base)
    try:
        # A user's module usually imports Keras, and so TensorFlow and its start-up chatter.
        with _searching(base), quiet_tensorflow(env_flag(VERBOSE_VAR)):
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"'{key}' = {spec!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc}). "
            f"Put the module beside the study file ({base}) or on the Python path."
        ) from exc
    register_user_objects(module)
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


def _check_not_running_script(module_name: str, spec: str, key: str, base: Path) -> None:
    """Refuses a family in the script whose top level runs the search, outside `if __name__ ==
    "__main__":`: importing it would run the script, and so the search, again."""
    script = script_outside_guard()
    if script is None or module_name in sys.modules:
        return
    try:
        with _searching(base):
            found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return  # importing it will say
    if found is None or not found.origin or Path(found.origin).resolve() != script.resolve():
        return
    raise ConfigError(
        f"'{key}' = {spec!r} is in {script.name}, which runs this search from its top level: "
        f"importing it would run the script, and the search, again. Put the search under "
        f'`if __name__ == "__main__":` in {script.name}, or the family in a module of its own.'
    )


# Packages whose Keras classes Keras itself finds when it loads a model (by import or their own
# registration); every other loaded class is the user's code.
_LIBRARIES = frozenset(
    {"keras", "keras_hub", "keras_nlp", "keras_cv", "keras_tuner", "tensorflow", "tf_keras", "hpo"}
)


def register_user_objects(module: Any = None) -> None:
    """Registers with Keras's serialization the layer and model classes of the user's code that
    this process has loaded, under their module and qualified name, and lets them load
    (`accept_base_arguments`, `complete_config`); its loss, metric, regularizer, initializer,
    constraint and learning-rate schedule classes the same way; and the functions that
    `__main__`, `module` (a study file's family module) and the user's other modules define,
    such as an activation of the user's own.

    A checkpoint of a subclassed model or a custom layer names its class; Keras loads it only if
    the class is registered, and never imports a module a file names. KerasTuner's examples do
    not register theirs (KerasTuner keeps weights and builds again), so hpo does, for the classes
    the user's code defined or imported (a script, a notebook, the module a study file names and
    what it imports), when it builds a model and before it loads one. A checkpoint can only name
    one of those classes, never make hpo import anything; loading it in another process needs the
    same code loaded (the same study file, the notebook's classes defined again, or the search
    script's imported: `user_objects_for` finds a class saved by another module's name).
    """
    keras = sys.modules.get("keras")
    if keras is None:  # no Keras class can have been defined without importing Keras
        return
    owners = [m for m in (sys.modules.get("__main__"), module) if m is not None]
    owners += [m for m in list(sys.modules.values()) if _is_user_module(m)]
    for owner in owners:
        for value in list(vars(owner).values()):
            if (
                inspect.isfunction(value)
                and value.__module__ == owner.__name__
                and value.__name__.isidentifier()
                and keras.saving.get_registered_name(value) == value.__name__
            ):
                keras.saving.register_keras_serializable(owner.__name__, value.__qualname__)(value)
    # A loss, metric, regularizer, initializer, constraint or schedule object of the user's own
    # is named by its class in a model's config too (`Dense(kernel_regularizer=L1Half())`).
    pending = [keras.layers.Layer, *_other_bases(keras)]
    seen: set[type] = set()
    while pending:
        for cls in pending.pop().__subclasses__():
            if cls in seen:
                continue
            seen.add(cls)
            pending.append(cls)
            if cls.__module__.partition(".")[0] in _LIBRARIES:
                continue
            if issubclass(cls, keras.layers.Layer):
                accept_base_arguments(cls)
                complete_config(cls)
                record_model_arguments(keras, cls)
            if keras.saving.get_registered_name(cls) == cls.__name__:
                # The qualified name keeps apart two classes of one name in one module (a
                # notebook cell run again, two functions' local classes): the newest one wins.
                keras.saving.register_keras_serializable(cls.__module__, cls.__qualname__)(cls)


def user_objects_for(saved: Iterable[str]) -> dict[str, Any]:
    """The user's registered classes and functions that stand for the names a model file saved
    and Keras's registry lacks: `{saved name: object}`, for `keras.saving.custom_object_scope`.

    Keras names a class of the user's by its module and qualified name (`__main__>MyModel`),
    and the module is where the class was defined in the saving process: the search script run
    as `python search.py` saves `__main__>MyModel`, and a later script that does `from search
    import MyModel` holds `search>MyModel`. The saved name stands for the one registered class
    or function of the user's of that qualified name, whatever its module now; the file's
    module is never imported.

    Raises:
        ConfigError: Two of the user's loaded classes (or functions) have the name; the file
            does not tell which one it saved.
    """
    import keras

    registered = keras.saving.get_custom_objects()
    by_name: dict[str, dict[int, Any]] = {}
    for name, value in registered.items():
        package, separator, qualified = name.partition(">")
        module = getattr(value, "__module__", None)
        if separator and isinstance(module, str) and module.partition(".")[0] not in _LIBRARIES:
            by_name.setdefault(qualified, {})[id(value)] = value
    found = {}
    for name in saved:
        package, separator, qualified = name.partition(">")
        if not separator or name in registered or qualified not in by_name:
            continue
        candidates = list(by_name[qualified].values())
        if len(candidates) > 1:
            places = " and ".join(f"{c.__module__}.{qualified}" for c in candidates)
            first = f"{candidates[0].__module__}.{qualified}"
            raise ConfigError(
                f"the model names {qualified!r} of module {package!r} (where it was defined when "
                f"the model was saved), and this process has loaded {len(candidates)} of that "
                f"name: {places}. Say which one the model was made with before loading it, "
                f"registered under the saved name: keras.saving.register_keras_serializable("
                f"{package!r}, {qualified!r})({first}), say."
            )
        found[name] = candidates[0]
    return found


def _other_bases(keras: Any) -> list[type]:
    """Keras's base classes, besides `Layer`, of the objects a model's config names by class."""
    return [
        keras.losses.Loss,
        keras.metrics.Metric,
        keras.regularizers.Regularizer,
        keras.initializers.Initializer,
        keras.constraints.Constraint,
        keras.optimizers.schedules.LearningRateSchedule,
    ]


# Where Python's own modules and installed packages lie: a module loaded from elsewhere is the
# user's code (a script's helper module, a notebook's folder, a package installed editable).
_INSTALLED: tuple[str, ...] = ()
# Module name -> whether it is the user's, for the module objects seen so far.
_SEEN: dict[str, tuple[Any, bool]] = {}


def modules_loaded_by_path() -> list[Any]:
    """The user's modules that another process could not import by name: loaded from a file by
    path (`importlib.util.spec_from_file_location`, put in `sys.modules` as Python's docs show)
    under a name that nothing on the import path finds, or finds as another file. What they
    define must travel to the trials' processes by value, as what `__main__` defines does."""
    verdicts: dict[str, bool] = {}
    loaded = []
    for name, module in list(sys.modules.items()):
        # `__main__` travels by value anyway (also as `__mp_main__`, multiprocessing's alias).
        if getattr(module, "__name__", name) == "__main__" or not _is_user_module(module):
            continue
        top = name.partition(".")[0]
        if top not in verdicts:
            verdicts[top] = _importable(top)
        if not verdicts[top]:
            loaded.append(module)
    return loaded


def _importable(name: str) -> bool:
    """Whether a fresh process would import the top-level module `name` as the one loaded here:
    the import system's finders find it, as the same file (they do not read `sys.modules`)."""
    here = getattr(sys.modules.get(name), "__file__", None)
    for finder in sys.meta_path:
        try:
            spec = finder.find_spec(name, None)
        except Exception:  # a finder of some other tool's, which this name is not for
            continue
        if spec is not None:
            origin = spec.origin if spec.has_location else None
            if here is None:
                return True
            if origin is None:  # a folder of that name (a namespace package), not the file
                return False
            try:
                return os.path.samefile(origin, here)
            except OSError:  # the file loaded here is gone: no process can import it now
                return False
    return False


def _is_user_module(module: Any) -> bool:
    """Whether `module` is a loaded module of the user's code: its file lies outside Python's
    standard library and installed packages, and it is none of `_LIBRARIES`."""
    global _INSTALLED
    name = getattr(module, "__name__", None)
    if not isinstance(name, str):
        return False
    seen = _SEEN.get(name)
    if seen is not None and seen[0] is module:
        return seen[1]
    if not _INSTALLED:
        import site
        import sysconfig

        paths = {*sysconfig.get_paths().values(), *site.getsitepackages(), sys.base_prefix}
        paths.add(site.getusersitepackages())
        # Folders of installed packages elsewhere on the import path (a .pth line's, or
        # $PYTHONPATH's, as a cluster's `module load` gives them): they hold their metadata.
        paths |= _distribution_folders()
        _INSTALLED = tuple(
            os.path.join(variant, "") for p in paths for variant in {p, os.path.realpath(p)}
        )
    try:
        file = getattr(module, "__file__", None)
    except Exception:  # a lazily loaded module may raise on any attribute
        file = None
    mine = (
        isinstance(file, str)
        and name.partition(".")[0] not in _LIBRARIES
        and not os.path.abspath(file).startswith(_INSTALLED)
    )
    _SEEN[name] = (module, mine)
    return mine


def _distribution_folders() -> set[str]:
    """The `site-packages` (`dist-packages`) folders that hold installed distributions,
    wherever the import path finds them. Not a project's own folder, which may hold its
    `*.egg-info` beside the user's modules."""
    import importlib.metadata

    folders = set()
    for dist in importlib.metadata.distributions():
        try:
            folder = os.path.abspath(str(dist.locate_file("")))
        except Exception:  # a finder of another tool's, whose distributions have no folder
            continue
        if os.path.basename(folder) in ("site-packages", "dist-packages"):
            folders.add(folder)
    return folders


def installed_package(name: str) -> bool:
    """Whether the top-level package `name` is loaded in this process, or installed: the import
    path finds it (without running it) in a folder of installed distributions, not in the
    working directory, a script's or a notebook's folder, where anyone who can write a file
    can put a module of that name."""
    if sys.modules.get(name) is not None:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin] if spec.has_location and spec.origin else []
    places += list(spec.submodule_search_locations or [])
    folders = _site_folders()
    return bool(places) and all(
        os.path.join(os.path.realpath(place), "").startswith(folders) for place in places
    )


@functools.cache
def _site_folders() -> tuple[str, ...]:
    """The folders installed packages lie in (`site-packages`, wherever found, and Python's
    own library: `sqlite3`), with a final separator: a package's files lie under one of them."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    paths |= {*site.getsitepackages(), site.getusersitepackages(), *_distribution_folders()}
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths)


def uses_user_classes(model: Any) -> bool:
    """Whether the model, or a layer in it, is of a class of the user's code (which Keras builds
    again from the class's own get_config, whose fidelity is the user's)."""
    layers = model._flatten_layers(include_self=True, recursive=True)
    return any(type(layer).__module__.partition(".")[0] not in _LIBRARIES for layer in layers)


# What every Keras layer's configuration holds beside its own arguments (`Layer.get_config`).
_BASE_ARGUMENTS = ("name", "trainable", "dtype")


def accept_base_arguments(cls: type) -> None:
    """Lets Keras load a layer or model of the user's class whose `__init__` takes its own
    arguments only: `def __init__(self, units): super().__init__()`.

    Keras saves such a layer's arguments (its automatic `get_config`) together with the base
    layer's `name`, `trainable` and `dtype`, and its `from_config` then passes all of them to
    `__init__`, which refuses the base ones. Keras's own examples write layers this way, and
    KerasTuner never loads them (it keeps weights and builds again), so hpo gives such a class
    a `from_config` that builds it from its own arguments and sets the base ones after (the
    dtype policy while it builds). A class with its own `from_config`, or whose `__init__`
    takes `**kwargs` or every base argument, is left as it is.
    """
    import keras

    # Keras's own `from_config` (a classmethod's function), which passes `__init__` everything.
    bases = [getattr(c.from_config, "__func__", None) for c in (keras.layers.Layer, keras.Model)]
    inherited = getattr(getattr(cls, "from_config", None), "__func__", None)
    if inherited is None or inherited not in bases:
        return
    try:
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    refused = tuple(k for k in _BASE_ARGUMENTS if k not in parameters)
    if not refused:
        return

    def from_config(klass: type, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        own = dict(config)
        base = {k: own.pop(k) for k in refused if k in own}
        with _dtype_policy(keras, base.get("dtype")):
            layer = inherited(klass, own, *args, **kwargs)
        if "name" in base:
            layer.name = base["name"]
        if "trainable" in base:
            layer.trainable = base["trainable"]
        return layer

    cls.from_config = classmethod(from_config)  # type: ignore[attr-defined]


def complete_config(cls: type) -> None:
    """Lets Keras load a layer of the user's class whose own `get_config` leaves out some of its
    `__init__` arguments, as keras.io's Vision Transformer's `PatchEncoder` leaves out
    `projection_dim`: the arguments it was made with (which Keras records when they are plain
    values, `_auto_config`) fill in those the configuration lacks.

    KerasTuner builds such a model again from its hyperparameters and never from the
    configuration; hpo stores it as a `.keras` file, which Keras builds from the configuration.
    """
    own = cls.__dict__.get("get_config")
    if own is None or getattr(own, "_hpo_complete", False):
        return

    def get_config(self: Any) -> Any:
        config = own(self)
        recorded = getattr(self, "_auto_config", None)
        if recorded is None or not isinstance(config, dict):
            return config
        try:
            parameters = inspect.signature(type(self).__init__).parameters
        except (TypeError, ValueError):
            return config
        missing = {
            key: value
            for key, value in recorded.config.items()
            if key not in config
            and key in parameters
            and parameters[key].kind
            in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        return {**config, **missing} if missing else config

    get_config._hpo_complete = True  # type: ignore[attr-defined]
    functools.update_wrapper(get_config, own)
    cls.get_config = get_config  # type: ignore[attr-defined]


def record_model_arguments(keras: Any, cls: type) -> None:
    """Makes Keras record the `__init__` arguments of a subclassed `keras.Model` of the user's as
    it records a layer's (plain values only), for the configuration it saves.

    Keras's `Model.__new__` drops them, so such a model saves no arguments: one that requires any
    cannot load, and one given a non-default value (`Classifier(activation="tanh")`) loads as
    the default's model. KerasTuner never loads a model; hpo stores each trial's as a file. Only
    models made after this runs record theirs (hpo runs it before it builds a model).
    """
    if not issubclass(cls, keras.Model) or cls.__new__ is not keras.Model.__new__:
        return
    cls.__new__ = staticmethod(_recording_new)  # type: ignore[assignment]


def _recording_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    # `keras.Model.__new__` for a subclass, but passing the arguments on, as a layer's does.
    return sys.modules["keras"].layers.Layer.__new__(cls, *args, **kwargs)


@contextmanager
def _dtype_policy(keras: Any, dtype: Any) -> Iterator[None]:
    """Keras's global dtype policy set to `dtype` (a layer's saved one) while a layer builds."""
    if dtype is None:
        yield
        return
    policy = keras.dtype_policies.get(dtype)
    before = keras.config.dtype_policy()
    if policy.name == before.name:
        yield
        return
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextmanager
def _searching(folder: Path) -> Iterator[None]:
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)
