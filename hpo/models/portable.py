"""What to try, from memory: a hypermodel defined in a notebook or a script, carried to trials.

`hpo.Tuner` takes a KerasTuner `build_model(hp)` function or `HyperModel` defined wherever the
user runs it (a notebook cell, a script's `__main__`). Trial processes are started from a fork
server that never ran the user's code, so the hypermodel travels with each trial's job, pickled
by value with cloudpickle (its code and the globals it uses), never through the study store: the
store records the family's name only, as data.

Layers and models the same code defines (and its losses, metrics, regularizers and the like)
travel with it, and are registered with Keras again in the trial's process, before the rest is
unpickled: there `keras.saving.register_keras_serializable` never ran, and Keras could
not save or load a model that holds them. Those `__main__` leaves unregistered (KerasTuner's
examples do not register theirs: KerasTuner keeps weights and builds again), hpo registers
under `__main__`, as it does every class of the user's code it meets
(`hpo.models.external.register_user_objects`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import pickle
import sys
from typing import TYPE_CHECKING, Any

import cloudpickle

from hpo._exception_text import exception_text
from hpo.errors import ConfigError
from hpo.models.external import modules_loaded_by_path, register_user_objects

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from hpo.models.hypermodel import HyperModelFamily

__all__ = [
    "PortableHypermodel",
    "apply_keras_settings",
    "family_name",
    "keras_settings",
    "main_custom_objects",
    "register_custom_objects",
]

# Where a notebook's cells and a script run: code that a trial's process cannot import.
_MAIN = "__main__"
_log = logging.getLogger(__name__)
# The registered names of the functions a search has left behind, unpicklable, in this process.
_LEFT_BEHIND: set[str] = set()


def family_name(hypermodel: Any) -> str:
    """The family name a hypermodel gets in its study: its function's, method's or class's name
    (a `functools.partial`'s function's), else its object's class name."""
    while isinstance(hypermodel, functools.partial):
        hypermodel = hypermodel.func
    named = inspect.isroutine(hypermodel) or inspect.isclass(hypermodel)
    name = getattr(hypermodel if named else type(hypermodel), "__name__", "")
    return name if name.isidentifier() else "hypermodel"


