"""Layers of the user's own classes, written as keras.io's examples write them, load back.

Their `__init__` takes their own arguments only and they are not registered with Keras; the
classes here live in this module (neither `__main__` nor a study file's module), as a user's
helper module's do.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pytest
from keras import layers

import hpo.cli
from hpo.contract import load_keras_file, own_class_hint
from hpo.errors import ConfigError
from hpo.models.external import (
    modules_loaded_by_path,
    register_user_objects,
    uses_user_classes,
)

if TYPE_CHECKING:
    from pathlib import Path


def _round_trip(model: keras.Model, path: Path) -> keras.Model:
    # As hpo does once it has built a model, before it saves it; this module stands for a study
    # file's family module (whose own functions hpo registers).
    register_user_objects(sys.modules[__name__])
    model.save(path)
    return load_keras_file(path)


def test_a_layer_of_its_own_arguments_only_loads_back_with_its_weights_and_base_settings(
    tmp_path: Path,
) -> None:
    class Scale(layers.Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal")

        def call(self, x):
            return x * self.w * self.factor

    inputs = keras.Input(shape=(3,))
    frozen = Scale(2.0)
    outputs = layers.Dense(1)(frozen(inputs))
    model = keras.Model(inputs, outputs)
    frozen.trainable = False
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")

    loaded = _round_trip(model, tmp_path / "scale.keras")

    (scale,) = [layer for layer in loaded.layers if isinstance(layer, Scale)]
    assert scale.factor == 2.0
    assert not scale.trainable
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_layer_built_under_another_dtype_policy_keeps_it(tmp_path: Path) -> None:
    class Offset(layers.Layer):
        def __init__(self, offset):
            super().__init__()
            self.offset = offset

        def call(self, x):
            return x + self.offset

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        offset = Offset(0.5)
    finally:
        keras.config.set_dtype_policy(before)
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, layers.Dense(1)(offset(inputs)))

    loaded = _round_trip(model, tmp_path / "offset.keras")

    (restored,) = [layer for layer in loaded.layers if isinstance(layer, Offset)]
    assert restored.dtype_policy.name == "float64"
    assert keras.config.dtype_policy().name == before.name


def _add_one() -> keras.Model:
    class Shift(layers.Layer):
        def __init__(self):
            super().__init__()

        def call(self, x):
            return x + 1.0

    inputs = keras.Input(shape=(1,))
    return keras.Model(inputs, Shift()(inputs))


def _add_two() -> keras.Model:
    class Shift(layers.Layer):
        def __init__(self):
            super().__init__()

        def call(self, x):
            return x + 2.0

    inputs = keras.Input(shape=(1,))
    return keras.Model(inputs, Shift()(inputs))


def test_two_functions_classes_of_one_name_each_load_as_themselves(tmp_path: Path) -> None:
    one, two = _add_one(), _add_two()
    x = np.zeros((1, 1), dtype="float32")

    loaded_one = _round_trip(one, tmp_path / "one.keras")
    loaded_two = _round_trip(two, tmp_path / "two.keras")

    assert loaded_one.predict(x, verbose=0)[0, 0] == 1.0
    assert loaded_two.predict(x, verbose=0)[0, 0] == 2.0


def test_a_class_that_takes_the_base_arguments_keeps_keras_own_loading(tmp_path: Path) -> None:
    class Doubler(layers.Layer):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)

        def call(self, x):
            return 2.0 * x

    inputs = keras.Input(shape=(1,))
    model = keras.Model(inputs, Doubler(name="twice")(inputs))

    loaded = _round_trip(model, tmp_path / "doubler.keras")

    assert "from_config" not in vars(Doubler)
    assert loaded.layers[-1].name == "twice"


def scaled_tanh(x: Any) -> Any:
    """An activation of the user's own, a plain function of their module."""
    return 1.7159 * keras.ops.tanh(2.0 / 3.0 * x)


def test_an_activation_function_of_the_users_module_loads_back(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, layers.Dense(3, activation=scaled_tanh)(inputs))
    x = np.ones((1, 2), dtype="float32")

    loaded = _round_trip(model, tmp_path / "activation.keras")

    assert loaded.layers[-1].activation is scaled_tanh
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_only_models_holding_a_class_of_the_users_are_checked_after_each_trial() -> None:
    inputs = keras.Input(shape=(2,))
    builtin = keras.Model(inputs, layers.Dense(1)(layers.Dense(3)(inputs)))
    assert not uses_user_classes(builtin)
    assert not uses_user_classes(keras.Sequential([keras.Input((2,)), layers.Dense(1)]))
    assert uses_user_classes(_add_one())  # a layer of the user's inside a functional model


