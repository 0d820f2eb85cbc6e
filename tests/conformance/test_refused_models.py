"""What hpo cannot train is refused with exit code 2, the family, the reason and the fix."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import optuna
import pytest
from keras import layers

from hpo.config import load_study_config
from hpo.errors import ConfigError
from hpo.training.interface import Labels, ModelInterface, Output, Padding
from hpo.training.runner import check_round_trip

from . import refused_models
from .test_text_models import hpo, write_user_study

if TYPE_CHECKING:
    from pathlib import Path


def _study(tmp_path: Path, fake_imdb: Path, family: str, n_trials: int) -> Path:
    path = write_user_study(
        tmp_path / family, fake_imdb, {family: f"refused_models:{family}"}, n_trials=n_trials
    )
    shutil.copy(refused_models.__file__, path.parent / "refused_models.py")
    return path


def test_an_output_that_does_not_fit_the_task_is_refused_before_any_trial(
    fake_imdb: Path, tmp_path: Path
) -> None:
    path = _study(tmp_path, fake_imdb, "three_units", n_trials=2)
    result = hpo("search", "--study", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "family 'three_units'" in result.stderr
    assert "Dense(1, activation='sigmoid')" in result.stderr
    study = optuna.load_study(study_name="users", storage=load_study_config(path).storage_url)
    assert all(t.state == optuna.trial.TrialState.WAITING for t in study.trials)


def test_a_choice_whose_values_change_between_builds_stops_the_search(
    fake_imdb: Path, tmp_path: Path
) -> None:
    path = _study(tmp_path, fake_imdb, "changing_choice", n_trials=4)
    result = hpo("search", "--study", str(path))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "hyperparameter 'units'" in result.stderr
    assert "must keep its values from build to build" in result.stderr
    study = optuna.load_study(study_name="users", storage=load_study_config(path).storage_url)
    states = [t.state for t in study.trials]
    # The first trial fixed the values; the second saw others, failed, and stopped the search.
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert len(states) < 4


def test_a_model_that_cannot_be_loaded_back_is_refused_naming_the_fix(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(20, 4)(inputs)
    x = layers.Lambda(lambda t: t * 2.0)(x)
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    interface = ModelInterface(Output(1, False), Labels.SPARSE, Padding.FIXED)

    class Data:
        x_val = np.ones((2, 5), dtype=np.int32)

    with pytest.raises(ConfigError, match=r"family 'lam': .* cannot be saved and loaded back") as e:
        check_round_trip(model, interface, "lam", Data(), tmp_path)  # type: ignore[arg-type]
    assert "replace each Lambda layer with a layer of your own class" in str(e.value)

    class Wrapper(layers.Layer):
        """Takes a layer, which Keras cannot write into the configuration without get_config."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x):
            return self.inner(x)

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = Wrapper(layers.Embedding(20, 4))(inputs)
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(x))
    with pytest.raises(ConfigError, match=r"family 'wrap': .* cannot be saved") as e:
        check_round_trip(keras.Model(inputs, outputs), interface, "wrap", Data(), tmp_path)  # type: ignore[arg-type]
    assert "give your custom layers and models get_config()" in str(e.value)

    class Classifier(keras.Model):
        """keras.io's subclassing guide's model: Keras records no __init__ argument of it."""

        def __init__(self, units):
            super().__init__()
            self.embedding = layers.Embedding(20, units)
            self.head = layers.Dense(1, activation="sigmoid")

        def call(self, x):
            return self.head(keras.ops.mean(self.embedding(x), axis=1))

    subclassed = Classifier(4)
    subclassed(Data.x_val)
    with pytest.raises(ConfigError, match=r"family 'sub': .* cannot be saved") as e:
        check_round_trip(subclassed, interface, "sub", Data(), tmp_path)  # type: ignore[arg-type]
    assert "give Classifier a get_config() that returns its __init__ arguments" in str(e.value)

    class Tanh(keras.Model):
        """Made before hpo saw the class (as one build_model defines inside itself is), it
        records the default "relu", not the "tanh" given: it loads as another model."""

        def __init__(self, activation="relu"):
            super().__init__()
            self.embedding = layers.Embedding(20, 4)
            self.hidden = layers.Dense(4, activation=activation)
            self.head = layers.Dense(1, activation="sigmoid")

        def call(self, x):
            return self.head(self.hidden(keras.ops.mean(self.embedding(x), axis=1)))

    other = Tanh(activation="tanh")
    other(Data.x_val)
    # Weights under which tanh and relu differ plainly (random small ones may not, at random).
    other.embedding.embeddings.assign(np.ones((20, 4), dtype="float32"))
    other.hidden.kernel.assign(-2.0 * np.eye(4, dtype="float32"))
    other.head.kernel.assign(np.ones((4, 1), dtype="float32"))
    with pytest.raises(ConfigError, match=r"family 'tanh': .* loads back .* as another model"):
        check_round_trip(other, interface, "tanh", Data(), tmp_path)  # type: ignore[arg-type]
    default = Tanh()
    default(Data.x_val)  # hpo calls every model before this check (`read_interface`)
    check_round_trip(default, interface, "relu", Data(), tmp_path)  # type: ignore[arg-type]