class PortableHypermodel:
    """A KerasTuner hypermodel and the arguments `search` gives its `fit`, picklable by value.

    Args:
        hypermodel: A `build(hp)` function, or a `keras_tuner.HyperModel` instance or class.
        fit_kwargs: What `Tuner.search` passes on to the hypermodel's `fit` (and so to
            `model.fit`): `batch_size`, `class_weight`, `callbacks`, `epochs`.
        declared: The Tuner's `hyperparameters`, `tune_new_entries` and `allow_new_entries`
            (KerasTuner's), by name: parameters declared before the hypermodel builds.
        fit_defaults: `model.fit` arguments the data imply (a dataset's `batch_size`), for
            what neither `fit_kwargs` nor the hypermodel's own `fit` sets.
        overrides: The Tuner's `optimizer`, `loss`, `metrics` and `max_model_size` (KerasTuner's),
            applied to each model the hypermodel builds; and `default_objective`, where the
            Tuner was given no objective (see `HyperModelFamily`).

    Raises:
        ConfigError: The hypermodel (or a callback) cannot be pickled, naming the cause.
    """

    def __init__(
        self,
        hypermodel: Any,
        fit_kwargs: Mapping[str, Any] | None = None,
        declared: Mapping[str, Any] | None = None,
        fit_defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = family_name(hypermodel)
        module = getattr(hypermodel, "__module__", None) or type(hypermodel).__module__
        qualname = getattr(hypermodel, "__qualname__", None) or type(hypermodel).__qualname__
        # What the study records of it: where it was defined, for people to read.
        self.spec = f"{module}:{qualname}"
        self.hypermodel = hypermodel
        self.fit_kwargs = dict(fit_kwargs or {})
        self.declared = dict(declared or {})
        self.fit_defaults = dict(fit_defaults or {})
        self.overrides = dict(overrides or {})
        register_user_objects()
        # Modules loaded by file path, which a trial's process cannot import: sent by value.
        self._by_value = [m for m in modules_loaded_by_path() if not _pickled_by_value(m)]
        self.custom_objects = main_custom_objects({m.__name__ for m in self._by_value})
        # As the user's session set them (a notebook's keras.config.set_image_data_format):
        # the trial's process, which never ran that code, builds the models under them too.
        self.keras_settings = keras_settings()
        self._payload = self._pickle()
        self._family: HyperModelFamily | None = None

    def _pickle(self) -> bytes:
        # Modules that travel by value are pickled so for this pickle only, checks included: the
        # user's own pickling of them stays as it was.
        for module in self._by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            return self._checked_pickle()
        finally:
            for module in self._by_value:
                cloudpickle.unregister_pickle_by_value(module)

    def _checked_pickle(self) -> bytes:
        # The script's other functions go along to be registered in the trial (a custom
        # activation named in a layer's config); one the hypermodel does not use is left behind,
        # named, where its globals are large (a helper over a loaded data set: every trial's
        # process would receive the data), or where it cannot be pickled (its globals hold an
        # open file, say), rather than stopping a search that does not use it.
        self._leave_behind(self._large_and_unused())
        try:
            return self._dumps()
        except Exception as exc:
            failure = exc
        objects = self.custom_objects
        left = {
            name: f"which cannot unpickle it ({why})"
            for name, obj in objects.items()
            if (why := _unpicklable(obj))
        }
        if left:
            self._leave_behind(left)
            try:
                return self._dumps()
            except Exception as exc:
                failure = exc
        callbacks = self.fit_kwargs.get("callbacks") or ()
        for callback in callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]:
            if why := _unpicklable(callback):
                kind = type(callback)
                raise ConfigError(
                    f"the callback {kind.__module__}.{kind.__qualname__} given to search() "
                    f"cannot be sent to the trial processes ({why}). Each trial trains in a "
                    f"process of its own, which receives the callbacks pickled: leave it out, or "
                    f"give search() one that holds no open file, lock or connection (the "
                    f"notebook's own, a progress bar's)."
                ) from failure
        raise ConfigError(
            f"the hypermodel {self.spec} or a search() argument cannot be sent to the trial "
            f"processes ({type(failure).__name__}: {exception_text(failure)}). Each trial trains "
            f"in a process of its own, which receives them pickled: keep open files, locks, loaded "
            f"data sets and models out of the build function's globals and of the callbacks "
            f"(build them inside the function instead)."
        ) from failure

    def _large_and_unused(self) -> dict[str, str]:
        """The functions of `custom_objects` that pickle to over `_LARGE` bytes and that neither
        the hypermodel, the search's arguments nor the classes use, each with why it stays."""
        large = {}
        for name, obj in self.custom_objects.items():
            if isinstance(obj, type):
                continue
            size = _Recorder()
            try:
                size.dump(obj)
            except Exception:
                continue  # left behind as one that cannot be pickled
            if size.size > _LARGE:
                large[name] = (obj, size.size)
        if not large:
            return {}
        classes = [v for v in self.custom_objects.values() if isinstance(v, type)]
        used = _Recorder()
        try:
            used.dump((self.hypermodel, self.fit_kwargs, self.overrides, classes))
        except Exception:  # said by the pickling that follows, which fails too
            return {}
        return {
            name: (
                f"which {self.name} does not use: with the globals it uses, it pickles to "
                f"{size / 2**20:.0f} MB, which every trial's process would receive (give it what "
                f"it needs as arguments to send it)"
            )
            for name, (function, size) in large.items()
            if id(function) not in used.functions
        }

    def _leave_behind(self, left: Mapping[str, str]) -> None:
        for name, why in left.items():
            if name not in _LEFT_BEHIND:  # said once a process, not at every search
                _LEFT_BEHIND.add(name)
                _log.warning(
                    "%s is not sent to the trial processes, %s; a model that names it in its "
                    "config will not load there",
                    name,
                    why,
                )
        self.custom_objects = {k: v for k, v in self.custom_objects.items() if k not in left}

    def _dumps(self) -> bytes:
        # Two pickles, the classes' first: the trial's process registers them before it unpickles
        # the rest, where Keras's own unpickling of an instance of one (a layer or a loss in a
        # global the build function uses, pickled as a saved model) looks its class up by name.
        # Unpickled in one process, a class both pickles hold is one object (cloudpickle tracks it).
        classes = {k: v for k, v in self.custom_objects.items() if isinstance(v, type)}
        functions = {k: v for k, v in self.custom_objects.items() if k not in classes}
        rest = (
            self.hypermodel,
            self.fit_kwargs,
            self.declared,
            self.fit_defaults,
            self.overrides,
            functions,
            self.keras_settings,
        )
        return pickle.dumps((bytes(cloudpickle.dumps(classes)), bytes(cloudpickle.dumps(rest))))

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "payload": self._payload}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self.spec, self._payload = state["name"], state["spec"], state["payload"]
        self._by_value = []
        first, rest = pickle.loads(self._payload)
        classes = cloudpickle.loads(first)
        register_custom_objects(classes)
        (
            self.hypermodel,
            self.fit_kwargs,
            self.declared,
            self.fit_defaults,
            self.overrides,
            functions,
            self.keras_settings,
        ) = cloudpickle.loads(rest)
        register_custom_objects(functions)
        self.custom_objects = {**classes, **functions}
        apply_keras_settings(self.keras_settings)
        self._family = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortableHypermodel) and self._payload == other._payload

    __hash__ = None  # type: ignore[assignment]

    def family(self, reserved: set[str]) -> HyperModelFamily:
        """The hypermodel as an hpo family, one per process (it keeps the last build's `hp`).

        Args:
            reserved: Parameter names hpo itself uses; a hypermodel parameter of the same name
                gets the family's name as a prefix (`build_model/learning_rate`).
        """
        if self._family is None:
            from hpo.models.hypermodel import HyperModelFamily, as_hypermodel

            if as_hypermodel(self.hypermodel) is None:
                raise ConfigError(
                    f"hpo.Tuner takes a KerasTuner hypermodel: a keras_tuner.HyperModel, or "
                    f"a function callable as build_model(hp) that builds and returns a new "
                    f"model (its other parameters need defaults); got {self.spec} "
                    f"({type(self.hypermodel).__name__})."
                )
            name = self.name

            def rename(parameter: str) -> str:
                return f"{name}/{parameter}" if parameter in reserved else parameter

            self._family = HyperModelFamily(
                name,
                self.hypermodel,
                rename,
                fit_kwargs=self.fit_kwargs,
                declared=self.declared,
                fit_defaults=self.fit_defaults,
                overrides=self.overrides,
            )
        return self._family