def test_loading_layers_that_make_their_sublayers_in_init_warns_nothing(tmp_path: Path) -> None:
    class Block(layers.Layer):  # keras.io's way: sublayers in __init__, no build()
        def __init__(self, units):
            super().__init__()
            self.dense = layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, Block(3)(inputs))
    x = np.ones((1, 2), dtype="float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _round_trip(model, tmp_path / "block.keras")
    assert not [w for w in caught if "was called on layer" in str(w.message)]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_function_of_a_helper_module_the_script_imports_loads_back(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # A module of the user's, neither `__main__` nor a study file's: a script's `from helpers
    # import halve`. Only its being loaded makes hpo register its functions.
    (tmp_path / "hpo_test_helpers.py").write_text(
        "import keras\n\ndef halve(x):\n    return keras.ops.relu(x) / 2.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hpo_test_helpers", raising=False)
    import hpo_test_helpers  # type: ignore[import-not-found]

    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, layers.Dense(3, activation=hpo_test_helpers.halve)(inputs))
    x = np.ones((1, 2), dtype="float32")
    register_user_objects()
    model.save(tmp_path / "halve.keras")

    loaded = load_keras_file(tmp_path / "halve.keras")

    assert loaded.layers[-1].activation is hpo_test_helpers.halve
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_layer_whose_get_config_leaves_out_an_argument_loads_back(tmp_path: Path) -> None:
    class PatchEncoder(layers.Layer):  # keras.io's Vision Transformer's, as it is written
        def __init__(self, num_patches, projection_dim):
            super().__init__()
            self.num_patches = num_patches
            self.projection = layers.Dense(units=projection_dim)
            self.position_embedding = layers.Embedding(num_patches, projection_dim)

        def call(self, patch):
            positions = keras.ops.expand_dims(keras.ops.arange(0, self.num_patches), axis=0)
            return self.projection(patch) + self.position_embedding(positions)

        def get_config(self):
            config = super().get_config()
            config.update({"num_patches": self.num_patches})  # no projection_dim
            return config

    inputs = keras.Input(shape=(4, 6))
    model = keras.Model(inputs, PatchEncoder(4, 5)(inputs))
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")

    loaded = _round_trip(model, tmp_path / "patches.keras")

    (encoder,) = [layer for layer in loaded.layers if isinstance(layer, PatchEncoder)]
    assert encoder.get_config()["projection_dim"] == 5
    assert encoder.get_config()["num_patches"] == 4
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_complete_get_config_is_left_as_it_is() -> None:
    class Scaled(layers.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    register_user_objects()

    config = Scaled(3.0, name="thrice").get_config()
    assert config["factor"] == 3.0
    assert config["name"] == "thrice"
    assert set(config) == {"factor", "name", "trainable", "dtype"}


def test_a_subclassed_model_made_after_registration_loads_back_with_its_arguments(
    tmp_path: Path,
) -> None:
    class Classifier(keras.Model):  # Keras's subclassing guide's way: no get_config
        def __init__(self, units, activation="relu"):
            super().__init__()
            self.hidden = layers.Dense(units, activation=activation)
            self.head = layers.Dense(1, activation="sigmoid")

        def call(self, x):
            return self.head(self.hidden(x))

    register_user_objects()  # as hpo does before it builds a model
    model = Classifier(4, activation="tanh")
    x = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
    model(x)

    loaded = _round_trip(model, tmp_path / "classifier.keras")

    assert isinstance(loaded, Classifier)
    assert loaded.hidden.units == 4
    assert loaded.hidden.activation is keras.activations.tanh
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_modules_loaded_by_path_are_those_no_fresh_process_would_import_as_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "helpers_here.py").write_text("WHICH = 'on the path'\n")
    (tmp_path / "importable_mod.py").write_text("WHICH = 'on the path'\n")
    for name in ("nowhere_mod", "helpers_here"):
        (tmp_path / "src" / f"{name}.py").write_text("WHICH = 'by path'\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(name: str, file: Path) -> object:
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    nowhere = load("nowhere_mod", tmp_path / "src" / "nowhere_mod.py")
    # Found on the path, but as another file than the one loaded under that name, or as a
    # folder of that name (which a fresh process imports as an empty namespace package).
    shadowed = load("helpers_here", tmp_path / "src" / "helpers_here.py")
    (tmp_path / "data_here").mkdir()
    (tmp_path / "src" / "data_here.py").write_text("WHICH = 'by path'\n")
    folder = load("data_here", tmp_path / "src" / "data_here.py")
    importable = load("importable_mod", tmp_path / "importable_mod.py")
    found = modules_loaded_by_path()
    assert nowhere in found and shadowed in found and folder in found
    assert importable not in found
    # `__main__` travels by value anyway, under multiprocessing's alias `__mp_main__` too.
    assert not any(m.__name__ in {"__main__", "hpo", "keras", "numpy"} for m in found)


def test_a_package_installed_in_a_site_packages_folder_off_the_venv_is_not_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed packages reached through a .pth line or $PYTHONPATH (a cluster's `module
    # load`) were taken for the user's code: a module such a package loads by path (debugpy's
    # vendored `_pydevd_bundle`) was sent to the trials by value, and a notebook's search
    # failed there with "No module named '_pydevd_bundle'".
    from hpo.models import external

    site = tmp_path / "other-env" / "lib" / "site-packages"
    (site / "vendored").mkdir(parents=True)
    (site / "tool_pkg").mkdir()
    (site / "tool_pkg" / "__init__.py").write_text("")
    (site / "tool_pkg-1.0.dist-info").mkdir()
    (site / "tool_pkg-1.0.dist-info" / "METADATA").write_text("Name: tool-pkg\nVersion: 1.0\n")
    (site / "vendored" / "vendored_bundle_mod.py").write_text("WHICH = 'vendored'\n")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "my_helpers_mod.py").write_text("WHICH = 'mine'\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(tmp_path / "project"))
    monkeypatch.setattr(external, "_INSTALLED", ())
    monkeypatch.setattr(external, "_SEEN", {})
    spec = importlib.util.spec_from_file_location(
        "vendored_bundle_mod", site / "vendored" / "vendored_bundle_mod.py"
    )
    assert spec is not None and spec.loader is not None
    vendored = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "vendored_bundle_mod", vendored)
    spec.loader.exec_module(vendored)
    import my_helpers_mod  # type: ignore[import-not-found]

    monkeypatch.setitem(sys.modules, "my_helpers_mod", my_helpers_mod)
    found = modules_loaded_by_path()
    assert vendored not in found
    assert not external._is_user_module(vendored)
    assert external._is_user_module(my_helpers_mod)


def _registered(monkeypatch: pytest.MonkeyPatch, cls: type, package: str) -> None:
    """Registers `cls` with Keras as `package>Name` for this test only."""
    from keras.src.saving import object_registration

    monkeypatch.setitem(keras.saving.get_custom_objects(), f"{package}>{cls.__name__}", cls)
    monkeypatch.setitem(object_registration.GLOBAL_CUSTOM_NAMES, cls, f"{package}>{cls.__name__}")


def _shift_class() -> type:
    class Shift(layers.Layer):
        def __init__(self, by, **kwargs):
            super().__init__(**kwargs)
            self.by = by

        def call(self, x):
            return x + self.by

        def get_config(self):
            return {**super().get_config(), "by": self.by}

    return Shift


def test_a_class_the_search_script_defined_loads_where_a_later_script_imports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift = _shift_class()
    # The search ran as `python search.py`: Keras names the class by `__main__`.
    _registered(monkeypatch, shift, "__main__")
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, shift(3.0)(inputs))
    model.save(tmp_path / "shift.keras")
    # A later script does `from search import Shift`: the class is registered by that name.
    monkeypatch.delitem(keras.saving.get_custom_objects(), "__main__>Shift")
    _registered(monkeypatch, shift, "search")

    loaded = load_keras_file(tmp_path / "shift.keras")

    (layer,) = [layer for layer in loaded.layers if isinstance(layer, shift)]
    assert layer.by == 3.0
    np.testing.assert_array_equal(loaded.predict(np.zeros((1, 2)), verbose=0), [[3.0, 3.0]])


def test_a_saved_class_name_two_loaded_classes_have_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift = _shift_class()
    _registered(monkeypatch, shift, "__main__")
    inputs = keras.Input(shape=(2,))
    keras.Model(inputs, shift(3.0)(inputs)).save(tmp_path / "shift.keras")
    monkeypatch.delitem(keras.saving.get_custom_objects(), "__main__>Shift")
    first, second = _shift_class(), _shift_class()
    first.__module__, second.__module__ = "search", "other_search"
    _registered(monkeypatch, first, "search")
    _registered(monkeypatch, second, "other_search")

    with pytest.raises(ConfigError, match=r"search\.Shift and other_search\.Shift"):
        load_keras_file(tmp_path / "shift.keras")
    # The fix it names: the one meant, registered under the saved name (a module of the
    # search script's imports had a class of that name too).
    with pytest.raises(ConfigError, match=r"register_keras_serializable\('__main__', 'Shift'\)"):
        load_keras_file(tmp_path / "shift.keras")
    _registered(monkeypatch, first, "__main__")
    loaded = load_keras_file(tmp_path / "shift.keras")
    assert any(isinstance(layer, first) for layer in loaded.layers)


def test_the_hint_for_a_missing_class_of_ones_own_fits_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = TypeError("Could not locate class 'Shift'.")

    assert "--study" not in own_class_hint(missing)  # a Tuner's project has no study file
    assert "define or import the class" in own_class_hint(missing)
    monkeypatch.setattr(hpo.cli, "_IN_COMMAND", True)
    assert "--study FILE" in own_class_hint(missing)