def test_a_lambda_activation_or_loss_is_refused_naming_it_and_a_def_for_it(
    tmp_path: Path,
) -> None:
    """A Sequential model of Keras's own layers whose activation or loss is a lambda: Keras
    saves it as code that safe mode refuses to run. The fix named was to use keras.Sequential
    or the functional API, give custom layers get_config() and no Lambda layers: none of it
    the model's, and none of it would have helped."""
    interface = ModelInterface(Output(1, False), Labels.SPARSE, Padding.FIXED)

    class Data:
        x_val = np.ones((2, 3), dtype=np.float32)

    def model(activation: Any) -> keras.Model:
        hidden = layers.Dense(2, activation=activation, name="hidden")
        return keras.Sequential([keras.Input((3,)), hidden, layers.Dense(1, activation="sigmoid")])

    with pytest.raises(ConfigError, match=r"family 'act': .* cannot be saved") as e:
        check_round_trip(
            model(lambda t: keras.ops.relu(t) * 0.5), interface, "act", Data(), tmp_path
        )  # type: ignore[arg-type]
    assert "the activation of layer 'hidden' is a Python lambda" in str(e.value)
    assert "Define it with def at the top level" in str(e.value)
    assert "keras.layers.Dense(..., activation=half_relu)" in str(e.value)
    assert "functional API" not in str(e.value)

    # Saved in a trial's process, where its source cannot be read (a notebook's cell, a script
    # the process never ran), a lambda loss stopped Keras's saving (OSError: could not get
    # source code); so does one made from a string here.
    loss = eval("lambda y_true, y_pred: keras.ops.mean((y_true - y_pred) ** 2)")
    compiled = model("relu")
    compiled.compile("adam", loss=loss)
    with pytest.raises(ConfigError, match=r"family 'loss': .* cannot be saved") as e:
        check_round_trip(compiled, interface, "loss", Data(), tmp_path)  # type: ignore[arg-type]
    assert "the loss given to compile is a Python lambda" in str(e.value)
    assert "def my_loss(y_true, y_pred)" in str(e.value)
    assert "model.compile(..., loss=my_loss)" in str(e.value)


def test_a_function_of_an_installed_package_unregistered_is_refused_naming_the_fix(
    tmp_path: Path,
) -> None:
    def doubled(x):
        return 2.0 * x

    doubled.__module__ = "json"  # as if an installed package defined it: hpo leaves it alone
    inputs = keras.Input(shape=(3,))
    outputs = layers.Dense(1, activation="sigmoid")(layers.Dense(2, activation=doubled)(inputs))
    interface = ModelInterface(Output(1, False), Labels.SPARSE, Padding.FIXED)

    class Data:
        x_val = np.ones((2, 3), dtype=np.float32)

    with pytest.raises(ConfigError, match=r"Could not locate function 'doubled'") as e:
        check_round_trip(keras.Model(inputs, outputs), interface, "fn", Data(), tmp_path)  # type: ignore[arg-type]
    assert "@keras.saving.register_keras_serializable()" in str(e.value)
    assert "not an installed package's" in str(e.value)