# Keras's global settings that decide what a model builds into, by `keras.config` getter. The
# dtype policy (and `floatx`, which it follows) travels as the study's training precision
# instead, where it is a mixed one (`hpo.Tuner.search`): trials compute in that precision.
_SETTINGS = ("image_data_format", "epsilon")


def keras_settings() -> dict[str, Any]:
    """Keras's global settings in this process (`_SETTINGS`), by name; none before Keras is
    imported (then they are Keras's defaults, which every process has)."""
    keras = sys.modules.get("keras")
    if keras is None:
        return {}
    return {name: getattr(keras.config, name)() for name in _SETTINGS}


def apply_keras_settings(settings: Mapping[str, Any]) -> None:
    """Sets Keras's global settings to `settings` (`keras_settings` of another process)."""
    if not settings:
        return
    import keras

    for name, value in settings.items():
        if name in _SETTINGS:  # by name from a fixed list: data, never an attribute to look up
            getattr(keras.config, f"set_{name}")(value)


def main_custom_objects(modules: Collection[str] = ()) -> dict[str, Any]:
    """The Keras objects that `__main__` (a notebook or a script) registered, and those of
    `modules`, by registered name: what a trial's process must register again
    (`register_custom_objects`)."""
    keras = sys.modules.get("keras")
    if keras is None:  # nothing can have been registered yet
        return {}
    return {
        name: obj
        for name, obj in keras.saving.get_custom_objects().items()
        if getattr(obj, "__module__", None) in {_MAIN, *modules}
    }


def register_custom_objects(objects: Mapping[str, Any]) -> None:
    """Registers `objects` (registered name -> class or function) as Keras registered them."""
    if not objects:
        return
    import keras

    for registered, obj in objects.items():
        package, marker, name = registered.rpartition(">")
        if marker:
            keras.saving.register_keras_serializable(package=package, name=name)(obj)
        else:  # put in `get_custom_objects()` by hand, under a plain name
            keras.saving.get_custom_objects()[registered] = obj


# A function the hypermodel does not use is left behind from this size of its pickle up.
_LARGE = 1 << 20


class _Recorder(cloudpickle.Pickler):
    """Pickles into nothing, counting the bytes and recording the functions it met."""

    def __init__(self) -> None:
        self.size = 0
        self.functions: set[int] = set()
        super().__init__(self)

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes  # a large array's buffer comes as a `PickleBuffer`
        self.size += size
        return size

    def reducer_override(self, obj: Any) -> Any:
        if inspect.isfunction(obj):
            self.functions.add(id(obj))
        return super().reducer_override(obj)


def _pickled_by_value(module: Any) -> bool:
    """Whether the user registered `module` with cloudpickle to be pickled by value already."""
    try:
        return bool(cloudpickle.cloudpickle._is_registered_pickle_by_value(module))
    except AttributeError:  # a cloudpickle without it: registering again is harmless
        return False


def _unpicklable(obj: Any) -> str:
    """Why `obj` cannot be pickled by value, or "" if it can."""
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        return f"{type(exc).__name__}: {exception_text(exc, 200)}"
    return ""
