"""`hpo.Tuner`: KerasTuner's interface on in-memory arrays, end to end, and its refusals."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from optuna.trial import TrialState

import hpo
from hpo.config import StudyConfig, config_to_dict
from hpo.data.in_memory import class_labels, split_arrays
from hpo.errors import ConfigError, DataError, HpoError
from hpo.models.portable import PortableHypermodel

from .conftest import run_in, run_user_script

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]


def _hypermodel() -> Callable[[Any], Any]:
    # Defined inside a function, as in a notebook cell: no trial process can import it by name,
    # so it reaches them by value.
    def build_model(hp: Any) -> Any:
        import keras
        from keras import layers

        inputs = keras.Input(shape=(8,))
        x = layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu")(inputs)
        outputs = layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inputs, outputs)
        # `learning_rate` is also an hpo parameter's name: the study prefixes it.
        rate = hp.Choice("learning_rate", [0.03, 0.01])
        model.compile(optimizer=keras.optimizers.Adam(rate), loss="binary_crossentropy")
        return model

    return build_model


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64")


def _tuner(folder: Path, max_trials: int, **kwargs: Any) -> hpo.Tuner:
    return hpo.Tuner(
        _hypermodel(),
        objective="val_accuracy",
        max_trials=max_trials,
        directory=folder,
        project_name="synthetic",
        seed=0,
        **kwargs,
    )


def test_optunas_line_for_a_trial_at_verbose_2_shows_the_parameters_its_process_sampled(
    tmp_path: Path,
) -> None:
    """verbose=2 shows Optuna's own log lines; "Trial 0 finished with value: ... and
    parameters: {'family': 'build_model'}" showed what this process sampled, not the units and
    learning rate the trial's process sampled and the store holds."""
    import optuna

    x, y = _data(128, 0)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    optuna_logger = logging.getLogger("optuna")
    optuna_logger.addHandler(handler)
    # As an hpo command run earlier in the process leaves it (`hpo.cli`): verbose=2 shows
    # Optuna's lines all the same.
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        tuner = _tuner(tmp_path, 1)
        tuner.search(x, y, validation_split=0.25, epochs=1, verbose=2)
    finally:
        optuna_logger.removeHandler(handler)
        optuna.logging.set_verbosity(before)
    [stored] = tuner.study().optuna_study.get_trials()
    assert {"units", "learning_rate"} <= {name.rpartition("/")[2] for name in stored.params}
    [line] = [m for m in seen if m.startswith("Trial 0 finished with value")]
    assert f"and parameters: {stored.params}." in line, line


@pytest.mark.slow
def test_a_tuner_searches_arrays_ensembles_them_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _data(512, 0)
    x_val, y_val = _data(256, 1)
    x_test, y_test = _data(256, 2)

    def run(max_trials: int) -> hpo.Tuner:
        tuner = _tuner(tmp_path, max_trials)
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=2, batch_size=32, verbose=0)
        return tuner

    tuner = run(1)
    first = tuner.study().optuna_study.get_trials()
    assert [t.state for t in first] == [TrialState.COMPLETE]
    # The same code again, asking for more trials (a new Tuner, as after a kernel restart):
    # the study continues, its earlier trial kept as it was.
    tuner = run(2)
    trials = tuner.study().optuna_study.get_trials()
    assert len(trials) == 2
    assert (trials[0].number, trials[0].value, trials[0].params) == (
        first[0].number,
        first[0].value,
        first[0].params,
    )
    assert all(t.state is TrialState.COMPLETE for t in trials)
    # Run again as it is: the study already holds its trials, nothing more runs.
    assert run(2).study().optuna_study.get_trials() == trials
    # Other training settings would make the trials incomparable: refused before any trial.
    with pytest.raises(ConfigError, match=r"settings differ.*overwrite=True"):
        _tuner(tmp_path, 3).search(x, y, validation_data=(x_val, y_val), epochs=3, verbose=0)
    # So would other data: refused, and the copy of them written for the search removed (a
    # notebook trying again and again would fill the disk with copies).
    with pytest.raises(ConfigError, match=r"searched on other data.*overwrite=True"):
        _tuner(tmp_path, 3).search(
            x_val, y_val, validation_data=(x, y), epochs=2, batch_size=32, verbose=0
        )
    assert len(tuner.study().optuna_study.get_trials()) == 2
    # The arrays were written once, into the study's folder, and are all the trials read.
    assert len(list((tmp_path / "synthetic" / "cache").glob("arrays-*"))) == 1

    best_hp = tuner.get_best_hyperparameters(2)
    assert [sorted(hp.values) for hp in best_hp] == [["learning_rate", "units"]] * 2
    best = max(trials, key=lambda t: t.value)
    assert best_hp[0].values["units"] == best.params["units"]
    assert best_hp[0].values["learning_rate"] == best.params["build_model/learning_rate"]
    # Their space too, as KerasTuner's hold it (it was empty): the ranges build_model
    # declared, and a round trip through get_config keeps the values.
    import keras_tuner

    space = {p.name: p for p in best_hp[0].space}
    assert sorted(space) == ["learning_rate", "units"]
    assert (space["units"].min_value, space["units"].max_value, space["units"].step) == (4, 16, 4)
    assert list(space["learning_rate"].values) == [0.03, 0.01]
    again = keras_tuner.HyperParameters.from_config(best_hp[0].get_config())
    assert again.values == best_hp[0].values
    # KerasTuner's oracle, as scripts read it: tuner.oracle.get_best_trials(1)[0].score.
    oracle = tuner.oracle
    assert (oracle.objective.name, oracle.objective.direction) == ("val_accuracy", "max")
    [top] = oracle.get_best_trials(1)
    assert (top.trial_id, top.status, top.score) == (f"{best.number:02d}", "COMPLETED", best.value)
    assert top.hyperparameters.values == best_hp[0].values
    per_epoch = [best.intermediate_values[e] for e in sorted(best.intermediate_values)]
    assert top.best_step == int(np.argmax(per_epoch))
    assert top.metrics.get_best_value("val_accuracy") == best.value
    assert top.metrics.get_history("val_accuracy")[-1].value == [per_epoch[-1]]
    # Every epoch's logs, as KerasTuner's trials keep them.
    val_loss = [o.value for o in top.metrics.get_history("val_loss")]
    assert val_loss == [[v] for v in best.user_attrs["history"]["val_loss"]]
    assert len(val_loss) == best.user_attrs["epochs"]
    assert best.user_attrs["metrics"]["val_loss"] == val_loss[top.best_step][0]
    assert list(oracle.trials) == ["00", "01"]
    assert oracle.get_trial("01").score == oracle.get_trial(1).score == trials[1].value
    with pytest.raises(ConfigError, match=r"no trial '7'.*\['00', '01'\]"):
        oracle.get_trial("7")
    # As KerasTuner's tutorials use it: the hypermodel builds the best values' model.
    assert tuner.hypermodel.build(best_hp[0]).layers[1].units == best.params["units"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [model] = tuner.get_best_models(1)
    assert not [w for w in caught if "no longer predicts" in str(w.message)]
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    assert accuracy == pytest.approx(best.value, abs=1e-6)
    # KerasTuner's tuner.load_model(trial), given the oracle's trial or a number.
    for trial in (top, best.number):
        np.testing.assert_allclose(
            tuner.load_model(trial).predict(x_val, verbose=0), model.predict(x_val, verbose=0)
        )
    with pytest.raises(ConfigError, match=r"no trial 7; .*trial number \(0 to 1\)"):
        tuner.load_model(7)

    # A model whose code changed since its trial (a notebook cell defining a layer run again)
    # loads and computes something else than the trial recorded: the tuner says so.
    loading = hpo.api.Study.load_model

    def changed(study: Any, trial: Any = None) -> Any:
        loaded = loading(study, trial)
        last = loaded.weights[-1]
        last.assign(last.numpy() + 1.0)
        return loaded

    recorded = rf"trial {best.number}'s model, loaded, no longer predicts what its trial recorded"
    with monkeypatch.context() as patched:
        patched.setattr(hpo.api.Study, "load_model", changed)
        with pytest.warns(UserWarning, match=rf"(?s){recorded}: .*code changed.*as it loads now"):
            tuner.get_best_models(1)
        with pytest.warns(UserWarning, match=recorded):
            tuner.load_model(best.number)
    # What Keras logged at the kept epoch, the model's own loss among it, is on the trial.
    logged = best.user_attrs["metrics"]
    assert {"loss", "val_loss", "val_accuracy"} <= set(logged)
    assert logged["val_accuracy"] == pytest.approx(best.value, abs=1e-6)

    ensemble = tuner.ensemble(top=2)
    assert set(ensemble.members) <= {t.number for t in trials}
    probabilities = ensemble.predict(x_test)
    assert probabilities.shape == (len(x_test),)
    # Inputs as the search took them: a sparse matrix too.
    import scipy.sparse

    np.testing.assert_allclose(ensemble.predict(scipy.sparse.csr_matrix(x_test)), probabilities)
    scores = ensemble.evaluate(x_test, y_test)
    assert scores["accuracy"] == pytest.approx(np.mean((probabilities > 0.5) == y_test))
    assert scores["accuracy"] > 0.8, scores  # always 0 would score 0.61
    assert list(scores["members"]) == ensemble.members

    path = ensemble.export(tmp_path / "ensemble.keras")
    loaded = hpo.load_model(path)
    exported = np.asarray(loaded.predict(x_test, verbose=0)).reshape(-1)
    np.testing.assert_allclose(exported, probabilities, atol=1e-5)
    # To serve: a SavedModel (TensorFlow Serving) and an ONNX file, each checked by its runtime.
    served = ensemble.export(tmp_path / "served", formats=("savedmodel", "onnx"))
    assert served == tmp_path / "served"
    assert (served / "saved_model" / "saved_model.pb").is_file()
    import onnxruntime

    [onnx_file] = served.glob("*.onnx")
    session = onnxruntime.InferenceSession(str(onnx_file))
    [onnx_out] = session.run(None, {session.get_inputs()[0].name: x_test.astype(np.float32)})
    np.testing.assert_allclose(np.asarray(onnx_out).reshape(-1), probabilities, atol=1e-5)

    # An ordinary hpo study: `hpo status` reads it from its store, without the Tuner's code.
    storage = f"sqlite:///{(tmp_path / 'synthetic' / 'study.db').resolve()}"
    status = subprocess.run(
        [sys.executable, "-m", "hpo", "status", "--storage", storage, "--study-name", "synthetic"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert status.returncode == 0, status.stderr[-2000:]
    assert "build_model" in status.stdout

    # The public API reads the same study.
    study = hpo.load_study(storage=storage, study_name="synthetic")
    assert [t.number for t in study.best_trials(2)] == [
        t.number for t in sorted(trials, key=lambda t: (-t.value, t.number))
    ]
    member = study.load_model()
    np.testing.assert_allclose(
        np.asarray(member.predict(x_val, verbose=0)).reshape(-1),
        np.asarray(model.predict(x_val, verbose=0)).reshape(-1),
        atol=1e-6,
    )
    with pytest.raises(hpo.StoreError, match="no COMPLETE trial 99"):
        study.load_model(99)
    # KerasTuner's id of a trial, as the oracle gives it, is its number too.
    assert study.load_model(top.trial_id).count_params() == member.count_params()
    with pytest.raises(ConfigError, match=r"trial must be a trial's number, got 'best'"):
        study.load_model("best")
    with pytest.raises(ConfigError, match=r"no export format 'pickle'; the formats are \['keras'"):
        hpo.ensemble(study, formats=("pickle",))


# A user's script, run as `__main__` as a script or a notebook runs: its own layer (registered
# with Keras there; the trial processes never run this code) and model (not registered), one-hot
# labels of three classes, and two epochs (the last one ends every trial: none is pruned after
# it).
USERS_SCRIPT = """
import json, os, warnings
import keras
import numpy as np
from keras import layers
import hpo


@keras.saving.register_keras_serializable(package="users")
class Scale(layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


# Not registered, as in KerasTuner's examples: hpo registers it.
class Net(keras.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.scale = Scale(0.5)
        self.hidden = layers.Dense(units, activation="relu")
        self.out = layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(self.scale(x)))

    def get_config(self):
        return {"units": self.units}


def build_model(hp):
    # Another width when asked to: a hypermodel that builds another model for the same values.
    # Widths enough that the two trials differ (a repeat is pruned untrained: hpo.repeats).
    units = hp.Int("units", 8, 64, step=8) + int(os.environ.get("EXTRA_UNITS", "0"))
    model = Net(units)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    return model


def build_uncompiled(hp):
    # Left to hpo to compile, with the trial's optimizer and learning rate.
    return Net(hp.Int("units", 8, 16, step=8))


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, keras.utils.to_categorical(np.digitize(x[:, 0], [-0.4, 0.4]), 3)


# TensorFlow runs at the script's top level (a layer adapted to the data), so it has started
# in each trial's process before hpo sets its threads there.
normalizer = layers.Normalization()
normalizer.adapt(data(300, 0)[0])


if __name__ == "__main__":
    (x, y), (x_val, y_val) = data(300, 0), data(100, 1)
    tuner = hpo.Tuner(build_model, max_trials=2, directory="runs", project_name="users")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=2, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    [model] = tuner.get_best_models(1)
    loss, accuracy = model.evaluate(x_val, y_val, verbose=0)  # one-hot, as search took them
    stored = tuner.study().load_model()
    os.environ["EXTRA_UNITS"] = "1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [fallback] = tuner.get_best_models(1)
    tuner.ensemble(top=2).export("users.keras")
    plain = hpo.Tuner(build_uncompiled, max_trials=1, directory="runs", project_name="plain")
    plain.search(x, y, validation_data=(x_val, y_val), epochs=1, verbose=0)
    [uncompiled] = plain.get_best_models(1)
    print(json.dumps({
        "states": [t.state.name for t in trials],
        "best": max(t.value for t in trials),
        "class": type(model).__name__,
        "accuracy": accuracy,
        "shape": list(model.predict(x_val, verbose=0).shape),
        "difference": float(np.abs(
            model.predict(x_val, verbose=0) - stored.predict(x_val, verbose=0)).max()),
        "warnings": [str(w.message) for w in caught],
        "fallback": fallback.evaluate(x_val, y_val.argmax(axis=1), verbose=0),
        "uncompiled": {
            "best": plain.study().optuna_study.best_value,
            "class": type(uncompiled).__name__,
            "shape": list(uncompiled.predict(x_val, verbose=0).shape),
            "evaluate": uncompiled.evaluate(x_val, y_val.argmax(axis=1), verbose=0),
            "optimizer": [
                type(uncompiled.optimizer).__name__.lower(),
                float(uncompiled.optimizer.learning_rate),
            ],
            "trial": [plain.get_best_hyperparameters()[0].values[name]
                      for name in ("optimizer", "learning_rate")],
        },
    }))
"""


def _two_input_hypermodel(*, as_list: bool = False) -> Callable[[Any], Any]:
    def build_model(hp: Any) -> Any:
        import keras
        from keras import layers

        tokens = keras.Input(shape=(6,), dtype="int32", name="tokens")
        numbers = keras.Input(shape=(3,), name="numbers")
        words = layers.GlobalAveragePooling1D()(layers.Embedding(20, 8)(tokens))
        # Values enough that two trials draw different ones: a repeat would not train.
        hidden = layers.Dense(hp.Int("units", 8, 64), activation="relu")(numbers)
        joined = layers.Concatenate()([words, hidden])
        inputs = [tokens, numbers] if as_list else {"tokens": tokens, "numbers": numbers}
        model = keras.Model(inputs, layers.Dense(2)(joined))
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    return build_model


def _two_inputs(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 20, size=(n, 6)).astype("int32")
    numbers = rng.normal(size=(n, 3)).astype("float32")
    # Both inputs tell: the first number, and the share of the tokens above 10 (which the
    # averaged embedding can read).
    y = (numbers[:, 0] + 4 * ((tokens > 10).mean(axis=1) - 0.5) > 0).astype("int64")
    return {"tokens": tokens, "numbers": numbers}, y


@pytest.mark.slow
def test_a_model_of_several_inputs_searches_ensembles_and_exports_taking_them_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.ensemble.serving import Format, Reference, write_exports
    from hpo.errors import ConfigError

    x, y = _two_inputs(600, 0)
    x_val, y_val = _two_inputs(200, 1)
    x_test, y_test = _two_inputs(200, 2)
    tuner = hpo.Tuner(_two_input_hypermodel(), max_trials=2, directory=tmp_path, seed=0)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=2, batch_size=32, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2

    [model] = tuner.get_best_models(1)
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    assert accuracy == pytest.approx(max(t.value for t in trials), abs=1e-6)
    ensemble = tuner.ensemble(top=2)
    scores = ensemble.evaluate(x_test, y_test)
    assert scores["accuracy"] > 0.75, scores
    probabilities = ensemble.predict(x_test)
    assert probabilities.shape == (200,)
    # Into a folder, as `hpo ensemble` writes one (the README's example); a .keras file too.
    path = ensemble.export(tmp_path / "two-inputs")
    assert path == tmp_path / "two-inputs" / "ensemble.keras"
    loaded = hpo.load_model(tmp_path / "two-inputs").predict(x_test, verbose=0)
    np.testing.assert_allclose(loaded.ravel(), probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match=r"writes a \.keras file.*Use '.*model\.keras'"):
        ensemble.export(tmp_path / "model.h5")
    # Other inputs than the search's: named.
    with pytest.raises(DataError, match=r"inputs of a list of inputs .*the search's were a dict"):
        ensemble.predict([x_test["tokens"], x_test["numbers"]])
    # LiteRT takes one input: refused, before anything is written.
    packed_val = split_arrays(x, y, (x_val, y_val)).x_val
    reference = Reference(packed_val, None, y_val, ensemble.predict(x_val), 1e-5)
    with pytest.raises(ConfigError, match=r"--format litert: the models take a dict"):
        write_exports(
            ensemble.model(),
            tmp_path / "out",
            {Format.SAVEDMODEL, Format.ONNX, Format.LITERT},
            reference,
        )
    assert not (tmp_path / "out").exists()
    # A SavedModel and ONNX take them by name, served in a fresh process without hpo or Keras.
    (tmp_path / "out").mkdir()
    formats = {Format.SAVEDMODEL, Format.ONNX}
    served = write_exports(ensemble.model(), tmp_path / "out", formats, reference)
    for entry in (served["saved_model"], served["onnx"]):
        assert entry["input"] == "numbers, tokens"
        assert entry["max_abs_difference"] <= 1e-5
    # Members that no longer predict what they did in their trials (a class of the notebook's
    # changed since): the likeliest cause is named, not only the gap.
    gap = "the exported ensemble disagrees with the evaluated one by 2.51e-02 on example 80"

    def disagrees(*_: object) -> None:
        raise HpoError(gap)

    monkeypatch.setattr("hpo.ensemble.in_memory.check_export", disagrees)
    with pytest.raises(HpoError, match="class of yours whose code changed since they trained"):
        ensemble.export(tmp_path / "changed")


def test_an_export_refused_or_failed_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiteRT of several inputs was refused after ensemble.keras was written, and a format
    that failed left the formats before it in the folder."""
    from hpo.errors import ConfigError

    (x, y), (x_val, y_val) = _two_inputs(64, 0), _two_inputs(32, 1)
    tuner = hpo.Tuner(_two_input_hypermodel(), max_trials=1, directory=tmp_path, seed=0)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=1, verbose=0)
    ensemble = tuner.ensemble(top=1)
    with pytest.raises(ConfigError, match=r"--format litert: the models take a dict"):
        ensemble.export(tmp_path / "refused", formats=("keras", "litert"))
    assert not (tmp_path / "refused").exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")

    def fails(model: Any, folder: Path, reference: Any) -> None:
        folder.mkdir()
        raise HpoError(f"the SavedModel in {folder} did not load")

    monkeypatch.setattr("hpo.ensemble.serving.export_saved_model", fails)
    with pytest.raises(HpoError) as raised:
        ensemble.export(kept, formats=("keras", "savedmodel"))
    assert str(raised.value) == f"the SavedModel in {kept / 'saved_model'} did not load"
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    with pytest.raises(HpoError):
        ensemble.export(tmp_path / "new", formats=("keras", "savedmodel"))
    assert not (tmp_path / "new").exists()
    # The folder of an `hpo ensemble` output: its ensemble.keras was replaced, and its
    # report.json's checksum then refused it. Refused before anything is written.
    finished = tmp_path / "ensembles" / "imdb-top5"
    finished.mkdir(parents=True)
    (finished / "ensemble.keras").write_bytes(b"the finished ensemble")
    (finished / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"imdb-top5 holds an hpo command's output .*another"):
        ensemble.export(finished)
    assert (finished / "ensemble.keras").read_bytes() == b"the finished ensemble"


@pytest.mark.slow
def test_inputs_searched_as_a_list_are_also_taken_by_the_names_the_model_gives_them(
    tmp_path: Path,
) -> None:
    # The export's inputs were `input_0` and `input_1`, and a dict keyed by the model's own
    # input names, which Keras takes, was refused.
    def as_list(x: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [x["tokens"], x["numbers"]]

    (x, y), (x_val, y_val), (x_test, _) = (_two_inputs(n, seed) for n, seed in ((300, 0),) * 3)
    hypermodel = _two_input_hypermodel(as_list=True)
    tuner = hpo.Tuner(hypermodel, max_trials=2, directory=tmp_path, seed=0)
    tuner.search(as_list(x), y, validation_data=(as_list(x_val), y_val), epochs=1, verbose=0)
    # The model as the hypermodel builds it (logits), not the stored one with a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [best] = tuner.get_best_models(1)
    assert best.predict(as_list(x_test), verbose=0).shape == (300, 2)
    ensemble = tuner.ensemble(top=2)
    probabilities = ensemble.predict(as_list(x_test))
    by_name = {"numbers": x_test["numbers"], "tokens": x_test["tokens"]}
    np.testing.assert_allclose(ensemble.predict(by_name), probabilities, atol=1e-6)
    path = ensemble.export(tmp_path / "ensemble", formats=("keras", "savedmodel", "onnx"))
    exported = hpo.load_model(path)
    assert [t.name for t in exported.inputs] == ["tokens", "numbers"]
    # Checked as a server loads it (a fresh process, TensorFlow only), taking them by name.
    assert (path.parent / "saved_model" / "saved_model.pb").is_file()
    assert (path.parent / "ensemble.onnx").is_file()
    for given in (by_name, as_list(x_test)):
        predicted = exported.predict(given, verbose=0).ravel()
        np.testing.assert_allclose(predicted, probabilities, atol=1e-5)
    with pytest.raises(DataError, match=r"a dict of inputs .*the search's were a list"):
        ensemble.predict({"words": x_test["tokens"], "numbers": x_test["numbers"]})


@pytest.mark.slow
def test_a_scripts_own_classes_one_hot_labels_and_two_epochs_work_end_to_end(
    tmp_path: Path,
) -> None:
    printed = run_user_script(tmp_path, USERS_SCRIPT, timeout=600)
    report = json.loads(printed.strip().splitlines()[-1])
    # The classes the script registered reached the trial processes, and no trial was pruned
    # after its last epoch.
    assert report["states"] == ["COMPLETE", "COMPLETE"]
    # The best model is the script's own class, compiled as build_model compiles it, with the
    # trial's weights: it scores the trial's validation accuracy on the one-hot labels.
    assert report["class"] == "Net"
    assert report["accuracy"] == pytest.approx(report["best"], abs=1e-6)
    assert report["shape"] == [100, 3]
    assert report["difference"] < 1e-6
    # A hypermodel that builds another model for the same values gets the stored model, told why.
    [warning] = [w for w in report["warnings"] if "does not build its model again" in w]
    assert "weights of other shapes" in warning
    assert report["fallback"][1] == pytest.approx(report["best"], abs=1e-6)
    # A model build_model leaves uncompiled comes back as the user's model too, compiled as the
    # trial compiled it: its optimizer at the trial's learning rate, for class-index labels.
    uncompiled = report["uncompiled"]
    assert (uncompiled["class"], uncompiled["shape"]) == ("Net", [100, 3])
    assert uncompiled["evaluate"][1] == pytest.approx(uncompiled["best"], abs=1e-6)
    optimizer, rate = uncompiled["trial"]
    assert uncompiled["optimizer"] == [optimizer, pytest.approx(rate, rel=1e-6)]

    # Another session, as after a kernel restart: the same classes defined (Net still not
    # registered), then the exported ensemble loaded.
    definitions = USERS_SCRIPT[: USERS_SCRIPT.index('if __name__ == "__main__":')]
    loader = f"{definitions}\nprint(hpo.load_model('users.keras').predict(data(5, 2)[0]).shape)\n"
    assert run_user_script(tmp_path, loader, timeout=300).strip().endswith("(5, 3)")
    # Without them, the error says what to do.
    with pytest.raises(ConfigError, match=r"a class of your own.*define or import the class"):
        hpo.load_model(tmp_path / "users.keras")


def _auc_hypermodel(metrics: bool = True) -> Callable[[Any], Any]:
    def build_model(hp: Any) -> Any:
        import keras
        from keras import layers

        inputs = keras.Input(shape=(8,))
        x = layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu")(inputs)
        model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Choice("rate", [0.03, 0.003])),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc")] if metrics else [],
        )
        return model

    return build_model


@pytest.mark.slow
def test_an_objective_of_the_users_ranks_stops_and_keeps_trials_by_it(tmp_path: Path) -> None:
    """KerasTuner's guide, "Specify the tuning objective": a metric the model is compiled
    with (`val_auc`), or the validation loss, minimized, instead of validation accuracy."""
    import keras
    import keras_tuner

    x, y = _data(400, 0)
    x_val, y_val = _data(200, 1)
    x_test, y_test = _data(200, 2)
    auc = hpo.Tuner(
        _auc_hypermodel(),
        objective=keras_tuner.Objective("val_auc", direction="max"),
        max_trials=2,
        directory=tmp_path,
        project_name="auc",
    )
    summary = auc.search(x, y, validation_data=(x_val, y_val), epochs=3, batch_size=32, verbose=0)
    assert summary.objective == "val_auc"
    optuna_study = auc.study().optuna_study
    assert optuna_study.metric_names == ["val_auc"]
    trials = optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        # Each trial's value is the AUC Keras logged at its best epoch by AUC, whose model it keeps.
        logged = trial.user_attrs["metrics"]
        assert trial.value == logged["val_auc"]
    [model] = auc.get_best_models(1)
    best = auc.best_trials(1)[0]
    assert best.value == max(t.value for t in trials)
    # Compiled as build_model compiled it, as KerasTuner gives it: hpo's accuracy metric,
    # added for the trials, made this unpacking fail (three values).
    _, auc_value = model.evaluate(x_val, y_val, verbose=0)
    assert auc_value == pytest.approx(best.value, abs=1e-4)

    loss = hpo.Tuner(
        _hypermodel(), objective="val_loss", max_trials=3, directory=tmp_path, project_name="loss"
    )
    loss.search(x, y, validation_data=(x_val, y_val), epochs=3, batch_size=32, verbose=0)
    study = loss.study()
    assert study.optuna_study.direction.name == "MINIMIZE"
    ranked = study.best_trials(3)
    assert [t.value for t in ranked] == sorted(t.value for t in study.optuna_study.get_trials())
    for trial in ranked:
        history = trial.user_attrs["metrics"]
        assert trial.value == history["val_loss"]
    # The best trial is the lowest loss, in Optuna's API, hpo's and the printed summary alike.
    assert study.optuna_study.best_trial.number == ranked[0].number
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        loss.results_summary(1)
    assert 'Objective(name="val_loss", direction="min")' in printed.getvalue()
    assert f"Score: {ranked[0].value}" in printed.getvalue()
    [model] = loss.get_best_models(1)
    evaluated = model.evaluate(x_val, y_val, verbose=0)  # compiled without metrics: the loss
    assert evaluated == pytest.approx(ranked[0].value, rel=1e-3)
    # The ensemble's candidates are the lowest-loss trials; it is fitted as ever.
    scores = loss.ensemble(top=2).evaluate(x_test, y_test)
    assert set(scores["members"]) <= {t.number for t in ranked[:2]}
    assert scores["accuracy"] > 0.8
    status = hpo.load_study(loss.config).optuna_study
    assert status.metric_names == ["val_loss"]
    keras.backend.clear_session()


@pytest.mark.slow
def test_an_objective_the_model_does_not_log_is_refused_before_any_trial(tmp_path: Path) -> None:
    x, y = _data(200, 0)
    tuner = hpo.Tuner(_auc_hypermodel(metrics=False), objective="val_auc", directory=tmp_path)
    with pytest.raises(ConfigError, match=r"'val_auc' is not among what the model logs.*val_loss"):
        tuner.search(x, y, validation_split=0.25, epochs=2, verbose=0)
    # Nothing trained: the default trial enqueued for the first run still waits.
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING]


def _regression_data(n: int, seed: int, targets: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = np.tanh(x[:, :targets] + 0.5 * x[:, 1:2]) + 0.05 * rng.normal(size=(n, targets))
    return x, y.astype("float32")


@pytest.mark.slow
def test_regression_searches_ranks_ensembles_and_exports_as_kerastuners_guide_writes_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KerasTuner's getting-started guide, "Specify the tuning objective": `build_regressor`
    compiled for the mean squared error with a MeanAbsoluteError metric, searched on
    `objective="val_mean_absolute_error"`, targets `[n, 1]` of floats."""
    import keras
    from keras import layers

    def build_regressor(hp: Any) -> Any:
        model = keras.Sequential(
            [
                layers.Dense(units=hp.Int("units", 32, 128, 32), activation="relu"),
                layers.Dense(units=1),
            ]
        )
        model.compile(
            optimizer="adam",
            loss="mean_squared_error",
            metrics=[keras.metrics.MeanAbsoluteError()],
        )
        return model

    x, y = _regression_data(400, 0)
    x_val, y_val = _regression_data(100, 1)
    x_test, y_test = _regression_data(200, 2)
    tuner = hpo.Tuner(
        hypermodel=build_regressor,
        objective="val_mean_absolute_error",
        max_trials=3,
        overwrite=True,
        directory=tmp_path,
        project_name="built_in_metrics",
    )
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=6, verbose=0)
    study = tuner.study().optuna_study
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert study.direction.name == "MINIMIZE"
    ranked = tuner.best_trials(3)
    assert [t.value for t in ranked] == sorted(t.value for t in trials)
    for trial in trials:
        assert trial.value == trial.user_attrs["metrics"]["val_mean_absolute_error"]
        assert "val_accuracy" not in trial.user_attrs  # no accuracy to measure
        assert trial.user_attrs["labels"] == "targets"
    [model] = tuner.get_best_models(1)
    scores = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
    assert scores["mean_absolute_error"] == pytest.approx(ranked[0].value, rel=1e-4)

    ensemble = tuner.ensemble(top=3)
    evaluated = ensemble.evaluate(x_test, y_test)
    predicted = ensemble.predict(x_test)
    # In the targets' shape, [n, 1] as given (as Keras's predict gives it): [n] against the
    # user's y_test would broadcast to [n, n] in their own error.
    assert predicted.shape == y_test.shape == (len(x_test), 1)
    assert evaluated["mean_squared_error"] == pytest.approx(np.mean((predicted - y_test) ** 2))
    assert evaluated["mean_squared_error"] < 0.5 * np.var(y_test)  # it learned the rule
    # Weights fitted on validation: there, it does no worse than its best member.
    on_validation = ensemble.evaluate(x_val, y_val)
    members = on_validation["members"].values()
    assert on_validation["mean_squared_error"] <= min(members) + 1e-6
    assert list(evaluated["members"]) == ensemble.members
    path = ensemble.export(tmp_path / "regression.keras")
    exported = hpo.load_model(path).predict(x_test, verbose=0)
    np.testing.assert_allclose(exported, predicted, atol=1e-5)
    # A member whose model no longer predicts what its trial stored (a class changed since) is
    # left out of a regression ensemble too, its reason logged.
    from hpo.ensemble import regression

    loading = regression.load_member

    def changed(candidate: Any, store: Any, folder: Any) -> Any:
        member = loading(candidate, store, folder)
        if candidate.trial.number == ranked[0].number:
            bias = member.model.weights[-1]
            bias.assign(bias.numpy() + 1.0)
        return member

    monkeypatch.setattr(regression, "load_member", changed)
    with caplog.at_level("WARNING"):
        kept = tuner.ensemble(top=3).evaluate(x_val, y_val)["members"]
    monkeypatch.undo()
    assert ranked[0].number not in kept
    assert f"skipping trial {ranked[0].number}" in caplog.text
    assert "no longer predicts what its trial recorded" in caplog.text

    # hpo ensemble evaluates classifiers on a study's test set: it names the way that works.
    from hpo.ensemble.build import build_ensemble

    with pytest.raises(ConfigError, match=r"models of targets.*tuner\.ensemble\(top=5\)"):
        build_ensemble(tuner.config, study)

    # After hpo gc keeps the best trial's checkpoint alone, KerasTuner's ways of reading the
    # results still rank all three by their scores (the oracle put the two without a checkpoint
    # after the best in trial-number order, and results_summary showed 1 best trial of 3); the
    # models gc removed are named, not silently replaced.
    from hpo.artifacts import collect_garbage
    from hpo.store import open_artifact_store

    store = open_artifact_store(tuner.config.artifact_location)
    assert sorted(collect_garbage(study, store, keep=1).removed) == sorted(
        t.number for t in ranked[1:]
    )
    best_ids = [f"{t.number:02d}" for t in ranked]
    assert [t.trial_id for t in tuner.oracle.get_best_trials(3)] == best_ids
    assert [t.number for t in tuner.best_trials(3)] == [t.number for t in ranked]
    assert [hp.values for hp in tuner.get_best_hyperparameters(3)] == [
        tuner.oracle.get_trial(i).hyperparameters.values for i in best_ids
    ]
    tuner.results_summary(3)
    summary = capsys.readouterr().out
    assert "Showing 3 best trials" in summary
    assert [line.split()[1] for line in summary.splitlines() if line.startswith("Trial ")] == (
        best_ids
    )
    gone = rf"trial\(s\) {best_ids[1]} rank among the best 2.*hpo gc.*trial\(s\) {best_ids[0]}\."
    with pytest.warns(UserWarning, match=gone):
        assert len(tuner.get_best_models(2)) == 1
    # Left out, a regression study's objective is the validation loss; accuracy is refused.
    default = hpo.Tuner(build_regressor, max_trials=1, directory=tmp_path, project_name="default")
    default.search(x, y, validation_data=(x_val, y_val), epochs=2, verbose=0)
    assert default.study().optuna_study.metric_names == ["val_loss"]
    accuracy = hpo.Tuner(build_regressor, objective="val_accuracy", directory=tmp_path)
    with pytest.raises(ConfigError, match=r"regression targets.*no accuracy.*'val_loss'"):
        accuracy.search(x, y, validation_data=(x_val, y_val), epochs=2, verbose=0)
    with pytest.raises(ConfigError, match=r"class_weight weighs classes.*sample_weight="):
        default.search(x, y, validation_data=(x_val, y_val), class_weight={0: 1.0}, verbose=0)


@pytest.mark.slow
def test_several_targets_train_an_uncompiled_model_on_the_squared_error(tmp_path: Path) -> None:
    def build_model(hp: Any) -> Any:
        import keras

        inputs = keras.Input((8,))
        x = keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Dense(3)(x))

    x, y = _regression_data(300, 0, targets=3)
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path)
    tuner.search(x, y, validation_split=0.25, epochs=4, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # hpo compiled it: the mean squared error, the mean absolute error beside it.
    assert {"val_loss", "val_mean_absolute_error"} <= set(trials[0].user_attrs["metrics"])
    assert trials[0].user_attrs["output"] == "regression3"
    x_test, _ = _regression_data(50, 1, targets=3)
    assert tuner.ensemble(top=2).predict(x_test).shape == (50, 3)

    def one_output(hp: Any) -> Any:
        import keras

        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])

    wrong = hpo.Tuner(one_output, directory=tmp_path, project_name="wrong")
    with pytest.raises(ConfigError, match=r"3 value\(s\) an example.*Dense\(3\)"):
        wrong.search(x, y, validation_split=0.25, epochs=1, verbose=0)


def _search_printing(
    build_model: Callable[[Any], Any],
    x: np.ndarray,
    y: np.ndarray,
    folder: Path,
    max_trials: int,
    **kwargs: Any,
) -> tuple[hpo.Tuner, str]:
    """A Tuner's search of 8 epochs on the first 300 rows, validated on the rest (a later call
    resumes the study), and what it printed."""
    tuner = hpo.Tuner(build_model, max_trials=max_trials, directory=folder, seed=0, **kwargs)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tuner.search(x[:300], y[:300], validation_data=(x[300:], y[300:]), epochs=8, batch_size=16)
    return tuner, out.getvalue()


@pytest.mark.slow
def test_whole_number_targets_of_a_one_output_model_are_regression_values(tmp_path: Path) -> None:
    """Ages in whole years, as int64, for a model of one output compiled for the squared
    error: KerasTuner fits them as they are, so hpo reads them as targets (not 60 classes),
    and a later search of the same study reads them so from the start."""

    def build_model(hp: Any) -> Any:
        import keras

        model = keras.Sequential(
            [
                keras.layers.Dense(hp.Int("units", 8, 64, step=8), activation="relu"),
                keras.layers.Dense(1),
            ]
        )
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    ages = np.round(40 + 10 * x[:, 0] + 3 * x[:, 1]).astype("int64")
    assert ages.min() >= 0 and len(np.unique(ages)) > 2

    def search(max_trials: int) -> tuple[hpo.Tuner, str]:
        return _search_printing(build_model, x, ages, tmp_path, max_trials, objective="val_mae")

    tuner, printed = search(1)
    assert "read as regression targets" in printed
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert trial.user_attrs["labels"] == "targets"
    assert trial.value == trial.user_attrs["metrics"]["val_mae"]
    assert trial.value < np.mean(np.abs(ages[300:] - ages[:300].mean()))  # better than the mean
    # The first read (classes) left no copy of the data behind.
    assert len(list(tuner.config.cache_dir.glob("arrays-*"))) == 1

    tuner, printed = search(2)
    assert "read as regression targets" not in printed
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert tuner.ensemble(top=2).predict(x[:5]).shape == (5,)


def test_labels_0_and_1_fitted_by_a_linear_output_and_mse_are_targets(tmp_path: Path) -> None:
    """A linear probability model: Dense(1), "mse", labels 0.0 and 1.0. Its values were taken
    as logits: the ensemble gave their sigmoid (0.53 where Keras gave 0.12) and scored them at
    0, so the trials' accuracy was 0.48 where the model's at 0.5 is 0.67."""

    def build_model(hp: Any) -> Any:
        import keras

        hidden = keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu")
        model = keras.Sequential([keras.Input((6,)), hidden, keras.layers.Dense(1)])
        model.compile(keras.optimizers.Adam(1e-2), loss="mse", metrics=["mae"])
        return model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype("float32")
    tuner = hpo.Tuner(build_model, objective="val_loss", max_trials=1, directory=tmp_path)
    tuner.search(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=3, verbose=0)
    [model] = tuner.get_best_models(1)
    ensemble = tuner.ensemble(top=1, calibrate=False)
    np.testing.assert_allclose(
        ensemble.predict(x[200:]), model.predict(x[200:], verbose=0).reshape(-1), atol=1e-5
    )
    scores = ensemble.evaluate(x[200:], y[200:])
    assert scores["accuracy"] == np.mean((model.predict(x[200:], verbose=0)[:, 0] > 0.5) == y[200:])


@pytest.mark.slow
def test_a_softmax_with_room_for_classes_the_labels_lack_trains_as_keras_would(
    tmp_path: Path,
) -> None:
    """A softmax of 6 units and labels 0 to 3 (a subset of the data, say): Keras and
    KerasTuner train it as it is, so hpo's study has 6 classes, the two without examples
    included, and a later search of the study reads them so from the start."""

    def build_model(hp: Any) -> Any:
        import keras

        model = keras.Sequential(
            [
                keras.layers.Dense(hp.Int("units", 8, 64, step=8), activation="relu"),
                keras.layers.Dense(6, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype("float32")
    y = np.digitize(x[:, 0], [-0.7, 0.0, 0.7]).astype("int64")
    assert set(np.unique(y)) == {0, 1, 2, 3}

    def search(max_trials: int) -> tuple[hpo.Tuner, str]:
        return _search_printing(build_model, x, y, tmp_path, max_trials)

    tuner, printed = search(1)
    assert "the study has 6 classes, 4 to 5 without examples" in printed
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert len(list(tuner.config.cache_dir.glob("arrays-*"))) == 1

    tuner, printed = search(2)
    assert "without examples" not in printed
    assert [t.state for t in tuner.study().optuna_study.get_trials()] == [TrialState.COMPLETE] * 2
    ensemble = tuner.ensemble(top=2)
    assert ensemble.predict(x[:5]).shape == (5, 6)
    assert ensemble.evaluate(x[300:], y[300:])["accuracy"] > 0.6


def test_an_output_wider_than_the_labels_is_a_classifier_only_if_it_scores_classes() -> None:
    """Softmax rows (or logits for a loss compiled `from_logits=True`) of more units than the
    labels' classes are read as a classifier of that many classes where the classes come from
    the labels only; features left without a head, or a folder's fixed classes, are refused."""
    import keras

    from hpo.errors import WiderOutput
    from hpo.training.interface import read_output

    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")

    def model(activation: str | None, from_logits: bool | None = None) -> keras.Model:
        made = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation=activation)])
        if from_logits is not None:
            made.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
        return made

    for wide in (model("softmax"), model(None, from_logits=True)):
        with pytest.raises(WiderOutput) as raised:
            read_output(wide, x, 6, "m", open_classes=True)
        assert raised.value.units == 10
        with pytest.raises(ConfigError, match=r"this task has 6 classes"):
            read_output(wide, x, 6, "m")
    for features in (model("relu"), model(None)):
        with pytest.raises(ConfigError, match=r"this task has 6 classes") as raised:
            read_output(features, x, 6, "m", open_classes=True)
        assert not isinstance(raised.value, WiderOutput)
    assert read_output(model("softmax"), x, 10, "m", open_classes=True).units == 10


def test_numbers_that_can_be_no_classes_are_targets_and_one_per_example_may_be_either() -> None:
    x, _ = _data(40, 0)
    # Floats below 0, and rows of several counts: no class indices.
    split = split_arrays(x, np.arange(40.0) - 20, validation_split=0.25)
    assert split.y_train.dtype == np.float32 and not split.numbered
    counts = np.stack([np.arange(40), np.arange(40) % 7], axis=1)
    assert split_arrays(x, counts, validation_split=0.25).y_train.shape == (30, 2)
    # Whole numbers from 0, one an example: classes, which a one-output model reads again as
    # targets, in the shape given.
    years = np.arange(40)[:, None] % 9
    split = split_arrays(x, years, validation_split=0.25)
    assert (split.y_train.dtype, split.numbered) == (np.int32, True)
    split = split_arrays(x, years, validation_split=0.25, targets=True)
    assert (split.y_train.dtype, split.y_train.shape, split.y_val.shape) == (
        np.float32,
        (30, 1),
        (10, 1),
    )
    # Booleans and one-hot rows are classes only.
    assert not split_arrays(x, np.arange(40) % 2 == 0, validation_split=0.25).numbered
    assert not split_arrays(x, np.eye(3)[np.arange(40) % 3], validation_split=0.25).numbered
    # Named as fit names them, y (not x, the inputs), or the validation data they come from.
    with pytest.raises(DataError, match=r"^y: labels must be class indices 0, 1, 2.*-1.*float32"):
        split_arrays(x, np.arange(40) % 3 - 1, validation_split=0.25)
    names = np.array(["cat", "dog"])[np.arange(40) % 2]
    with pytest.raises(DataError, match=r"^y: labels must be class indices.*np\.unique"):
        split_arrays(x, names, validation_split=0.25)
    with pytest.raises(DataError, match=r"^validation_data: labels must be class indices"):
        split_arrays(x, np.arange(40) % 2, (x, names))
    # An SVM's labels, -1 and 1: the one value that is no class is named, with the fix.
    with pytest.raises(DataError, match=r"got 1 other value\(s\) such as \[-1\].*\(y > 0\)"):
        split_arrays(x, np.where(np.arange(40) % 2 == 0, -1, 1), validation_split=0.25)


@pytest.mark.slow
def test_kerastuners_tune_data_preprocessing_example_trains_on_what_its_fit_makes(
    tmp_path: Path,
) -> None:
    """KerasTuner's getting-started guide, "Tune data preprocessing", as it writes it: random
    soft labels for a softmax, `fit` normalizing x when `hp.Boolean("normalize")` says so,
    ranked by `val_accuracy` (Keras's categorical accuracy, logged). Then a fit that blinds
    the model (zeros for inputs) shows that a trial trains on what its fit makes."""
    import keras
    import keras_tuner
    from keras import layers

    class MyHyperModel(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential()
            model.add(layers.Flatten())
            model.add(
                layers.Dense(
                    units=hp.Int("units", min_value=32, max_value=512, step=32),
                    activation="relu",
                )
            )
            model.add(layers.Dense(10, activation="softmax"))
            model.compile(
                optimizer="adam",
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, **kwargs: Any) -> Any:
            if hp.Boolean("normalize"):
                x = layers.Normalization()(x)
            return model.fit(
                x,
                y,
                # Tune whether to shuffle the data in each epoch.
                shuffle=hp.Boolean("shuffle"),
                **kwargs,
            )

    x, y = np.random.rand(100, 28, 28, 1), np.random.rand(100, 10)
    tuner = hpo.Tuner(
        MyHyperModel(),
        objective="val_accuracy",
        max_trials=3,
        overwrite=True,
        directory=tmp_path,
        project_name="tune_hypermodel",
    )
    tuner.search(x, y, epochs=2, validation_data=(x, y), verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        assert {"normalize", "shuffle"} <= set(trial.params)
        assert trial.value == trial.user_attrs["metrics"]["val_accuracy"]

    def separable(hp: Any) -> Any:
        model = keras.Sequential([layers.Dense(1, activation="sigmoid")])
        model.compile(
            optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"]
        )
        return model

    class Blinding(keras_tuner.HyperModel):
        build = staticmethod(separable)

        def fit(self, hp: Any, model: Any, x: Any, y: Any, **kwargs: Any) -> Any:
            return model.fit(x * 0 if hp.Boolean("blind") else x, y, **kwargs)

    x, y = _data(400, 0)
    accuracy = {}
    for blind in (False, True):
        fixed = keras_tuner.HyperParameters()
        fixed.Fixed("blind", blind)
        tuner = hpo.Tuner(
            Blinding(),
            max_trials=1,
            directory=tmp_path,
            project_name=f"blind{blind}",
            hyperparameters=fixed,
        )
        tuner.search(
            x[:300], y[:300], validation_data=(x[300:], y[300:]), epochs=4, batch_size=16, verbose=0
        )
        [trial] = tuner.study().optuna_study.get_trials()
        accuracy[blind] = trial.user_attrs["metrics"]["accuracy"]  # on the training batches
    assert accuracy[False] > 0.85 and accuracy[True] < 0.7, accuracy


@pytest.mark.slow
@pytest.mark.parametrize("objective_given", [True, False])
def test_kerastuners_custom_training_loop_trains_in_the_fit_and_ranks_by_what_it_reports(
    objective_given: bool, tmp_path: Path
) -> None:
    """KerasTuner's guide "Tune hyperparameters in your custom training loop", as it writes it
    (on synthetic 28x28 images for MNIST): `fit` never calls `model.fit`, trains with its own
    optimizer and batches, and reports `my_metric` to the callbacks it is given. Given no
    objective, KerasTuner minimizes what the loop returns (the search stopped, asking for
    `val_accuracy` among what it logs)."""
    import keras
    import keras_tuner
    import optuna
    import tensorflow as tf

    class MyHyperModel(keras_tuner.HyperModel):
        def build(self, hp):
            """Builds a convolutional model."""
            inputs = keras.Input(shape=(28, 28, 1))
            x = keras.layers.Flatten()(inputs)
            x = keras.layers.Dense(units=hp.Choice("units", [32, 64, 128]), activation="relu")(x)
            outputs = keras.layers.Dense(10)(x)
            return keras.Model(inputs=inputs, outputs=outputs)

        def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
            # Convert the datasets to tf.data.Dataset.
            batch_size = hp.Int("batch_size", 32, 128, step=32, default=64)
            train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            validation_data = tf.data.Dataset.from_tensor_slices(validation_data).batch(batch_size)

            # Define the optimizer.
            optimizer = keras.optimizers.Adam(
                hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
            )
            loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

            # The metric to track validation loss.
            epoch_loss_metric = keras.metrics.Mean()

            # Function to run the train step.
            @tf.function
            def run_train_step(images, labels):
                with tf.GradientTape() as tape:
                    logits = model(images)
                    loss = loss_fn(labels, logits)
                    # Add any regularization losses.
                    if model.losses:
                        loss += tf.math.add_n(model.losses)
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # noqa: B905

            # Function to run the validation step.
            @tf.function
            def run_val_step(images, labels):
                logits = model(images)
                loss = loss_fn(labels, logits)
                # Update the metric.
                epoch_loss_metric.update_state(loss)

            # Assign the model to the callbacks.
            for callback in callbacks:
                callback.set_model(model)

            # Record the best validation loss value
            best_epoch_loss = float("inf")

            # The custom training loop.
            for epoch in range(2):
                print(f"Epoch: {epoch}")

                # Iterate the training data to run the training step.
                for images, labels in train_ds:
                    run_train_step(images, labels)

                # Iterate the validation data to run the validation step.
                for images, labels in validation_data:
                    run_val_step(images, labels)

                # Calling the callbacks after epoch.
                epoch_loss = float(epoch_loss_metric.result().numpy())
                for callback in callbacks:
                    # The "my_metric" is the objective passed to the tuner.
                    callback.on_epoch_end(epoch, logs={"my_metric": epoch_loss})
                epoch_loss_metric.reset_state()

                print(f"Epoch loss: {epoch_loss}")
                best_epoch_loss = min(best_epoch_loss, epoch_loss)

            # Return the evaluation metric value.
            return best_epoch_loss

    objective = {"objective": keras_tuner.Objective("my_metric", "min")} if objective_given else {}
    tuner = hpo.Tuner(
        **objective,
        max_trials=2,
        hypermodel=MyHyperModel(),
        directory=tmp_path,
        project_name="custom_training",
        overwrite=True,
    )
    rng = np.random.default_rng(0)
    images = rng.random((700, 28, 28, 1), dtype=np.float32)
    labels = (images[:, :14].mean(axis=(1, 2, 3)) > 0.5).astype("int64") * 9
    tuner.search(
        x=images[:500], y=labels[:500], validation_data=(images[500:], labels[500:]), verbose=0
    )
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        # The fit's own parameters, none of hpo's training settings (the loop has its own).
        assert set(trial.params) == {
            "family",
            "units",
            "MyHyperModel/batch_size",
            "MyHyperModel/learning_rate",
        }
        assert trial.user_attrs["epochs"] == 2
        reported = trial.user_attrs["history"]["my_metric"]
        if objective_given:
            assert trial.value == trial.user_attrs["metrics"]["my_metric"]
        else:  # what the loop returns: the lower of the two epochs' losses
            assert trial.value == pytest.approx(min(reported), rel=1e-5)
    best = tuner.best_trials(1)[0]
    assert tuner.study().optuna_study.direction is optuna.study.StudyDirection.MINIMIZE
    assert best.value == min(t.value for t in trials)
    # The best epoch's weights are stored, its validation loss the reported one; given no
    # objective, the final model's (the loop's return is all KerasTuner ranks by).
    [model] = tuner.get_best_models(1)
    logits = model.predict(images[500:], verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    size = best.params["MyHyperModel/batch_size"]  # the loop's mean of its batches' losses
    batches = [
        float(loss(labels[500:][i : i + size], logits[i : i + size])) for i in range(0, 200, size)
    ]
    stored = best.value if objective_given else best.user_attrs["history"]["my_metric"][-1]
    assert np.mean(batches) == pytest.approx(stored, rel=1e-4)


def _own_loop(returns: str) -> Any:
    """A hypermodel whose fit trains in a loop of its own (as KerasTuner's custom training loop
    guide writes one), reports `val_loss` and `my_metric` each epoch, and returns `returns`:
    "number" (its last loss), "none" or "dict" (`{"my_metric": loss}`)."""
    import keras
    import keras_tuner
    import tensorflow as tf

    class Loop(keras_tuner.HyperModel):
        def build(self, hp):
            inputs = keras.Input((8,))
            units = hp.Int("units", 2, 8)
            return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(units)(inputs)))

        def fit(self, hp, model, x, y, validation_data, callbacks=None, **kwargs):
            optimizer = keras.optimizers.SGD(0.01)
            loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
            x_val, y_val = validation_data
            for epoch in range(2):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x))
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # noqa: B905
                val_loss = float(loss_fn(y_val, model(x_val)))
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs={"val_loss": val_loss, "my_metric": val_loss})
            return {"number": val_loss, "none": None, "dict": {"my_metric": val_loss}}[returns]

    return Loop()


@pytest.mark.parametrize(
    ("returns", "named"), [("none", "None"), ("dict", "a dict (its keys: ['my_metric'])")]
)
def test_a_training_loop_given_no_objective_that_returns_no_number_is_refused_as_in_kerastuner(
    returns: str, named: str, tmp_path: Path
) -> None:
    # KerasTuner refuses both ("The return value of HyperModel.fit() is None", "a single float
    # when `objective` is left unspecified"); hpo named an objective given by no one.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 8)).astype("float32"), rng.integers(0, 2, 120)
    tuner = hpo.Tuner(_own_loop(returns), max_trials=1, directory=tmp_path, project_name="p")
    # What the loop reported (a validation value first) or returned names the objective.
    suggested = (
        "Objective('my_metric', 'min'))"
        if returns == "dict"
        else "Objective('val_loss', 'min')), or another of ['my_metric', 'val_loss']"
    )
    with pytest.raises(ConfigError) as raised:
        tuner.search(x[:80], y[:80], validation_data=(x[80:], y[80:]), verbose=0)
    message = str(raised.value)
    assert (
        "hpo.Tuner was given no objective, so it minimizes the number the hypermodel's fit"
        in message
    )
    assert f"the fit returned {named}. Return that number, or name the objective" in message
    assert f"name the objective: hpo.Tuner(objective=keras_tuner.{suggested}." in message


def _mae_score(as_dict: bool = False) -> Callable[[Any, Any], Any]:
    """The validation MAE a custom-objective fit returns: a number, or `{"mae": number}`."""

    def mae(y_pred: Any, y_val: Any) -> Any:
        value = np.mean(np.abs(y_pred - y_val))
        return {"mae": float(value)} if as_dict else value

    return mae


def _hyper_regressor(returns: Callable[[Any, Any], Any]) -> Any:
    """KerasTuner's guide, "Custom objective in HyperModel.fit": a fit that trains, then
    returns what `returns(y_pred, y_val)` makes of the trained model's validation predictions."""
    import keras
    import keras_tuner
    from keras import layers

    class HyperRegressor(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential(
                [
                    layers.Dense(units=hp.Int("units", 32, 128, 32), activation="relu"),
                    layers.Dense(units=1),
                ]
            )
            model.compile(optimizer="adam", loss="mean_squared_error")
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            model.fit(x, y, **kwargs)
            x_val, y_val = validation_data
            y_pred = model.predict(x_val)
            return returns(y_pred, y_val)

    return HyperRegressor()


@pytest.mark.slow
def test_given_no_objective_a_fit_that_returns_a_float_ranks_its_trials_by_it_minimized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guide's first example: no objective, and the fit returns the validation MAE, which
    KerasTuner minimizes (its "default_objective"). The trial's value is that of its stored
    model, which a project opened again goes on searching by."""
    import optuna

    mae = _mae_score()

    x, y = _regression_data(200, 0)
    x_val, y_val = _regression_data(50, 1)
    tuner = hpo.Tuner(_hyper_regressor(mae), max_trials=1, directory=tmp_path)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=2)
    assert "the search minimizes what the fit returns, as KerasTuner does" in (
        capsys.readouterr().out
    )
    study = tuner.study().optuna_study
    assert study.direction is optuna.study.StudyDirection.MINIMIZE
    [trial] = study.get_trials()
    assert trial.state is TrialState.COMPLETE and trial.user_attrs["epochs"] == 2
    history = trial.user_attrs["history"]
    assert history["default_objective"] == [None, trial.value] and len(history["loss"]) == 2
    [best] = tuner.get_best_models(1)
    predicted = np.asarray(best.predict(x_val, verbose=0)).reshape(-1, 1)
    assert mae(predicted, y_val) == pytest.approx(trial.value, rel=1e-4)
    again = hpo.Tuner(_hyper_regressor(mae), max_trials=2, directory=tmp_path)
    again.search(x, y, validation_data=(x_val, y_val), epochs=2, verbose=0)
    third = again.study().optuna_study.get_trials()[-1]
    assert third.state is TrialState.COMPLETE and "default_objective" in third.user_attrs["metrics"]


@pytest.mark.slow
def test_a_fit_that_returns_a_dict_ranks_by_the_key_the_objective_names_and_records_the_rest(
    tmp_path: Path,
) -> None:
    """The guide's second example: a dict of two scores, ranked by one of them (maximized)."""
    import keras_tuner

    def scores(y_pred: Any, y_val: Any) -> dict[str, Any]:
        return {
            "metric_a": -np.mean(np.abs(y_pred - y_val)),
            "metric_b": np.mean(np.square(y_pred - y_val)),
        }

    x, y = _regression_data(200, 0)
    x_val, y_val = _regression_data(50, 1)
    tuner = hpo.Tuner(
        _hyper_regressor(scores),
        objective=keras_tuner.Objective("metric_a", "max"),
        max_trials=1,
        directory=tmp_path,
    )
    tuner.search(x, y, validation_data=(x_val, y_val), verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    [best] = tuner.get_best_models(1)
    expected = scores(np.asarray(best.predict(x_val, verbose=0)).reshape(-1, 1), y_val)
    assert trial.value == pytest.approx(expected["metric_a"], rel=1e-4)
    assert trial.user_attrs["metrics"]["metric_b"] == pytest.approx(expected["metric_b"], rel=1e-4)


def test_a_fit_that_returns_a_dict_without_the_objective_is_told_which_keys_it_holds(
    tmp_path: Path,
) -> None:
    import keras_tuner

    x, y = _regression_data(120, 0)
    tuner = hpo.Tuner(
        _hyper_regressor(_mae_score(as_dict=True)),
        objective=keras_tuner.Objective("metric_a", "min"),
        max_trials=1,
        directory=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"a dict without 'metric_a' \(its keys: \['mae'\]\)"):
        tuner.search(x, y, validation_data=_regression_data(40, 1), verbose=0)


@pytest.mark.slow
def test_a_fit_that_returns_a_float_of_a_logged_objective_ranks_by_the_log_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The objective Keras logs (val_loss, given) ranks by its best epoch, as logged: the
    float the fit returns is not used, and the check before the first trial says so."""
    x, y = _regression_data(200, 0)
    x_val, y_val = _regression_data(50, 1)
    tuner = hpo.Tuner(
        _hyper_regressor(_mae_score()),
        objective="val_loss",
        max_trials=1,
        directory=tmp_path,
    )
    with caplog.at_level("WARNING", logger="hpo"):
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=2, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert trial.value == trial.user_attrs["metrics"]["val_loss"]
    assert "KerasTuner would take as the value of the objective 'val_loss'" in caplog.text


def test_a_fit_that_scores_the_model_after_model_fit_trains_as_it_is_written(
    tmp_path: Path,
) -> None:
    # The stand-in model hpo reads a fit's arguments with gave 0.0 from evaluate and zeros of
    # one column from predict: the unpacking below stopped the search with a ConfigError.
    # Given no objective, what it returns is minimized, as KerasTuner does.
    import keras
    import keras_tuner
    from keras import layers

    class Scored(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential(
                [layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"), layers.Dense(2)]
            )
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            model.fit(x, y, validation_data=validation_data, **kwargs)
            loss, *_ = model.evaluate(*validation_data, verbose=0)
            scores = model.predict(validation_data[0], verbose=0)[:, 1]
            return float(loss + 0 * scores.sum())

    x, y = _data(120, 0)
    x_val, y_val = _data(40, 1)
    tuner = hpo.Tuner(Scored(), max_trials=1, directory=tmp_path, pruner="none")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=1, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE and trial.user_attrs["epochs"] == 1
    assert trial.user_attrs["metrics"]["val_loss"] == pytest.approx(trial.value, rel=1e-4)


def test_a_fit_that_returns_a_value_read_from_its_history_ranks_by_that_value(
    tmp_path: Path,
) -> None:
    import keras
    import keras_tuner

    class Lowest(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            units = hp.Int("units", 4, 8, step=4)
            model = keras.Sequential([keras.layers.Dense(units), keras.layers.Dense(1)])
            model.compile("adam", "mse")
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            history = model.fit(x, y, validation_data=validation_data, **kwargs)
            return min(history.history["val_loss"])

    x, y = _regression_data(120, 0)
    tuner = hpo.Tuner(Lowest(), max_trials=1, directory=tmp_path)
    tuner.search(x, y, validation_data=_regression_data(40, 1), epochs=2, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert trial.value == pytest.approx(min(trial.user_attrs["history"]["val_loss"]), rel=1e-5)


def test_a_fit_that_returns_a_score_trains_the_studys_epochs_and_its_own_callbacks_once(
    tmp_path: Path,
) -> None:
    """Run as it is written, with hpo's callbacks among its keyword arguments: given no epochs
    by the search, it trains the study's max_epochs; a callback it makes itself runs once."""
    import keras
    import keras_tuner

    log = tmp_path / "epochs.txt"

    class Counted(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential([keras.layers.Dense(hp.Int("units", 4, 8, step=4))])
            model.add(keras.layers.Dense(1))
            model.compile("adam", "mse")
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            class Count(keras.callbacks.Callback):
                def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                    with log.open("a") as file:
                        file.write(f"{epoch}\n")

            kwargs["callbacks"] = [*kwargs.get("callbacks", []), Count()]
            model.fit(x, y, verbose=0, **kwargs)
            x_val, y_val = validation_data
            return float(np.mean(np.abs(model.predict(x_val, verbose=0) - y_val)))

    x, y = _regression_data(120, 0)
    tuner = hpo.Tuner(Counted(), max_trials=1, max_epochs=3, directory=tmp_path / "projects")
    tuner.search(x, y, validation_data=_regression_data(40, 1), verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE and trial.user_attrs["epochs"] == 3
    # The checks before the first trial ran the fit on a few rows (an epoch each), to tell
    # that it returns a score; the trial ran each of its epochs' ends once.
    *checks, first, second, third = log.read_text().split()
    assert [first, second, third] == ["0", "1", "2"] and set(checks) == {"0"}


def test_a_fit_that_fine_tunes_and_returns_its_history_ranks_by_the_default_objective(
    tmp_path: Path,
) -> None:
    """It uses the model after model.fit (compiles it again, fits again) and returns the
    History, as Keras's fit: no score of its own, so the validation accuracy ranks it."""
    import keras
    import keras_tuner

    class FineTuned(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential([keras.layers.Dense(hp.Int("units", 4, 8, step=4))])
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            model.fit(x, y, validation_data=validation_data, **kwargs)
            model.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy", metrics=["accuracy"])
            return model.fit(x, y, validation_data=validation_data, **kwargs)

    x, y = _data(120, 0)
    tuner = hpo.Tuner(FineTuned(), max_trials=1, directory=tmp_path)
    tuner.search(x, y, validation_data=_data(40, 1), epochs=1, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert tuner.study().optuna_study.user_attrs["hpo_config"]["training"]["objective"] == (
        "val_accuracy"
    )


def test_a_fit_that_returns_a_score_and_sets_its_own_epochs_keeps_them(tmp_path: Path) -> None:
    x, y = _regression_data(120, 0)

    mae = _mae_score()

    import keras_tuner

    hypermodel = _hyper_regressor(mae)

    class OneEpoch(type(hypermodel)):  # type: ignore[misc]
        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            model.fit(x, y, epochs=1, verbose=0, **kwargs)
            return mae(model.predict(validation_data[0], verbose=0), validation_data[1])

    assert issubclass(OneEpoch, keras_tuner.HyperModel)
    tuner = hpo.Tuner(OneEpoch(), max_trials=1, directory=tmp_path)
    tuner.search(x, y, validation_data=_regression_data(40, 1), verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE and trial.user_attrs["epochs"] == 1


def test_given_no_objective_a_fit_that_returns_a_dict_is_told_to_name_its_key(
    tmp_path: Path,
) -> None:
    x, y = _regression_data(120, 0)
    tuner = hpo.Tuner(
        _hyper_regressor(_mae_score(as_dict=True)),
        max_trials=1,
        directory=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"objective=keras_tuner\.Objective\('mae', 'min'\)"):
        tuner.search(x, y, validation_data=_regression_data(40, 1), verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert all(t.state is TrialState.WAITING for t in trials)  # refused before any trial ran


def test_a_one_hot_fit_that_evaluates_after_fitting_and_returns_its_history_is_a_plain_fit(
    tmp_path: Path,
) -> None:
    """Run on a few rows to tell what it returns, it is given the labels as its loss takes
    them (one-hot rows for categorical_crossentropy), as in its trials."""
    import keras
    import keras_tuner

    class OneHot(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential([keras.layers.Dense(hp.Int("units", 4, 8, step=4))])
            model.add(keras.layers.Dense(3, activation="softmax"))
            model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            history = model.fit(x, y, validation_data=validation_data, **kwargs)
            model.evaluate(*validation_data, verbose=0)
            return history

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype("float32")
    y = keras.utils.to_categorical(np.argmax(x[:, :3], axis=1), 3)
    tuner = hpo.Tuner(OneHot(), max_trials=1, directory=tmp_path)
    tuner.search(x[:100], y[:100], validation_data=(x[100:], y[100:]), epochs=1, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE and 0 <= trial.value <= 1
    assert tuner.study().optuna_study.direction.name == "MAXIMIZE"


def test_a_fit_that_returns_a_score_trains_on_the_batches_of_the_dataset_it_was_given(
    tmp_path: Path,
) -> None:
    import tensorflow as tf

    log = tmp_path / "batch_size.txt"

    mae = _mae_score()

    class Logged(type(_hyper_regressor(mae))):  # type: ignore[misc]
        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            log.write_text(str(kwargs.get("batch_size")))
            model.fit(x, y, verbose=0, **kwargs)
            return mae(model.predict(validation_data[0], verbose=0), validation_data[1])

    x, y = _regression_data(120, 0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    tuner = hpo.Tuner(Logged(), max_trials=1, max_epochs=1, directory=tmp_path / "projects")
    tuner.search(dataset, validation_data=_regression_data(40, 1), verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE and trial.user_attrs["batch_size"] == 16
    assert log.read_text() == "16"


@pytest.mark.slow
def test_a_project_whose_trials_ranked_by_a_logged_objective_keeps_it_when_given_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A study an earlier hpo searched, ranked by the validation loss although the fit returns
    a score, goes on as it was ranked (its trials stay comparable) and says so."""

    mae = _mae_score()

    x, y = _regression_data(200, 0)
    validation = _regression_data(50, 1)
    first = hpo.Tuner(_hyper_regressor(mae), objective="val_loss", max_trials=1, directory=tmp_path)
    first.search(x, y, validation_data=validation, epochs=1, verbose=0)
    again = hpo.Tuner(_hyper_regressor(mae), max_trials=2, directory=tmp_path)
    with caplog.at_level("WARNING", logger="hpo"):
        again.search(x, y, validation_data=validation, epochs=1, verbose=0)
    trials = again.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.value == t.user_attrs["metrics"]["val_loss"] for t in trials)
    assert "KerasTuner would take as the value of the objective 'val_loss'" in caplog.text


def test_a_fit_that_uses_the_model_after_fitting_it_and_returns_nothing_is_a_plain_fit(
    tmp_path: Path,
) -> None:
    """It predicts after model.fit (as KerasTuner's custom objective does) but returns
    nothing: run on a few rows before the first trial, it shows it returns no score, so the
    study's objective ranks it as Keras logs it."""
    x, y = _regression_data(120, 0)
    tuner = hpo.Tuner(
        _hyper_regressor(lambda y_pred, y_val: None), max_trials=1, directory=tmp_path
    )
    tuner.search(x, y, validation_data=_regression_data(40, 1), verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state is TrialState.COMPLETE
    assert trial.value == trial.user_attrs["metrics"]["val_loss"]


@pytest.mark.slow
def test_multi_label_rows_train_sigmoid_outputs_ranked_by_their_logged_accuracy(
    tmp_path: Path,
) -> None:
    """Keras's multi-label text classification example: multi-hot labels, a sigmoid output of
    one unit per label, binary cross-entropy and `metrics=["binary_accuracy"]`."""

    def make_model(hp: Any) -> Any:
        import keras
        from keras import layers

        model = keras.Sequential(
            [
                layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
                layers.Dense(3, activation="sigmoid"),
            ]
        )
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["binary_accuracy"])
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)).astype("float32")
    y = (x[:, :3] > 0.2).astype("int64")  # several labels an example, or none
    tuner = hpo.Tuner(make_model, objective="val_binary_accuracy", max_trials=2, directory=tmp_path)
    tuner.search(
        x[:300],
        y[:300],
        validation_data=(x[300:400], y[300:400]),
        epochs=8,
        batch_size=16,
        verbose=0,
    )
    trials = tuner.study().optuna_study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        assert trial.value == trial.user_attrs["metrics"]["val_binary_accuracy"]
        # hpo measures the stored model's binary accuracy as Keras does, each label alike.
        assert trial.user_attrs["val_accuracy"] == pytest.approx(trial.value, abs=1e-4)
    ensemble = tuner.ensemble(top=2)
    assert ensemble.predict(x[400:]).shape == (100, 3)
    scores = ensemble.evaluate(x[400:], y[400:])
    assert scores["accuracy"] > 0.8, scores  # always 0 would score 0.61


def test_floats_that_are_not_whole_numbers_are_regression_targets() -> None:
    x, _ = _data(40, 0)
    prices = np.linspace(0.5, 9.5, 40).astype("float64")
    split = split_arrays(x, prices, validation_split=0.25)
    assert split.y_train.dtype == np.float32
    np.testing.assert_allclose(split.y_val, prices[30:], rtol=1e-6)
    # Whole numbers as floats are class indices, as they are for Keras's sparse losses.
    assert split_arrays(x, (prices > 5).astype("float32"), validation_split=0.25).y_val.dtype == (
        np.int32
    )
    # Validation targets are read as the training ones: whole numbers too, shaped alike.
    column = prices[:, None]
    split = split_arrays(x, column, validation_data=(x[:4], np.array([1.0, 2.0, 3.0, 4.0])))
    assert (split.y_train.shape, split.y_val.shape) == ((40, 1), (4, 1))
    with pytest.raises(DataError, match=r"validation targets have shape \[4, 2\]"):
        split_arrays(x, prices, validation_data=(x[:4], np.ones((4, 2)) / 3))
    # A missing value is no label nor target: named as missing (a NaN among class ids 0 and 1
    # read the labels as regression targets, and named them so), as pandas' NA and None are.
    import pandas as pd

    for missing in (
        np.where(np.arange(40) == 3, np.nan, prices),
        np.where(np.arange(40) == 3, np.nan, prices > 5),
        pd.Series(np.where(np.arange(40) == 3, None, prices > 5), dtype="boolean"),
        pd.Series(np.where(np.arange(40) == 3, None, (prices > 5).astype(int)), dtype="Int64"),
        ["a" if i != 3 else None for i in range(40)],
    ):
        with pytest.raises(DataError, match=r"1 example\(s\) have no label .* at example 3"):
            split_arrays(x, missing, validation_split=0.25)
    # A float beyond float32's range: infinite as a target.
    with pytest.raises(DataError, match=r"1 regression targets are NaN or infinite.*example 5"):
        split_arrays(x, np.where(np.arange(40) == 5, 1e300, prices), validation_split=0.25)
    with pytest.raises(DataError, match=r"single class.*Regression targets are floats"):
        split_arrays(x, np.ones(40), validation_split=0.25)
    # Rows of 0s and 1s, not all one-hot: multi-label targets; validation rows alike.
    tags = (x[:, :3] > 0).astype("int64")
    split = split_arrays(x, tags, validation_data=(x[:4], np.eye(3)[[0, 1, 2, 0]]))
    assert (split.y_train.dtype, split.y_train.shape, split.y_val.shape) == (
        np.float32,
        (40, 3),
        (4, 3),
    )
    # Training labels of one class an example make a row of two an error, saying why.
    with pytest.raises(DataError, match=r"row 1 holds 2.*one class an example.*multi-label"):
        split_arrays(
            x,
            np.eye(3)[np.arange(40) % 3],
            validation_data=(x[:2], np.array([[1, 0, 0], [1, 1, 0]])),
        )


@pytest.mark.slow
def test_values_the_hypermodel_rejects_are_pruned_its_defaults_too(tmp_path: Path) -> None:
    """KerasTuner's guide to failed trials: a build_model that raises FailedTrialError for
    values it will not train (here its own defaults) skips them; the search goes on."""

    def build_model(hp: Any) -> Any:
        import keras
        import keras_tuner
        from keras import layers

        units = hp.Int("units", 4, 8, step=4)
        if units == 4:
            raise keras_tuner.errors.FailedTrialError("4 units are too few")
        model = keras.Sequential(
            [keras.Input((8,)), layers.Dense(units), layers.Dense(1, activation="sigmoid")]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    x, y = _data(256, 0)
    tuner = hpo.Tuner(build_model, max_trials=4, directory=tmp_path, seed=0)
    summary = tuner.search(x, y, validation_split=0.25, epochs=1, batch_size=64, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    rejected = [t for t in trials if t.params["units"] == 4]
    assert rejected and summary.failed == 0
    # A trial that draws units=8 again is not trained again (`hpo.repeats`): pruned as well.
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    for trial in trials:
        expected = TrialState.PRUNED if trial in rejected + repeats else TrialState.COMPLETE
        assert trial.state == expected, (trial.params, trial.user_attrs)
    assert not [t for t in repeats if t in rejected]  # a rejected trial trained nothing
    assert "4 units are too few" in rejected[0].user_attrs["prune_reason"]
    assert tuner.get_best_hyperparameters()[0].values["units"] > 4


@pytest.mark.slow
def test_a_search_whose_trials_were_all_stopped_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # results_summary and get_best_models raised "no COMPLETE trials yet. Run the search
    # first: python -m hpo.search --study <file>", to a notebook that had just searched.
    def build_model(hp: Any) -> Any:
        import keras_tuner

        raise keras_tuner.errors.FailedTrialError(f"{hp.Int('units', 4, 8, step=4)} won't do")

    x, y = _data(128, 0)
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path, seed=0)
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    capsys.readouterr()
    tuner.results_summary()
    out = capsys.readouterr().out
    assert "Showing 0 best trials" in out
    assert "No trial completed; the last 2 stopped:\nTrial 00 PRUNED: " in out
    assert "won't do" in out
    with pytest.raises(hpo.StoreError, match=r"2 finished trials were all stopped \(2 PRUNED\)"):
        tuner.get_best_models()


def test_a_summary_before_any_search_says_no_trial_has_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It printed its header, then raised StoreError ("no study ... yet"); KerasTuner prints an
    # empty summary.
    _tuner(tmp_path, 2).results_summary()
    out = capsys.readouterr().out
    assert out.startswith(f"Results summary\nResults in {tmp_path / 'synthetic'}\n")
    assert "Showing 0 best trials\nNo trial has run yet: run tuner.search(x, y" in out


@pytest.mark.slow
def test_sample_weights_reach_the_training_loss(tmp_path: Path) -> None:
    # Half the training labels are flipped, and those rows weigh 0: a model that learns the
    # rule scores high on the clean validation rows only if the weights reached its loss.
    x, y = _data(512, 0)
    x_val, y_val = _data(256, 1)
    flipped = np.arange(len(y)) % 2 == 1
    noisy = np.where(flipped, 1 - y, y)
    tuner = _tuner(tmp_path, 1)
    tuner.search(
        x,
        noisy,
        validation_data=(x_val, y_val),
        epochs=4,
        batch_size=32,
        verbose=0,
        sample_weight=(~flipped).astype("float32"),
    )
    [best] = tuner.best_trials(1)
    assert best.value > 0.85, best.user_attrs
    with pytest.raises(ConfigError, match="sample_weight or class_weight, not both"):
        tuner.search(
            x,
            y,
            validation_data=(x_val, y_val),
            sample_weight=np.ones(512),
            class_weight={0: 1.0, 1: 2.0},
        )


@pytest.mark.slow
def test_a_datasets_weights_and_batch_size_are_what_the_trials_train_with(tmp_path: Path) -> None:
    import tensorflow as tf

    # As above, half the labels flipped and those rows weighing 0, now carried by the
    # dataset's batches of 20, which is also the batch size the trials train with.
    x, y = _data(512, 0)
    flipped = np.arange(len(y)) % 2 == 1
    weights = (~flipped).astype("float32")
    noisy = tf.data.Dataset.from_tensor_slices((x, np.where(flipped, 1 - y, y), weights))
    tuner = _tuner(tmp_path, 1)
    tuner.search(noisy.batch(20), validation_data=_data(256, 1), epochs=4, verbose=0)
    [best] = tuner.best_trials(1)
    assert best.value > 0.85, best.user_attrs
    assert "batch_size" not in best.params
    assert best.user_attrs["batch_size"] == 20


@pytest.mark.slow
def test_a_model_that_predicts_nan_is_pruned_never_stored_as_a_member(tmp_path: Path) -> None:
    def build_model(hp: Any) -> Any:
        import keras

        # Trains on each batch's own statistics (finite), predicts with moving ones that stay
        # negative: NaN at inference only, with a finite training loss.
        norm = keras.layers.BatchNormalization(
            momentum=0.999, moving_variance_initializer=keras.initializers.Constant(-1.0)
        )
        hidden = keras.layers.Dense(hp.Int("units", 4, 8))  # a relu would turn NaN into 0
        model = keras.Sequential(
            [keras.Input((8,)), norm, hidden, keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    x, y = _data(256, 0)
    tuner = hpo.Tuner(build_model, max_trials=1, directory=tmp_path, project_name="nan")
    tuner.search(x, y, validation_split=0.25, epochs=2, batch_size=32, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state == TrialState.PRUNED, trial.user_attrs
    reason = trial.user_attrs["prune_reason"]
    assert reason.startswith("diverged: the best epoch's model predicts NaN or infinite values")


@pytest.mark.slow
def test_a_layer_computing_in_16_bits_in_a_float32_model_searches_and_exports(
    tmp_path: Path,
) -> None:
    # As a script that sets keras.mixed_precision's global policy before making a layer
    # that build_model uses: the model is float32, one of its layers computes in float16.
    def build_model(hp: Any) -> Any:
        import keras

        inputs = keras.Input((8,))
        # Values enough that the two trials draw different ones: a repeat would not train.
        hidden = keras.layers.Dense(hp.Int("units", 8, 64), activation="relu")
        hidden.dtype_policy = keras.DTypePolicy("mixed_float16")
        outputs = keras.layers.Dense(1, activation="sigmoid")(hidden(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    x, y = _data(384, 0)
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path, project_name="half")
    tuner.search(x, y, validation_split=0.25, epochs=2, batch_size=32, verbose=0)
    trials = tuner.best_trials(2)
    assert len(trials) == 2
    # The trials record what the model computes in: the checks allow for its rounding.
    assert {t.user_attrs["precision"] for t in trials} == {"mixed_float16"}
    file = tuner.ensemble(top=2).export(tmp_path / "half.keras")
    loaded = hpo.load_model(file)
    assert np.asarray(loaded.predict(x[:4], verbose=0)).shape == (4, 1)


def test_the_stored_configuration_holds_the_hypermodels_name_never_its_code() -> None:
    portable = PortableHypermodel(_hypermodel(), {"batch_size": 16})
    config = StudyConfig(
        name="demo",
        task="arrays",
        families={portable.name: portable.spec},
        hypermodel=portable,
    )
    stored = config_to_dict(config)
    assert "hypermodel" not in stored
    assert stored["families"] == {"build_model": portable.spec}
    assert "<locals>" in portable.spec  # where it was defined, for people to read
    # What a trial process receives: the function itself, by value.
    received = pickle.loads(pickle.dumps(config))
    assert received.hypermodel.fit_kwargs == {"batch_size": 16}
    assert received.hypermodel.hypermodel.__code__.co_code == portable.hypermodel.__code__.co_code


def test_the_tuners_hyperparameters_reach_the_trial_processes_hypermodel(tmp_path: Path) -> None:
    import keras_tuner
    import optuna

    given = keras_tuner.HyperParameters()
    given.Fixed("units", 8)
    tuner = _tuner(tmp_path, 1, hyperparameters=given, tune_new_entries=False)
    # What a trial process receives, and the family it makes of it.
    received = pickle.loads(pickle.dumps(tuner.config)).hypermodel
    trial = optuna.create_study().ask()
    model = received.family(reserved=set()).build_trial(trial, {"input_shape": (8,)})
    assert model.layers[1].units == 8
    # Not given, the learning rate keeps its default (not searched).
    assert trial.params == {"units": 8}


def test_best_hyperparameters_hold_the_values_the_trial_used_that_were_not_searched(
    tmp_path: Path,
) -> None:
    """A parameter left at its default by `tune_new_entries=False`, and one the hypermodel's
    `fit` declares, are values the trial used: `get_best_hyperparameters()[0].get(name)` reads
    them, as KerasTuner's does. They were KeyErrors: the values came from Optuna's params
    alone."""
    import keras_tuner

    class FitsItsOwn(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            return _hypermodel()(hp)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32]), **kwargs)

    given = keras_tuner.HyperParameters()
    given.Fixed("units", 8)
    x, y = _data(64, 0)
    tuner = hpo.Tuner(
        FitsItsOwn(),
        max_trials=1,
        directory=tmp_path,
        hyperparameters=given,
        tune_new_entries=False,
    )
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    [best] = tuner.get_best_hyperparameters()
    assert best.values == {"units": 8, "learning_rate": 0.03, "batch_size": 16}
    assert best.get("learning_rate") == 0.03
    assert tuner.oracle.get_best_trials()[0].hyperparameters.values == best.values


def test_classes_main_registered_travel_with_the_hypermodel_and_are_registered_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import keras

    # As a notebook cell or a script defines them: in `__main__`, one registered there, one not.
    layer = type("MainScale", (keras.layers.Layer,), {"__module__": "__main__"})
    keras.saving.register_keras_serializable(package="tests")(layer)
    model = type("MainNet", (keras.Model,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "MainNet", model, raising=False)
    try:
        portable = PortableHypermodel(_hypermodel())
        main = {k: v for k, v in portable.custom_objects.items() if v.__module__ == "__main__"}
        assert main == {"tests>MainScale": layer, "__main__>MainNet": model}
        assert keras.saving.get_registered_name(model) == "__main__>MainNet"
        # Registered classes of importable modules are registered again by their import; only
        # those of modules no process could import go along (a study file's family module
        # that an earlier test of this process loaded, say: imported beside its study file).
        importable = {"tests", "hpo", "keras"}
        assert not any(
            obj.__module__.partition(".")[0] in importable
            for obj in portable.custom_objects.values()
        )
        received = pickle.loads(pickle.dumps(portable))
        copy = received.custom_objects["tests>MainScale"]
        assert keras.saving.get_registered_object("tests>MainScale") is copy
        assert keras.saving.get_registered_name(copy) == "tests>MainScale"
    finally:
        for name in ("tests>MainScale", "__main__>MainNet"):
            keras.saving.get_custom_objects().pop(name, None)


def test_a_global_instance_of_a_main_class_unpickles_where_its_class_was_never_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A notebook's `jitter = Jitter()` (and `loss_fn = MyLoss()`), used by build_model: Keras
    unpickles such an object by its class's registered name, which a trial's process had not
    registered yet, and every trial died while starting."""
    import keras

    layer = type("MainJitter", (keras.layers.Layer,), {"__module__": "__main__"})
    layer.call = lambda self, x: x
    loss = type("MainLoss", (keras.losses.Loss,), {"__module__": "__main__"})
    loss.call = lambda self, y_true, y_pred: keras.ops.mean(y_pred)
    monkeypatch.setattr(sys.modules["__main__"], "MainLoss", loss, raising=False)
    jitter, loss_fn = layer(), loss()

    def build_model(hp: Any) -> Any:
        inputs = keras.Input(shape=(8,))
        model = keras.Model(inputs, keras.layers.Dense(1)(jitter(inputs)))
        model.compile(optimizer="adam", loss=loss_fn)
        return model

    registered = ["__main__>MainJitter", "__main__>MainLoss"]
    try:
        payload = pickle.dumps(PortableHypermodel(build_model))
        # The trial's process: a new one, where nothing of the notebook's is registered.
        for name in registered:
            keras.saving.get_custom_objects().pop(name, None)
        received = pickle.loads(payload)
        assert set(registered) <= received.custom_objects.keys()
        # The class the build function's object has is the one registered, not a copy.
        model = received.hypermodel(None)
        assert type(model.layers[1]) is keras.saving.get_registered_object(registered[0])
        assert type(model.loss) is keras.saving.get_registered_object(registered[1])
    finally:
        for name in registered:
            keras.saving.get_custom_objects().pop(name, None)


def test_the_users_regularizer_initializer_constraint_schedule_loss_and_metric_are_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Classes of these kinds that a notebook or script defines are named in a model's config
    as its layers are, and were refused as ones Keras could not load back."""
    import keras

    bases = [
        keras.regularizers.Regularizer,
        keras.initializers.Initializer,
        keras.constraints.Constraint,
        keras.optimizers.schedules.LearningRateSchedule,
        keras.losses.Loss,
        keras.metrics.Metric,
    ]
    classes = [type(f"Main{b.__name__}", (b,), {"__module__": "__main__"}) for b in bases]
    for cls in classes:
        monkeypatch.setattr(sys.modules["__main__"], cls.__name__, cls, raising=False)
    try:
        portable = PortableHypermodel(_hypermodel())
        for cls in classes:
            assert keras.saving.get_registered_name(cls) == f"__main__>{cls.__name__}"
            assert portable.custom_objects[f"__main__>{cls.__name__}"] is cls
        # A regularizer of its own in a layer's config loads back, as a trial checks.
        regularizer = type(
            "L1Half",
            (keras.regularizers.Regularizer,),
            {
                "__module__": "__main__",
                "__init__": lambda self, strength=0.01: setattr(self, "strength", strength),
                "__call__": lambda self, w: self.strength * keras.ops.sum(keras.ops.abs(w)),
                "get_config": lambda self: {"strength": self.strength},
            },
        )
        monkeypatch.setattr(sys.modules["__main__"], "L1Half", regularizer, raising=False)
        PortableHypermodel(_hypermodel())
        dense = keras.layers.Dense(2, kernel_regularizer=regularizer(0.5))
        config = keras.saving.serialize_keras_object(dense)
        monkeypatch.delattr(sys.modules["__main__"], "L1Half")
        loaded = keras.saving.deserialize_keras_object(config, safe_mode=True)
        assert type(loaded.kernel_regularizer) is regularizer
        assert loaded.kernel_regularizer.strength == 0.5
    finally:
        for name in [f"__main__>{cls.__name__}" for cls in classes] + ["__main__>L1Half"]:
            keras.saving.get_custom_objects().pop(name, None)


def test_a_main_function_over_a_large_global_goes_to_the_trials_only_where_it_is_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A notebook's one-line helper over its loaded data set went, with the data, to every trial
    (400 MB for a 400 MB array); one the hypermodel does not use stays behind, named once, and
    a small one (an activation a layer's config names) still goes."""
    import keras
    import numpy as np

    # As a notebook cell defines them: in `__main__`, over the notebook's globals.
    cell = "def peek(i):\n    return big[i]\n\ndef act(x):\n    return x\n"
    notebook: dict[str, Any] = {"__name__": "__main__", "big": np.ones(2**19, "float32")}
    exec(cell, notebook)
    for name in ("peek", "act"):
        monkeypatch.setattr(sys.modules["__main__"], name, notebook[name], raising=False)

    peek = notebook["peek"]

    def build_peek(hp: Any) -> Any:
        peek(0)
        return _hypermodel()(hp)

    try:
        with caplog.at_level(logging.WARNING, logger="hpo.models.portable"):
            portable = PortableHypermodel(_hypermodel())
            PortableHypermodel(_hypermodel())
        assert len(portable._payload) < 2**20
        assert "__main__>peek" not in portable.custom_objects
        assert keras.saving.get_registered_object("__main__>act") is notebook["act"]
        assert "__main__>act" in pickle.loads(pickle.dumps(portable)).custom_objects
        [said] = [r.getMessage() for r in caplog.records if "__main__>peek" in r.getMessage()]
        assert "build_model does not use: with the globals it uses, it pickles to 2 MB" in said
        # Used by the hypermodel, it goes, however large.
        used = PortableHypermodel(build_peek)
        assert "__main__>peek" in used.custom_objects
        assert len(used._payload) > 2**21
    finally:
        for name in ("__main__>peek", "__main__>act"):
            keras.saving.get_custom_objects().pop(name, None)


def test_a_hypermodel_that_cannot_reach_the_trial_processes_is_refused_up_front() -> None:
    lock = threading.Lock()

    def build_model(hp: Any) -> Any:
        with lock:
            return None

    with pytest.raises(ConfigError, match="cannot be sent to the trial processes"):
        PortableHypermodel(build_model)


def test_a_callback_that_cannot_reach_the_trial_processes_is_named() -> None:
    """tqdm.keras.TqdmCallback() in a notebook holds the kernel's session (an HMAC): the error
    named a search() argument, not which."""
    import keras

    class Holding(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

    callbacks = [keras.callbacks.EarlyStopping(patience=1), Holding()]
    with pytest.raises(ConfigError, match=r"callback tests\.test_tuner\..*Holding given to search"):
        PortableHypermodel(_hypermodel(), {"callbacks": callbacks})


def test_kerastuner_arguments_that_do_not_apply_are_refused_or_named(tmp_path: Path) -> None:
    import keras_tuner

    # KerasTuner's spellings of an objective, its direction that of Keras's metric of the name.
    for objective, expected in [
        (keras_tuner.Objective("val_accuracy", "max"), ("val_accuracy", "max")),
        (["val_accuracy"], ("val_accuracy", "max")),
        (None, ("val_accuracy", "max")),
        ("val_loss", ("val_loss", "min")),
        ("val_acc", ("val_accuracy", "max")),  # Keras 1's name, as hpo's metric is named
        ("val_mean_absolute_error", ("val_mean_absolute_error", "min")),
        ("val_auc", ("val_auc", "max")),
        # KerasTuner minimizes these: its list of metrics to maximize predates them.
        ("val_r2_score", ("val_r2_score", "max")),
        ("val_f1_score", ("val_f1_score", "max")),
        ("val_fbeta_score", ("val_fbeta_score", "max")),
        ("val_cosine_similarity", ("val_cosine_similarity", "max")),
        ("val_pearson_correlation", ("val_pearson_correlation", "max")),
        ("val_binary_io_u", ("val_binary_io_u", "max")),
        (keras_tuner.Objective("val_custom_metric", direction="min"), ("val_custom_metric", "min")),
        # keras.losses.cosine_similarity, compiled as a metric, is logged under the same name.
        (keras_tuner.Objective("val_cosine_similarity", "min"), ("val_cosine_similarity", "min")),
    ]:
        training = hpo.Tuner(_hypermodel(), objective=objective, directory=tmp_path).config.training
        assert (training.objective, training.mode) == expected
    # A name of the user's own has no direction to infer (KerasTuner refuses it too).
    with pytest.raises(
        ConfigError,
        match=r"objective 'val_score' is no metric or loss Keras builds in.*"
        r"keras_tuner\.Objective\('val_score', direction='max'\)",
    ):
        hpo.Tuner(_hypermodel(), objective="val_score", directory=tmp_path)
    with pytest.raises(ConfigError, match=r"'val_r2_score' is better maximized"):
        hpo.Tuner(
            _hypermodel(),
            objective=keras_tuner.Objective("val_r2_score", "min"),
            directory=tmp_path,
        )
    with pytest.raises(ConfigError, match=r"or a keras_tuner\.Objective\(name, direction="):
        hpo.Tuner(_hypermodel(), objective=keras_tuner.Objective("val_x", "up"), directory=tmp_path)
    with pytest.raises(ConfigError, match="ranks trials by one objective, got 2"):
        hpo.Tuner(_hypermodel(), objective=["val_loss", "val_accuracy"], directory=tmp_path)
    both = [keras_tuner.Objective("val_auc", "max"), "val_loss"]
    with pytest.raises(ConfigError, match=r"got 2: \['val_auc', 'val_loss'\]\. Give the one"):
        hpo.Tuner(_hypermodel(), objective=both, directory=tmp_path)
    with pytest.raises(ConfigError, match="'val_loss' is better minimized"):
        hpo.Tuner(
            _hypermodel(), objective=keras_tuner.Objective("val_loss", "max"), directory=tmp_path
        )
    # KerasTuner's getting-started guide averages two executions per trial: hpo trains once.
    with pytest.warns(UserWarning, match=r"trains each trial once \(executions_per_trial=2"):
        hpo.Tuner(_hypermodel(), executions_per_trial=2, directory=tmp_path)
    with pytest.raises(ConfigError, match="executions_per_trial must be a whole number"):
        hpo.Tuner(_hypermodel(), executions_per_trial=0, directory=tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_trails'"):
        hpo.Tuner(_hypermodel(), max_trails=3, directory=tmp_path)

    # KerasTuner's custom-tuner guide subclasses its Tuner: hpo would never call these.
    class MyTuner(hpo.Tuner):
        def run_trial(self, trial: Any, train_ds: Any) -> None:
            raise AssertionError("never called")

        def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
            pass

    with pytest.raises(ConfigError, match=r"MyTuner\.run_trial, MyTuner\.on_epoch_end: .*fit\("):
        MyTuner(_hypermodel(), directory=tmp_path)
    # As KerasTuner's "tune anything" guide makes its subclass: no hypermodel. The refusal
    # still names run_trial, not the missing hypermodel.
    with pytest.raises(ConfigError, match=r"MyTuner\.run_trial, MyTuner\.on_epoch_end: "):
        MyTuner(max_trials=5, overwrite=True, directory=tmp_path, project_name="any")
    with pytest.raises(ConfigError, match="needs a hypermodel, got none"):
        hpo.Tuner(max_trials=5, directory=tmp_path)
    with pytest.warns(UserWarning, match="ignores logger="):
        tuner = hpo.Tuner(_hypermodel(), logger=None, directory=tmp_path)
    with pytest.raises(ConfigError, match="hyperparameters must be a keras_tuner"):
        hpo.Tuner(_hypermodel(), hyperparameters={"units": 8}, directory=tmp_path)
    assert tuner.config.n_trials == 10  # KerasTuner's default without a budget
    assert hpo.Tuner(_hypermodel(), budget="30m", directory=tmp_path).config.budget == 1800
    x, y = _data(32, 0)
    with pytest.raises(ConfigError, match="got initial_epoch="):
        tuner.search(x, y, validation_split=0.25, initial_epoch=1)
    with pytest.raises(hpo.StoreError, match=r"run tuner\.search"):
        tuner.get_best_models()


def test_hyperbands_and_bayesian_optimizations_arguments_are_taken_or_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The constructor lines of KerasTuner's Hyperband and BayesianOptimization, renamed.
    with pytest.warns(UserWarning) as caught:
        tuner = hpo.Tuner(
            _hypermodel(), max_epochs=3, factor=3, hyperband_iterations=2, directory=tmp_path
        )
    assert [str(w.message).split(" (")[0] for w in caught] == [
        "hpo.Tuner ignores factor=",
        "hpo.Tuner ignores hyperband_iterations=",
    ]
    with pytest.warns(UserWarning, match="ignores alpha="):
        bayesian = hpo.Tuner(_hypermodel(), num_initial_points=4, alpha=1e-4, directory=tmp_path)
    assert bayesian.config.sampler.startup_trials == 4
    assert hpo.Tuner(_hypermodel(), directory=tmp_path).config.sampler.startup_trials == 10
    with pytest.raises(ConfigError, match="max_epochs must be a whole number >= 1, got 0"):
        hpo.Tuner(_hypermodel(), max_epochs=0, directory=tmp_path)

    # max_epochs caps the epochs of every trial, as Hyperband's does, over search(epochs=).
    from hpo.search import workers

    searched: list[StudyConfig] = []

    def run_search(config: StudyConfig, **kwargs: Any) -> Any:
        searched.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(workers, "run_search", run_search)
    x, y = _data(32, 0)
    for epochs in (None, 2, 50):
        with pytest.raises(ConfigError, match="stop here"):
            tuner.search(x, y, validation_split=0.25, epochs=epochs, verbose=0)
    assert [config.training.max_epochs for config in searched] == [3, 2, 3]


def test_the_search_space_summary_lists_build_models_parameters_as_kerastuner_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tuner(tmp_path, 2).search_space_summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Search space summary", "Default search space size: 2"]
    assert lines[2] == "units (Int)"
    assert "'min_value': 4, 'max_value': 16, 'step': 4" in lines[3]
    assert lines[4] == "learning_rate (Choice)"
    assert not (tmp_path / "synthetic").exists()  # nothing searched, nothing written
    import keras_tuner

    # Parameters given as hyperparameters= come first, in place of the model's own.
    given = keras_tuner.HyperParameters()
    given.Fixed("units", 8)
    _tuner(tmp_path, 2, hyperparameters=given).search_space_summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:4] == ["units (Fixed)", "{'conditions': [], 'value': 8}"]
    from keras_tuner.applications import HyperResNet

    # A HyperModel class is made with the data's shape and classes when a search starts.
    tuner = hpo.Tuner(HyperResNet, directory=tmp_path)
    with pytest.raises(ConfigError, match=r"HyperResNet\(\) failed .*input_shape=\.\.\."):
        tuner.search_space_summary()


def test_the_search_space_summary_lists_conditional_branches_the_defaults_leave_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KerasTuner builds again with each conditional scope's parent values until every scope
    has been entered, and lists their parameters too: `layers` of the "deep" branch was
    missing, the defaults' build ("wide") never declaring it."""
    import keras
    import keras_tuner

    def build_model(hp: Any) -> Any:
        model = keras.Sequential([keras.Input((8,))])
        kind = hp.Choice("kind", ["wide", "deep", "other"])
        with hp.conditional_scope("kind", ["wide"]):
            if kind == "wide":
                model.add(keras.layers.Dense(hp.Int("wide_units", 32, 64, step=32)))
        with hp.conditional_scope("kind", ["deep"]):
            if kind == "deep":
                for _ in range(hp.Int("layers", 1, 2)):
                    with hp.conditional_scope("layers", [2]):
                        hp.Boolean("norm")
                    model.add(keras.layers.Dense(8))
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    keras_tuner.RandomSearch(build_model, "val_loss", directory=tmp_path).search_space_summary()
    theirs = capsys.readouterr().out
    hpo.Tuner(build_model, "val_loss", directory=tmp_path).search_space_summary()
    ours = capsys.readouterr().out
    assert "layers (Int)" in ours and "norm (Boolean)" in ours
    assert ours == theirs


def _shaped_hypermodel() -> Callable[[Any], Any]:
    # Reads what hpo gives every build from the data, as docs/hypermodels.md shows.
    def build_model(hp: Any) -> Any:
        import keras
        from keras import layers

        inputs = keras.Input(shape=hp.get("input_shape"))
        x = layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu")(inputs)
        outputs = layers.Dense(hp.get("classes"), activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    return build_model


@pytest.mark.slow
def test_what_the_data_give_build_model_is_given_again_after_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hp.get("input_shape")` and `hp.get("classes")` read the data's values in a trial, and
    after the search in the best values, the oracle's trials and the search space summary:
    `build_model(best_hp)` builds the best model again, as KerasTuner's tutorials write it."""
    build_model = _shaped_hypermodel()
    tuner = hpo.Tuner(build_model, max_trials=1, directory=tmp_path, project_name="shaped")
    x, y = _data(64, 0)
    tuner.search(x, y, validation_data=_data(32, 1), epochs=1, batch_size=32, verbose=0)

    [best_hp] = tuner.get_best_hyperparameters()
    assert list(best_hp.values) == ["units"]  # the hyperparameters, as KerasTuner gives them
    assert (best_hp.get("input_shape"), best_hp.get("classes")) == ((8,), 2)
    [top] = tuner.oracle.get_best_trials(1)
    for hp in (best_hp, top.hyperparameters, best_hp.copy()):
        for model in (build_model(hp), tuner.hypermodel.build(hp)):
            assert (model.inputs[0].shape, model.outputs[0].shape) == ((None, 8), (None, 2))
            assert model.layers[1].units == best_hp.values["units"]
    capsys.readouterr()
    tuner.search_space_summary()
    assert "Default search space size: 1\nunits (Int)" in capsys.readouterr().out
    # A Tuner of the project in a later session reads them from the study.
    later = hpo.Tuner(build_model, directory=tmp_path, project_name="shaped")
    later.search_space_summary()
    assert "units (Int)" in capsys.readouterr().out
    assert later.get_best_hyperparameters()[0].get("classes") == 2
    # Data deleted by hand: the hyperparameters still, with a warning naming why.
    for folder in (tmp_path / "shaped" / "cache").glob("arrays-*"):
        shutil.rmtree(folder)
    with pytest.warns(UserWarning, match="not there.*none of the values the data give"):
        [hp] = later.get_best_hyperparameters()
    assert hp.values == best_hp.values
    assert "input_shape" not in hp
    # Before a project's first search the data are unknown: said so, with the fix, not as the
    # build's KeyError.
    unsearched = hpo.Tuner(build_model, directory=tmp_path, project_name="unsearched")
    with pytest.raises(
        ConfigError, match=r"reads hp.get\('input_shape'\).*has none yet.*after tuner.search"
    ):
        unsearched.search_space_summary()


@pytest.mark.slow
def test_a_hypermodel_class_is_made_with_the_datas_shape_and_classes_after_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `HyperModel` class whose constructor takes `input_shape` and `classes` gets them in
    each trial (docs/hypermodels.md), and so as `tuner.hypermodel` after the search:
    `tuner.hypermodel.build(best_hp)` builds the best model again."""
    import keras
    import keras_tuner
    from keras import layers

    class ShapedHyperModel(keras_tuner.HyperModel):
        def __init__(self, input_shape: Any = None, classes: Any = None) -> None:
            super().__init__()
            self.input_shape = input_shape
            self.classes = classes

        def build(self, hp: Any) -> Any:
            model = keras.Sequential(
                [
                    keras.Input(shape=self.input_shape),
                    layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
                    layers.Dense(self.classes, activation="softmax"),
                ]
            )
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            return model

    tuner = hpo.Tuner(ShapedHyperModel, max_trials=1, directory=tmp_path, project_name="cls")
    x, y = _data(64, 0)
    tuner.search(x, y, validation_data=_data(32, 1), epochs=1, batch_size=32, verbose=0)

    hypermodel = tuner.hypermodel
    assert (hypermodel.input_shape, hypermodel.classes) == ((8,), 2)
    [best_hp] = tuner.get_best_hyperparameters()
    model = hypermodel.build(best_hp)
    assert (model.inputs[0].shape, model.outputs[0].shape) == ((None, 8), (None, 2))
    capsys.readouterr()
    tuner.search_space_summary()
    assert "units (Int)" in capsys.readouterr().out
    # Before a project's first search, made without them: said so, with the fix.
    unsearched = hpo.Tuner(ShapedHyperModel, directory=tmp_path, project_name="unsearched")
    with pytest.raises(
        ConfigError, match=r"ShapedHyperModel takes input_shape and classes.*has none yet"
    ):
        unsearched.search_space_summary()


def test_search_data_become_training_and_validation_arrays_of_class_indices() -> None:
    x, y = _data(40, 0)
    split = split_arrays(x, y, validation_split=0.25)
    # Keras's cut: the last quarter, in order.
    np.testing.assert_array_equal(split.x_val, x[30:])
    np.testing.assert_array_equal(split.y_train, y[:30])
    one_hot = np.eye(3)[[0, 2, 1, 2]]
    np.testing.assert_array_equal(class_labels(one_hot), [0, 2, 1, 2])
    assert class_labels(np.array([[1.0], [0.0]])).tolist() == [1, 0]
    # Several classes an example (multi-label), or none: not one class to learn.
    for rows, row, ones in (([[1, 0, 1], [0, 1, 0]], 0, 2), ([[0, 1, 0], [0, 0, 0]], 1, 0)):
        with pytest.raises(DataError, match=f"row {row} holds {ones}.*multi-label"):
            class_labels(np.array(rows))
    with pytest.raises(DataError, match="validation_data=\\(x_val, y_val\\)"):
        split_arrays(x, y)
    with pytest.raises(DataError, match="class indices"):
        class_labels(np.array([0.5, 1.0]))
    # Booleans are classes 0 and 1, as Keras takes them; names must be numbered first.
    assert class_labels(np.array([True, False])).tolist() == [1, 0]
    with pytest.raises(DataError, match=r"\['cat', 'dog'\].*np\.unique\(y, return_inverse=True\)"):
        class_labels(np.array(["cat", "dog"]))
    with pytest.raises(DataError, match="object, neither numbers nor text"):
        split_arrays(np.array(["a", 1] * 2, dtype=object), np.arange(4) % 2, validation_split=0.5)
    with pytest.raises(DataError, match="40 inputs but 39 labels"):
        split_arrays(x, y[:-1], validation_split=0.5)
    # A model of several inputs: one array of a field per input, cut as any other.
    several = split_arrays({"a": x, "b": x[:, :3]}, y, validation_split=0.25)
    np.testing.assert_array_equal(several.x_val["b"], x[30:, :3])
    np.testing.assert_array_equal(
        split_arrays([x, x[:, :3]], y, validation_split=0.5).x_val["input_1"], x[20:, :3]
    )
    # A sparse matrix (TF-IDF features) is stored dense, where that fits.
    import scipy.sparse

    sparse = scipy.sparse.csr_matrix(np.where(x > 1, x, 0))
    np.testing.assert_array_equal(
        split_arrays(sparse, y, validation_split=0.5).x_val, sparse[20:].toarray()
    )
    huge = scipy.sparse.csr_matrix((100_000, 10_000), dtype="float32")
    with pytest.raises(DataError, match=r"sparse 100000 x 10000 matrix.*3\.7 GiB.*max_features"):
        split_arrays(huge, np.arange(100_000) % 2, validation_split=0.5)
    # Rows given as a list are one input.
    np.testing.assert_array_equal(split_arrays(list(x), y, validation_split=0.5).x_train, x[:20])


def test_text_inputs_are_stored_as_utf8_bytes_for_tensorflow_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pandas as pd
    import tensorflow as tf

    from hpo.backend import Backend
    from hpo.data.inputs import keras_inputs
    from hpo.tuner import _check_text_backend

    texts = ["un café noir", "bad", "a good film", "worse"] * 5
    y = np.arange(20) % 2
    # numpy's str, a list, a pandas column, object arrays of str or of bytes, a dataset.
    given = [
        np.array(texts),
        texts,
        pd.Series(texts),
        np.array(texts, dtype=object),
        np.array([t.encode() for t in texts], dtype=object),
    ]
    dataset = tf.data.Dataset.from_tensor_slices((texts, y)).batch(3)
    for x in [*given, dataset]:
        split = split_arrays(x, None if x is dataset else y, (np.array(["ok"] * 4), y[:4]))
        assert split.x_train.dtype.kind == "S", type(x)
        assert split.x_train[0].decode("utf-8") == "un café noir"
        assert split.x_val.dtype == np.dtype("S2")  # any width: the same inputs
    several = split_arrays({"t": np.array(texts), "n": y[:, None] * 1.0}, y, validation_split=0.5)
    inputs = keras_inputs(several.x_train)
    assert (inputs["t"].dtype, inputs["n"].dtype) == ("string", "float64")
    _check_text_backend(split.x_train, Backend.TENSORFLOW)
    with pytest.raises(DataError, match=r"text.*trains on jax: run it with KERAS_BACKEND="):
        _check_text_backend(several.x_train, Backend.JAX)
    _check_text_backend(several.x_train["n"], Backend.JAX)  # numbers go anywhere
    # Each text is stored at the longest's width: one outlier could fill the disk.
    monkeypatch.setattr("hpo.data.inputs.MAX_TEXT_BYTES", 1000)
    outlier = ["short"] * 19 + ["long " * 20]
    with pytest.raises(DataError, match=r"20 texts.*\(100 bytes, text 19; the median is 5\)"):
        split_arrays(outlier, y, validation_split=0.5)


@pytest.mark.slow
def test_a_model_that_vectorizes_its_own_text_searches_ensembles_and_exports(
    tmp_path: Path,
) -> None:
    import tensorflow as tf

    def build_model(hp: Any) -> Any:
        import keras

        # Keras's text classification as its tutorials end it: strings in, the vocabulary
        # inside the model.
        vectorize = keras.layers.TextVectorization(
            output_sequence_length=6, vocabulary=["good", "bad", "film", "plot", "a", "very"]
        )
        inputs = keras.Input(shape=(1,), dtype="string")
        x = keras.layers.Embedding(8, hp.Int("dim", 4, 8, step=4))(vectorize(inputs))
        x = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
        return model

    rng = np.random.default_rng(0)
    words = np.array(["a", "very", "film", "plot"])
    y = rng.integers(0, 2, 400)
    texts = [
        " ".join([*rng.choice(words, 3), "good" if label else "bad", *rng.choice(words, 2)])
        for label in y
    ]
    x = np.array(texts)[:, None]
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path, project_name="text")
    tuner.search(x[:300], y[:300], validation_split=0.25, epochs=4, verbose=0)
    [best] = tuner.get_best_models(1)
    assert best.predict(tf.constant(x[300:302]), verbose=0).shape == (2, 1)
    ensemble = tuner.ensemble(top=2)
    scores = ensemble.evaluate(x[300:], y[300:])
    assert scores["accuracy"] > 0.9
    # A test dataset of (inputs, labels) batches, as Keras's evaluate takes one.
    test = tf.data.Dataset.from_tensor_slices((x[300:], y[300:])).batch(32)
    assert ensemble.evaluate(test) == scores
    # predict takes a dataset of inputs, or of (inputs, labels) batches, as Keras's does.
    predicted = ensemble.predict(x[300:])
    np.testing.assert_array_equal(ensemble.predict(test), predicted)
    np.testing.assert_array_equal(ensemble.predict(test.map(lambda i, _: i)), predicted)
    with pytest.raises(DataError, match=r"text \(\) per example; the search's were text \(1,\)"):
        ensemble.evaluate(x[300:, 0], y[300:])
    with pytest.raises(DataError, match=r"x holds no examples"):
        ensemble.predict(x[:0])
    # A label the study never had (a typo, a new class) was an IndexError from the metrics.
    with pytest.raises(DataError, match=r"1 test label\(s\) are no class of the ensemble's 2 "):
        ensemble.evaluate(x[300:], np.where(np.arange(100) == 7, 2, y[300:]))
    exported = ensemble.export(tmp_path / "ensemble")
    model = hpo.load_model(exported)
    # Keras's predict takes text as TensorFlow strings.
    np.testing.assert_allclose(
        model.predict(tf.constant(x[300:]), verbose=0).reshape(-1),
        ensemble.predict(x[300:]).reshape(-1),
        atol=1e-5,
    )
    # Texts longer than every training text, read whole (the training texts' width cut them
    # to the unknown words before "good" and "bad": one probability for both).
    longer = np.array([["unheardofword " * 4 + "good"], ["unheardofword " * 4 + "bad"]])
    np.testing.assert_allclose(
        ensemble.predict(longer).reshape(-1),
        model.predict(tf.constant(longer), verbose=0).reshape(-1),
        atol=1e-5,
    )
    assert ensemble.evaluate(longer, np.array([1, 0]))["accuracy"] == 1.0


@pytest.mark.slow
def test_get_best_models_gives_the_trials_adapted_vocabulary_or_else_the_stored_model(
    tmp_path: Path,
) -> None:
    """A vocabulary is no weight: a build_model that adapts one on a random sample of the texts
    got another vocabulary in get_best_models than in its trial (val accuracy 0.56 against
    0.87), silently. Its build is seeded as the trial's was; one that draws otherwise still
    (here: a sample that changes at each build) gives the stored model, with the warning."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    y = rng.integers(0, 2, 300)
    x = np.array([" ".join(rng.choice(words[:15] if c else words[15:], 3)) for c in y])
    builds = [0]

    def model_on(sample: np.ndarray, hp: Any) -> Any:
        # The 10 commonest words of the sample: which they are depends on the sample.
        vectorize = keras.layers.TextVectorization(max_tokens=12, output_sequence_length=3)
        vectorize.adapt(sample)
        inputs = keras.Input(shape=(), dtype="string")
        embedded = keras.layers.Embedding(12, hp.Int("d", 4, 8, step=4))(vectorize(inputs))
        outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(embedded))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    def sampled(hp: Any) -> Any:
        return model_on(np.random.choice(x, 40), hp)

    def changing() -> Any:
        def sampled(hp: Any) -> Any:  # the same family, edited (a notebook's cell run again)
            builds[0] += 1
            return model_on(np.random.default_rng(builds[0]).choice(x, 40), hp)

        return sampled

    tuner = hpo.Tuner(sampled, max_trials=1, directory=tmp_path, project_name="vocab")
    tuner.search(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=3, verbose=0)
    [trial] = tuner.best_trials(1)
    stored = tuner.study().load_model(trial.number)
    expected = stored.predict(tf.constant(x[200:]), verbose=0).reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        [best] = tuner.get_best_models(1)
    assert best.predict(tf.constant(x[200:]), verbose=0).reshape(-1) == pytest.approx(expected)
    again = hpo.Tuner(changing(), max_trials=1, directory=tmp_path, project_name="vocab")
    with pytest.warns(UserWarning, match=r"predicts otherwise than the trial's model.*vocabulary"):
        [best] = again.get_best_models(1)
    assert best.predict(tf.constant(x[200:]), verbose=0).reshape(-1) == pytest.approx(expected)


def test_inputs_that_are_nan_or_infinite_are_refused_naming_the_first() -> None:
    x, y = _data(50, 0)
    holed = x.copy()
    holed[17, 3], holed[30, 1] = np.nan, np.inf
    message = r"2 NaN or infinite value\(s\), the first in example 17.*np\.nan_to_num"
    with pytest.raises(DataError, match="x: the inputs hold " + message):
        split_arrays(holed, y, validation_split=0.2)
    with pytest.raises(DataError, match="validation_data: the inputs hold " + message):
        split_arrays(x, y, (holed, y))
    with pytest.raises(DataError, match="x: input 'b' holds " + message):
        split_arrays({"a": x, "b": holed}, y, validation_split=0.2)
    # Whole numbers cannot be NaN; finite floats pass.
    assert split_arrays(x.astype("int32"), y, validation_split=0.2).x_train.dtype == np.int32


def test_sample_weights_are_cut_with_the_training_rows_and_checked() -> None:
    x, y = _data(40, 0)
    weights = np.arange(40, dtype="float64")
    split = split_arrays(x, y, validation_split=0.25, sample_weight=weights)
    assert split.w_train is not None and split.w_train.dtype == np.float32
    np.testing.assert_array_equal(split.w_train, weights[:30])
    given = split_arrays(x, y, (x[:8], y[:8]), sample_weight=list(weights))
    np.testing.assert_array_equal(given.w_train, weights)
    assert split_arrays(x, y, validation_split=0.25).w_train is None
    for bad, message in [
        (weights[:-1], r"one weight per example of x, shape \(40,\); got shape \(39,\)"),
        (-weights, "finite and at least 0"),
        (np.zeros(40), "every training example weighs 0"),
        (["heavy"] * 40, "must be numbers"),
    ]:
        with pytest.raises(DataError, match=message):
            split_arrays(x, y, validation_split=0.25, sample_weight=bad)
    with pytest.raises(DataError, match="validation is not weighted"):
        split_arrays(x, y, (x, y, weights))


def test_a_datasets_weights_are_read_with_its_rows_and_refused_for_validation() -> None:
    import keras
    import tensorflow as tf

    x, y = _data(50, 0)
    weights = np.linspace(0, 1, 50).astype("float32")
    weighted = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(16)
    split = split_arrays(weighted, None, (x, y))
    assert split.w_train is not None
    np.testing.assert_array_equal(split.w_train, weights)
    np.testing.assert_array_equal(split.x_train, x)
    # Cut with validation_split as the rows are.
    cut = split_arrays(weighted, None, validation_split=0.2)
    np.testing.assert_array_equal(cut.w_train, weights[:40])
    with pytest.raises(DataError, match=r"validation is not weighted.*lambda x, y, w: \(x, y\)"):
        split_arrays(x, y, weighted)
    with pytest.raises(DataError, match=r"make them \(inputs, labels, weights\)"):
        split_arrays(weighted, None, (x, y), sample_weight=weights)

    class Mixed(keras.utils.PyDataset):  # the first batch weighted, the second not
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
            rows = slice(index * 25, (index + 1) * 25)
            return (x[rows], y[rows], weights[rows])[: 3 - index]

    with pytest.raises(DataError, match="some batches carry weights and others do not"):
        split_arrays(Mixed(), None, (x, y))


def test_a_tf_dataset_and_a_py_dataset_are_read_once_into_the_same_arrays() -> None:
    import keras
    import tensorflow as tf

    x, y = _data(50, 0)
    from_tf = split_arrays(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), None, (x, y))
    np.testing.assert_array_equal(from_tf.x_train, x)
    np.testing.assert_array_equal(from_tf.y_train, y)

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rows = slice(index * 16, (index + 1) * 16)
            return x[rows], y[rows]

    from_py = split_arrays(Batches(), None, Batches())
    np.testing.assert_array_equal(from_py.x_val, x)
    # The batch size the user chose: the first batch's rows (the last may be shorter).
    assert (from_tf.batch_size, from_py.batch_size) == (16, 16)
    assert split_arrays(x, y, (x, y)).batch_size is None
    # Random augmentation in the pipeline would be drawn once: said. Shuffling is not.
    images = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
    flip = keras.layers.RandomFlip("horizontal")
    augmented = tf.data.Dataset.from_tensor_slices((images, np.arange(32) % 2)).batch(8)
    with pytest.warns(UserWarning, match=r"draws random numbers \(StatelessRandom.*drawn once"):
        split_arrays(augmented.map(lambda a, b: (flip(a), b)), None, validation_split=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_arrays(augmented.shuffle(4), None, validation_split=0.5)
    with pytest.raises(DataError, match=r"single examples .* dataset\.batch\(32\)"):
        split_arrays(tf.data.Dataset.from_tensor_slices((x, y)), None, (x, y))
    with pytest.raises(DataError, match="repeats forever"):
        split_arrays(tf.data.Dataset.from_tensor_slices((x, y)).repeat(), None, (x, y))


def test_labels_of_several_outputs_are_refused_naming_them_and_one_hot_lists_are_not() -> None:
    import tensorflow as tf

    x, y = _data(50, 0)
    by_output = {"kind": y, "size": x[:, :1]}
    with pytest.raises(DataError, match=r"a dict of 2 outputs' labels \('kind', 'size'\)"):
        split_arrays(x, by_output, validation_split=0.2)
    with pytest.raises(DataError, match=r"a list of 2 arrays, one an output.*one output"):
        split_arrays(x, [y, x[:, :1]], validation_split=0.2)
    with pytest.raises(DataError, match=r"^validation_data: the labels are a dict of 2"):
        split_arrays(x, y, (x, by_output))
    batches = tf.data.Dataset.from_tensor_slices((x, by_output)).batch(16)
    with pytest.raises(DataError, match=r"a dict of 2 outputs' labels"):
        split_arrays(batches, None, validation_split=0.2)
    # One-hot rows as a list of arrays, one an example: one output's labels.
    one_hot = list(np.eye(2, dtype="float32")[y])
    np.testing.assert_array_equal(split_arrays(x, one_hot, (x, y)).y_train, y)


def test_labels_of_an_array_an_example_are_refused_naming_the_ways_out() -> None:
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype("float32")
    masks = (x[..., 0] > 0.5).astype("int64")  # a class a pixel: segmentation
    with pytest.raises(
        DataError, match=r"^y: the labels are int64 \(40, 8, 8\), an array of \[8, 8\]"
    ):
        split_arrays(x, masks, validation_split=0.25)
    # An autoencoder's targets, the images themselves: refused, with the flattening that works.
    with pytest.raises(DataError, match=r"float32 \(40, 8, 8, 1\).*y.reshape\(len\(y\), -1\)"):
        split_arrays(x, x, validation_split=0.25)
    flat = split_arrays(x, x.reshape(len(x), -1) + 0.5, validation_split=0.25)
    assert flat.y_train.shape == (30, 64)


def test_a_torch_data_loader_is_read_once_and_a_generator_is_refused_with_the_fix() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data(50, 0)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16)
    split = split_arrays(loader, None, loader)
    np.testing.assert_array_equal(split.x_train, x)
    np.testing.assert_array_equal(split.y_val, y)
    assert split.batch_size == 16

    class Stream(torch.utils.data.IterableDataset[Any]):
        def __iter__(self) -> Any:
            return iter(zip(x, y, strict=True))

    with pytest.raises(DataError, match="DataLoader has no length"):
        split_arrays(DataLoader(Stream(), batch_size=16), None, (x, y))
    batches = ((x[i : i + 10], y[i : i + 10]) for i in range(0, 50, 10))
    with pytest.raises(DataError, match=r"generator may never end.*map\(np\.concatenate"):
        split_arrays(batches, None, (x, y))
    # The fix the error names.
    joined = split_arrays(*map(np.concatenate, zip(*batches, strict=True)), validation_split=0.2)
    np.testing.assert_array_equal(joined.x_train, x[:40])


def test_a_project_name_that_cannot_name_a_folder_is_refused_suggesting_one(
    tmp_path: Path,
) -> None:
    for given, suggested in (("my project", "my_project"), ("résumé v2", "r_sum_v2"), ("", None)):
        with pytest.raises(ConfigError, match=r"^project_name must be ASCII letters") as refused:
            hpo.Tuner(_hypermodel(), directory=tmp_path, project_name=given)
        assert f"got {given!r}: {(suggested or 'untitled_project')!r}, say." in str(refused.value)
    assert hpo.Tuner(_hypermodel(), directory=tmp_path, project_name="v1.2").config.name == "v1.2"
    # A long name of allowed characters was told about the characters.
    with pytest.raises(ConfigError, match=r"^project_name must be at most 100 characters") as long:
        hpo.Tuner(_hypermodel(), directory=tmp_path, project_name="a" * 101)
    assert f"got 101: {'a' * 100!r}, say." in str(long.value)


def test_overwrite_refuses_a_project_that_is_a_link_or_a_file_and_keeps_what_it_names(
    tmp_path: Path,
) -> None:
    # A link gave "OSError: Cannot call rmtree on a symbolic link", a file NotADirectoryError.
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("not hpo's")
    (tmp_path / "synthetic").symlink_to(target)
    with pytest.raises(ConfigError, match=r"is a symbolic link \(to .*elsewhere\).*another pro"):
        _tuner(tmp_path, 1, overwrite=True)
    assert (target / "keep.txt").read_text() == "not hpo's"
    (tmp_path / "synthetic").unlink()
    (tmp_path / "synthetic").write_text("a file")
    with pytest.raises(ConfigError, match=r"synthetic is a file, not a project's folder"):
        _tuner(tmp_path, 1, overwrite=True)
    assert (tmp_path / "synthetic").read_text() == "a file"


def test_load_model_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no model at .*ensemble\.keras"):
        hpo.load_model(tmp_path)


def test_importing_hpo_and_its_public_names_loads_neither_keras_nor_tensorflow() -> None:
    code = (
        "import sys, hpo; hpo.search, hpo.ensemble, hpo.load_study, hpo.Tuner; "
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)), callable(hpo.search))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"


UNGUARDED_SCRIPT = """
# As KerasTuner's getting-started guide writes it: everything at the top level, no guard.
import keras
import numpy as np

import hpo

print("the script runs", flush=True)


class Scale(keras.layers.Layer):  # a layer of the script's own, not registered
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def build_model(hp):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
        Scale(0.5),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


x = np.random.default_rng(0).normal(size=(240, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
tuner = hpo.Tuner(build_model, max_trials=2, directory=".", project_name="p", overwrite=True)
summary = tuner.search(x[:200], y[:200], validation_split=0.25, epochs=4, verbose=0)
print("finished", summary.finished, "failed", summary.failed)
ensemble = tuner.ensemble(top=2)
print("test accuracy", ensemble.evaluate(x[200:], y[200:])["accuracy"] > 0.5)
"""


PIPED_SCRIPT = """
import numpy as np
import hpo


def build_model(hp):
    import keras

    hidden = keras.layers.Dense(hp.Int("units", 2, 4), activation="relu")
    output = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Sequential([keras.Input((4,)), hidden, output])
    model.compile(loss="binary_crossentropy", optimizer="adam")
    return model


x = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
tuner = hpo.Tuner(build_model, max_trials=2, directory=".", project_name="piped")
summary = tuner.search(x, x[:, 0] > 0, validation_split=0.25, epochs=2, verbose=0)
print("finished", summary.finished, "failed", summary.failed)
"""


BY_PATH_SCRIPT = """
# The hypermodel in a module loaded by its file's path, as Python's importlib docs show it:
# no process started afresh can import "models_by_path".
import importlib.util
import logging
import sys

import numpy as np

import hpo

spec = importlib.util.spec_from_file_location("models_by_path", "src/models.py")
models = importlib.util.module_from_spec(spec)
sys.modules["models_by_path"] = models
spec.loader.exec_module(models)

said = []
logging.getLogger("hpo").addHandler(logging.Handler())
logging.getLogger("hpo").handlers[-1].emit = lambda record: said.append(record.getMessage())
x = np.random.default_rng(0).normal(size=(240, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
tuner = hpo.Tuner(models.build_model, max_trials=2, directory=".", project_name="p")
summary = tuner.search(x, y, validation_split=0.25, epochs=2, verbose=0)
print("finished", summary.finished, "failed", summary.failed)
print("left behind", any("mine>locked_relu is not sent" in line for line in said))
print("best", tuner.get_best_models(1)[0].predict(x[:3], verbose=0).shape)
print("exported", tuner.ensemble(top=2).export("ensemble.keras"))
# The user's own pickling of the module is left as it was: by reference.
print("by reference", len(__import__("cloudpickle").dumps(models.build_model)) < 200)
"""

BY_PATH_MODULE = """
import threading

import keras

_lock = threading.Lock()


@keras.saving.register_keras_serializable(package="mine")
def locked_relu(x):  # registered, unused by build_model, its globals a lock: left behind
    with _lock:
        return keras.ops.relu(x)


@keras.saving.register_keras_serializable(package="mine")
class Scale(keras.layers.Layer):
    def __init__(self, factor=0.5, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class Shift(keras.layers.Layer):  # not registered, as KerasTuner's examples write layers
    def call(self, x):
        return x + 0.1


def build_model(hp):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
        Scale(),
        Shift(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model
"""


@pytest.mark.slow
def test_a_hypermodel_from_a_module_loaded_by_its_path_searches_and_exports(
    tmp_path: Path,
) -> None:
    # Its trials died with "ModuleNotFoundError: No module named 'models_by_path'".
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "models.py").write_text(BY_PATH_MODULE)
    printed = run_user_script(tmp_path, BY_PATH_SCRIPT, timeout=600).splitlines()
    assert printed == [
        "finished 2 failed 0",
        "left behind True",
        "best (3, 1)",
        "exported ensemble.keras",
        "by reference True",
    ]


def test_a_script_read_from_standard_input_searches_as_a_notebook_does(tmp_path: Path) -> None:
    """`python - < search.py`: `__main__` has a file name but no file, which multiprocessing
    would have each trial process run again (it died before starting). Like a notebook's, that
    main is not run again, and a search at its top level is allowed."""
    printed = run_user_script(tmp_path, PIPED_SCRIPT, timeout=300, piped=True)
    # verbose=0: the script's own line is all there is.
    assert printed.splitlines() == ["finished 2 failed 0"]


def test_a_search_at_a_scripts_top_level_runs_without_running_the_script_again(
    tmp_path: Path,
) -> None:
    """A search outside `if __name__ == "__main__":`, as KerasTuner's guides write it: each
    trial process would run the script again to start (and the search in it, and
    `overwrite=True` delete the study). Its processes start without the script, given the
    hypermodel and the script's layer by value, as in a notebook's."""
    printed = run_user_script(tmp_path, UNGUARDED_SCRIPT, timeout=300).splitlines()
    assert printed == ["the script runs", "finished 2 failed 0", "test accuracy True"]


def test_an_ipython_script_searches_as_a_notebook_does(tmp_path: Path) -> None:
    """`ipython search.ipy` (and `%run search.ipy`, which runs it the same way, through
    IPython's `safe_execfile_ipy`): IPython runs the script as a cell of its own name
    (`<ipython-input-1-...>`) with `__main__.__file__` the script, so no line the main thread
    ran was the script's and each trial process ran the script again, as multiprocessing
    does, and died in the search there (`TrialProcessDied` ... while starting). Its processes
    start without the script, as from a notebook."""
    (tmp_path / "script.ipy").write_text(UNGUARDED_SCRIPT)
    ipython = [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "script.ipy"]
    result = run_in(tmp_path, ipython, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    assert printed == ["the script runs", "finished 2 failed 0", "test accuracy True"], (
        result.stdout + result.stderr
    )[-3000:]


MAIN_FUNCTION_SCRIPT = """
import keras
import numpy as np
import hpo

log_file = open("log.txt", "a")


def log(message):  # a helper the hypermodel never uses, its globals an open file
    log_file.write(message + "\\n")


def build_model(hp):
    hidden = keras.layers.Dense(hp.Int("units", 2, 4), activation="relu")
    output = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Sequential([keras.Input((4,)), hidden, output])
    model.compile(loss="binary_crossentropy", optimizer="adam")
    return model


def main():
    x = np.random.default_rng(0).normal(size=(200, 4)).astype("float32")
    tuner = hpo.Tuner(build_model, max_trials=1, directory=".", project_name="in_main")
    summary = tuner.search(x, x[:, 0] > 0, validation_split=0.25, epochs=1, verbose=0)
    log("searched")
    print("finished", summary.finished, "failed", summary.failed)


if __name__ == "__main__":
    main()
"""


def test_the_callable_packages_pickle_by_name() -> None:
    import cloudpickle

    for package in (hpo.search, hpo.ensemble):
        assert pickle.loads(pickle.dumps(package)) is package
        assert pickle.loads(cloudpickle.dumps(package)) is package


def test_a_search_inside_the_scripts_main_function_runs(tmp_path: Path) -> None:
    """The usual script layout, `def main(): ... tuner.search(...)`: the script's functions
    travel to the trials (to be registered with Keras there), `main` with them, and cloudpickle
    sent `hpo.search` along as a module `main` uses, which it could not pickle: every search
    was refused. A helper it cannot pickle (its globals an open file) is left behind, named."""
    (tmp_path / "script.py").write_text(MAIN_FUNCTION_SCRIPT)
    result = run_in(tmp_path, [sys.executable, "script.py"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["finished 1 failed 0"]
    assert result.stderr.count("__main__>log is not sent to the trial processes") == 1


FAMILY_IN_SCRIPT = """
import hpo


def build(hp):
    import keras

    inputs = keras.Input(hp.get("image_shape"))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(hp.get("classes"), activation="softmax")(x))


with open("s.toml", "w") as study:
    study.write('name = "here"\\ntask = "images"\\nn_trials = 1\\n')
    study.write('families = {{ mine = "script:build" }}\\n')
    study.write('data = {{ path = "{data}", val_size = 24 }}\\n')
try:
    hpo.search("s.toml")
except hpo.HpoError as exc:
    print(exc)
"""


def test_a_family_in_the_script_searching_from_its_top_level_is_refused(
    tmp_path: Path,
) -> None:
    """A study file naming the running script's own function: importing the script would run
    its unguarded search again, inside this one; refused before anything starts."""
    from .tasks.test_images import write_images

    data = write_images(tmp_path / "data", {"train": 10, "test": 3})
    printed = run_user_script(tmp_path, FAMILY_IN_SCRIPT.format(data=data), timeout=300)
    assert printed.strip() == (
        "'families.mine' = 'script:build' is in script.py, which runs this search from its "
        "top level: importing it would run the script, and the search, again. Put the search "
        'under `if __name__ == "__main__":` in script.py, or the family in a module of its own.'
    )
    assert not (tmp_path / "here").exists()


GUARDED_FAMILY_IN_SCRIPT = """
import hpo


def build(hp):
    import keras

    inputs = keras.Input(hp.get("image_shape"))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(hp.get("classes"), activation="softmax")(x))


if __name__ == "__main__":
    with open("s.toml", "w") as study:
        study.write('name = "here"\\ntask = "images"\\nn_trials = 1\\n')
        study.write('families = {{ mine = "script:build" }}\\n')
        study.write('data = {{ path = "{data}", val_size = 24 }}\\n')
        study.write('training = {{ max_epochs = 1, chance_epochs = 0 }}\\n')
        study.write('space = {{ family = ["mine"] }}\\n')
    summary = hpo.search("s.toml")
    print("finished", summary.finished, "failed", summary.failed)
    result = hpo.ensemble("s.toml", top=1)
    print("ensemble.keras", (result.out_dir / "ensemble.keras").is_file())
"""


def test_a_family_in_the_script_searching_under_its_main_guard_runs(tmp_path: Path) -> None:
    """The same study file, the search under `if __name__ == "__main__":`: importing the
    script runs nothing of the search, so its family is searched and ensembled. It was refused
    in the process that checks the family's default model, whose multiprocessing start-up
    (`python -c ...`, line 1, as `__main__`) was taken for the script's unguarded top level."""
    from .tasks.test_images import write_images

    data = write_images(tmp_path / "data", {"train": 10, "test": 3})
    printed = run_user_script(tmp_path, GUARDED_FAMILY_IN_SCRIPT.format(data=data), timeout=300)
    lines = printed.splitlines()
    assert "finished 1 failed 0" in lines, printed
    assert lines[-1] == "ensemble.keras True", printed


def test_kerastuners_compile_overrides_and_max_model_size_apply_to_every_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KerasTuner's `Tuner(optimizer=, loss=, metrics=, max_model_size=)` (its "tailor the
    search space" guide): each model is compiled again with them, and one larger than
    `max_model_size` is rejected (its trial pruned); `tune_new_entries=False` leaves the
    others out of the search space summary. hpo refused these arguments."""
    import keras
    import keras_tuner

    def build_model(hp: Any) -> Any:
        model = keras.Sequential([keras.Input((8,))])
        model.add(keras.layers.Dense(hp.Int("units", 2, 32, step=30), activation="relu"))
        model.add(keras.layers.Dense(2, activation="softmax"))
        rate = hp.Choice("learning_rate", [1e-3, 1e-2])
        model.compile(
            keras.optimizers.SGD(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        return model

    x, y = _data(200, 0)
    tuner = hpo.Tuner(
        build_model,
        max_trials=4,
        directory=tmp_path,
        project_name="tailored",
        optimizer=keras.optimizers.Adam(0.02),
        loss="categorical_crossentropy",
        max_model_size=100,  # units=2: 24 parameters; units=32: 354
    )
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert {t.params["units"] for t in trials} == {2, 32}
    for trial in trials:
        if trial.params["units"] == 32:
            assert trial.state == TrialState.PRUNED
            assert "Oversized model: 354 parameters" in trial.user_attrs["prune_reason"]
        elif "duplicate_of" in trial.user_attrs:  # drew a trained trial's values again
            assert trial.state == TrialState.PRUNED
        else:
            assert trial.state == TrialState.COMPLETE
    [model] = tuner.get_best_models(1)
    assert model.loss == "categorical_crossentropy"
    # Search took class indices and gave the loss one-hot rows; evaluate takes the loss's form.
    assert np.all(np.isfinite(model.evaluate(x, keras.utils.to_categorical(y, 2), verbose=0)))
    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)

    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [1e-3, 1e-2])
    hpo.Tuner(
        build_model,
        directory=tmp_path,
        project_name="few",
        hyperparameters=hp,
        tune_new_entries=False,
    ).search_space_summary()
    printed = capsys.readouterr().out
    assert "Default search space size: 1\nlearning_rate (Choice)" in printed
    assert "units" not in printed


def test_kerastuners_distributed_guide_search_arguments_are_accepted_with_warnings(
    tmp_path: Path,
) -> None:
    """KerasTuner's distributed-tuning guide passes `steps_per_epoch`, `validation_steps` and
    an EarlyStopping callback to `search`, and a distribution strategy to its tuner: hpo
    warns that it trains and scores whole epochs, and searches (they were refused). A `fit`
    argument nobody passes to a search (`initial_epoch`) is still an error."""
    import keras
    import tensorflow as tf

    tuner = hpo.Tuner(
        hypermodel=_hypermodel(),
        objective="val_accuracy",
        max_epochs=2,
        factor=3,
        hyperband_iterations=1,
        distribution_strategy=tf.distribute.MirroredStrategy(),
        directory=tmp_path,
        project_name="distributed",
        overwrite=True,
        max_trials=1,
    )
    x, y = _data(200, 0)
    x_val, y_val = _data(100, 1)
    with pytest.warns(UserWarning) as warned:
        tuner.search(
            x,
            y,
            steps_per_epoch=600,
            validation_data=(x_val, y_val),
            validation_steps=100,
            callbacks=[keras.callbacks.EarlyStopping("val_accuracy")],
            verbose=0,
        )
    messages = [str(w.message) for w in warned]
    assert "hpo.Tuner.search does not pass steps_per_epoch= to fit: each epoch trains on " in (
        "\n".join(messages)
    )
    assert any(m.startswith("hpo.Tuner.search does not pass validation_steps=") for m in messages)
    [trial] = tuner.study().optuna_study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["epochs"] <= 2
    with pytest.raises(ConfigError, match=r"got initial_epoch=1\. hpo batches"):
        tuner.search(x, y, validation_data=(x_val, y_val), initial_epoch=1, verbose=0)


def test_kerastuners_fatal_error_from_a_fit_stops_the_search_and_is_raised_again(
    tmp_path: Path,
) -> None:
    """KerasTuner's failed-trials guide catches `keras_tuner.errors.FatalError` around
    `search`: raised in a trial's process (here by the hypermodel's `fit`, a subclass of it),
    it stops the search and `search` raises it again, of the same class, after the trials
    before it were kept."""
    import keras
    import keras_tuner

    class Stopping(keras_tuner.HyperModel):
        def build(self, hp: Any) -> Any:
            model = keras.Sequential([keras.layers.Dense(hp.Int("units", 2, 4, step=2))])
            model.add(keras.layers.Dense(1, activation="sigmoid"))
            model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
            return model

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            if hp.Int("units", 2, 4, step=2) == 4:
                raise keras_tuner.errors.FatalRuntimeError("4 units: stop")
            return model.fit(*args, **kwargs)

    x, y = _data(200, 0)
    tuner = hpo.Tuner(Stopping(), max_trials=6, directory=tmp_path, project_name="fatal")
    with pytest.raises(keras_tuner.errors.FatalRuntimeError, match=r"4 units: stop.*stops"):
        tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    states = [t.state for t in tuner.study().optuna_study.get_trials()]
    assert states[-1] == TrialState.FAIL and states.count(TrialState.FAIL) == 1
    assert len(states) < 6


TORCH_MODULE_SCRIPT = """
import os

os.environ["KERAS_BACKEND"] = "torch"
import keras
import numpy as np
import torch

import hpo


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 8)

    def forward(self, x):
        return torch.relu(self.lin(x))


def build_model(hp):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.TorchModuleWrapper(Block()),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
tuner = hpo.Tuner(build_model, max_trials=1, directory=".", project_name="torch")
try:
    tuner.search(x, (x[:, 0] > 0).astype("int64"), validation_split=0.25, epochs=1, verbose=0)
except hpo.HpoError as exc:
    print(exc)
"""


def test_a_torch_module_wrapper_is_refused_naming_why_and_the_fix(tmp_path: Path) -> None:
    """Keras's TorchModuleWrapper pickles its torch module into the .keras file, which only an
    unsafe load runs; hpo loads checkpoints as data, so the search stops before any trial,
    saying so (it gave the generic advice on get_config)."""
    printed = run_user_script(tmp_path, TORCH_MODULE_SCRIPT, timeout=300)
    assert "its keras.layers.TorchModuleWrapper (torch_module_wrapper) stores the torch " in (
        printed
    )
    assert "Write the module as Keras layers" in printed


SESSION_SETTINGS_SCRIPT = """
import keras
import numpy as np

import hpo

# Set at run time, as a notebook's cell sets them: trial processes never run this code.
keras.config.set_image_data_format("channels_first")
keras.config.set_epsilon(1e-5)
keras.mixed_precision.set_global_policy("mixed_bfloat16")


def build_model(hp):
    assert keras.config.image_data_format() == "channels_first", "data format lost"
    assert keras.config.epsilon() == 1e-5, "epsilon lost"
    # No convolution: TensorFlow's CPU Conv2D refuses channels_first on some machines ("only
    # supports the NHWC tensor format on the CPU", on an AVX2 AMD EPYC; it ran on others);
    # pooling over the data format's axes runs everywhere.
    model = keras.Sequential([
        keras.Input((3, 8, 8)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
        keras.layers.Dense(2, activation="softmax", dtype="float32"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


rng = np.random.default_rng(0)
x = rng.random((120, 3, 8, 8)).astype("float32")
y = (x[:, 0].mean(axis=(1, 2)) > x[:, 1].mean(axis=(1, 2))).astype("int64")
tuner = hpo.Tuner(build_model, max_trials=1, directory=".", project_name="session")
tuner.search(x[:90], y[:90], validation_data=(x[90:], y[90:]), epochs=1, verbose=0)
[trial] = tuner.study().optuna_study.get_trials()
print("state", trial.state.name, trial.user_attrs["precision"])
pool, dense = tuner.get_best_models(1)[0].layers[:2]
print("pool", pool.data_format, dense.dtype_policy.name, tuple(dense.kernel.shape))
"""


def test_a_sessions_keras_settings_reach_the_trials_as_kerastuner_builds_under_them(
    tmp_path: Path,
) -> None:
    """A notebook sets channels_first, an epsilon and mixed precision at run time: KerasTuner
    builds every model under them in that process, so hpo's trial processes build under
    them too (they were built channels_last, in float32, with the default epsilon)."""
    printed = run_user_script(tmp_path, SESSION_SETTINGS_SCRIPT, timeout=300)
    assert "state COMPLETE mixed_bfloat16" in printed
    # Channels first: the pooling keeps 3 channels (channels last, it kept 8 columns).
    assert re.search(r"pool channels_first mixed_bfloat16 \(3, [48]\)", printed), printed


GLOBAL_OBJECTS_SCRIPT = """
import keras
import numpy as np
from keras import layers, ops
import hpo


class Jitter(layers.Layer):
    def call(self, x):
        return x


class WeightedBCE(keras.losses.Loss):
    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
        return keras.losses.binary_crossentropy(y_true, y_pred)


class L1Half(keras.regularizers.Regularizer):
    def __init__(self, strength=0.01):
        self.strength = strength

    def __call__(self, w):
        return self.strength * ops.sum(ops.abs(w)) * 0.5

    def get_config(self):
        return {"strength": self.strength}


# Made once, at the top level, as Keras's tutorials make an augmentation block.
jitter = Jitter()
loss_fn = WeightedBCE()


def build_model(hp):
    inputs = keras.Input(shape=(8,))
    x = jitter(inputs)
    x = layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu",
                     kernel_regularizer=L1Half(0.01))(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss=loss_fn, metrics=["accuracy"])
    return model


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    tuner = hpo.Tuner(build_model, max_trials=1, directory=".", project_name="globals")
    tuner.search(x[:90], y[:90], validation_data=(x[90:], y[90:]), epochs=1, verbose=0)
    [trial] = tuner.study().optuna_study.get_trials()
    print("state", trial.state.name)
    print("layers", [type(layer).__name__ for layer in tuner.get_best_models(1)[0].layers])
"""


def test_a_scripts_global_layer_and_loss_objects_and_its_regularizer_reach_the_trials(
    tmp_path: Path,
) -> None:
    """A layer and a loss made once at a script's (or notebook's) top level and used by
    build_model, and a regularizer class of its own: every trial process died while starting
    (Keras unpickles an instance by its class's registered name, registered only after), and
    the regularizer was refused as a class Keras could not load back."""
    printed = run_user_script(tmp_path, GLOBAL_OBJECTS_SCRIPT, timeout=300)
    assert "state COMPLETE" in printed, printed
    assert "'Jitter'" in printed, printed


def test_a_project_resumed_under_another_image_data_format_is_refused(tmp_path: Path) -> None:
    """A notebook searched under channels_first, then ran again under channels_last: the new
    trials would read an image's rows as its channels beside the old ones, and
    get_best_models would build the old trials' models the other way. Refused before any
    trial, naming the setting and the way out (it was searched on)."""
    import keras

    x, y = _data(120, 0)
    try:
        keras.config.set_image_data_format("channels_first")
        _tuner(tmp_path, 1).search(x, y, validation_split=0.25, epochs=1, verbose=0)
        keras.config.set_image_data_format("channels_last")
        tuner = _tuner(tmp_path, 2)
        with pytest.raises(
            ConfigError,
            match=r"keras\.image_data_format: 'channels_first' -> 'channels_last'.*overwrite=True",
        ):
            tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert len(tuner.study().optuna_study.get_trials()) == 1
    # Run as before, it searches on.
    keras.config.set_image_data_format("channels_first")
    try:
        _tuner(tmp_path, 2).search(x, y, validation_split=0.25, epochs=1, verbose=0)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert len(tuner.study().optuna_study.get_trials()) == 2


def test_a_model_that_does_not_load_on_this_backend_names_the_trials_backend() -> None:
    """A project searched on torch (a layer calling torch), reopened in a TensorFlow session:
    get_best_models said "cannot load checkpoint" and ensemble "no usable checkpoint", as if
    the checkpoints were damaged, and never named the backends."""
    import types

    import keras

    from hpo.contract import CheckpointError
    from hpo.errors import StoreError
    from hpo.tuner import _on_recorded_backend

    here = keras.config.backend()
    other = "torch" if here != "torch" else "jax"

    def study(backend: str) -> Any:
        attrs = {"hpo_config": {"training": {"backend": backend}}}
        return types.SimpleNamespace(optuna_study=types.SimpleNamespace(user_attrs=attrs))

    for error in (CheckpointError, StoreError):
        with pytest.raises(error) as raised, _on_recorded_backend(study(other)):
            raise error("trial 0: cannot load checkpoint x.keras")
        assert str(raised.value).startswith("trial 0: cannot load checkpoint x.keras The study's")
        assert f"trained on {other}, and Keras runs on {here}" in str(raised.value)
        assert f"KERAS_BACKEND={other}" in str(raised.value)
    with (
        pytest.raises(CheckpointError, match=r"^trial 0: damaged$"),
        _on_recorded_backend(study(here)),
    ):
        raise CheckpointError("trial 0: damaged")  # on its own backend: damaged indeed


def test_a_sessions_dtype_policy_is_the_trials_precision_where_mixed_else_named() -> None:
    import keras

    from hpo.precision import Precision
    from hpo.tuner import _session_policy

    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        assert _session_policy() is Precision.MIXED_FLOAT16
        keras.mixed_precision.set_global_policy("float32")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _session_policy() is None
        keras.mixed_precision.set_global_policy("float64")
        with pytest.warns(UserWarning, match=r"dtype policy is 'float64'.*dtype='float64'"):
            assert _session_policy() is None
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_model_that_cannot_be_evaluated_is_refused_before_any_trial(tmp_path: Path) -> None:
    """Keras's "customizing fit()" guide: a model with a train_step of its own, compiled
    without a loss, trains but cannot be evaluated (Keras: "No loss to compute"). hpo scores
    every epoch by evaluation: refused before any trial, naming the fix; each trial failed."""
    import keras
    import tensorflow as tf

    class CustomModel(keras.Model):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_tracker = keras.metrics.Mean(name="loss")

        def train_step(self, data: Any) -> Any:
            x, y = data
            with tf.GradientTape() as tape:
                loss = keras.losses.mean_squared_error(y, self(x, training=True))
            gradients = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(gradients, self.trainable_variables)
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    def build_model(hp: Any) -> Any:
        inputs = keras.Input(shape=(8,))
        model = CustomModel(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="adam")
        return model

    x = np.random.default_rng(0).random((100, 8)).astype("float32")
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path, project_name="steps")
    with pytest.raises(ConfigError, match=r"cannot be evaluated .*No loss to compute.*test_step"):
        tuner.search(x, x.sum(axis=1) + 0.5, validation_split=0.25, epochs=1, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    assert all(t.state == TrialState.WAITING for t in trials)  # none ran


def test_optunas_failed_trial_tracebacks_give_way_to_hpos_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed trial is one line of hpo's (the error and the trial's log, which holds its
    traceback); Optuna's warning with this process's traceback, which pointed into hpo, is
    left out unless HPO_VERBOSE=1 (KerasTuner's failed-trials guide printed three)."""
    import logging

    def build_model(hp: Any) -> Any:
        import keras

        units = hp.Int("units", 2, 4, step=2)
        if units == 4:
            raise ValueError("Model too large!")
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(units)])
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    x, y = _data(120, 0)
    records = Records()
    logging.getLogger("optuna").addHandler(records)
    try:
        for verbose, project in (("0", "quiet"), ("1", "verbose")):
            monkeypatch.setenv("HPO_VERBOSE", verbose)
            tuner = hpo.Tuner(build_model, max_trials=4, directory=tmp_path, project_name=project)
            tuner.search(x, y, validation_split=0.25, epochs=1)
            failed = [t for t in tuner.study().optuna_study.get_trials() if t.state.name == "FAIL"]
            assert failed, "no trial sampled units=4"
            said = [m for m in records.messages if " failed with parameters" in m]
            assert len(said) == (0 if verbose == "0" else len(failed))
            printed = capsys.readouterr().out
            assert f"trial {failed[0].number:4d} build_model FAIL" in printed
            assert "(ValueError: Model too large! (log: " in printed
    finally:
        logging.getLogger("optuna").removeHandler(records)


def test_a_trials_model_that_loads_back_as_another_stops_the_search_before_it_is_stored(
    tmp_path: Path,
) -> None:
    """A subclassed keras.Model whose argument the hypermodel sets: Keras records the
    argument's default, not the value given, so a trial's checkpoint would load as another
    model. The default model's check passes (its value is the default); the first trial given
    the other value stops the search, naming the fix, and stores no member."""

    def build_model(hp: Any) -> Any:
        import keras

        class Classifier(keras.Model):
            def __init__(self, activation="relu"):
                super().__init__()
                self.hidden = keras.layers.Dense(8, activation=activation)
                self.head = keras.layers.Dense(1, activation="sigmoid")

            def call(self, x):
                return self.head(self.hidden(x))

        model = Classifier(activation=hp.Choice("activation", ["relu", "tanh"]))
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    x, y = _data(256, 0)
    tuner = hpo.Tuner(build_model, max_trials=4, directory=tmp_path, project_name="reload")
    with pytest.raises(ConfigError, match=r"loads back from a \.keras file as another model"):
        tuner.search(x, y, validation_split=0.25, epochs=1, batch_size=32, verbose=0)
    trials = tuner.study().optuna_study.get_trials()
    refused = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.params["activation"] for t in refused] == ["tanh"]
    assert (
        "give Classifier and your layers such a get_config()"
        in refused[0].user_attrs["fail_reason"]
    )
    assert all(t.params["activation"] == "relu" for t in trials if t.state == TrialState.COMPLETE)
    assert "checkpoint_artifact_id" not in refused[0].user_attrs


def test_a_layer_class_defined_inside_build_model_loads_for_best_models_and_the_ensemble(
    tmp_path: Path,
) -> None:
    """The class exists in this process only once build_model has run: hpo builds before it
    loads what the trials stored."""

    def build_model(hp: Any) -> Any:
        import keras

        class Gate(keras.layers.Layer):
            def __init__(self, units):
                super().__init__()
                self.proj = keras.layers.Dense(units)
                self.gate = keras.layers.Dense(units, activation="sigmoid")

            def call(self, x):
                return self.proj(x) * self.gate(x)

        inputs = keras.Input(shape=(8,))
        outputs = keras.layers.Dense(1, activation="sigmoid")(Gate(hp.Int("units", 4, 8))(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    x, y = _data(256, 0)
    tuner = hpo.Tuner(build_model, max_trials=2, directory=tmp_path, project_name="local")
    tuner.search(x[:200], y[:200], validation_split=0.25, epochs=1, batch_size=32, verbose=0)

    [best] = tuner.get_best_models(1)
    assert type(best.layers[1]).__name__ == "Gate"
    assert tuner.ensemble(top=2).predict(x[200:]).shape == (56,)


@pytest.mark.slow
def test_data_deleted_while_the_search_runs_stop_it_and_the_next_search_goes_on(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "gone" / "cache"
    builds = tmp_path / "builds"

    def build_model(hp: Any) -> Any:
        import shutil

        import keras

        # The third build (the checks before any trial build it too) deletes the study's copy
        # of the data, as a cache cleaned up by hand would, while trials are left to run.
        with builds.open("a") as log:
            log.write("x")
        if len(builds.read_text()) == 3:
            shutil.rmtree(cache)
        hidden = keras.layers.Dense(hp.Int("units", 4, 8), activation="relu")
        model = keras.Sequential(
            [keras.Input((8,)), hidden, keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    x, y = _data(256, 0)

    def search() -> hpo.Tuner:
        tuner = hpo.Tuner(build_model, max_trials=4, directory=tmp_path, project_name="gone")
        tuner.search(x, y, validation_split=0.25, epochs=1, batch_size=32, verbose=0)
        return tuner

    with pytest.raises(ConfigError, match=r"prepared data .* went away.*Run the search again"):
        search()
    trials = hpo.Tuner(build_model, directory=tmp_path, project_name="gone").study()
    states = [t.state for t in trials.optuna_study.get_trials()]
    # The trial that found its data gone fails, and none after it ran.
    assert states.count(TrialState.FAIL) == 1 and states[-1] == TrialState.FAIL, states
    assert len(states) < 4, states
    states = [t.state for t in search().study().optuna_study.get_trials()]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 4, states


def test_why_a_model_is_not_built_again_is_cut_at_a_sentence_not_within_a_word() -> None:
    from hpo.tuner import _first_lines

    said = "The value of the parameter 'drop' is not found. " * 20
    cut = _first_lines(said)
    assert cut.endswith("is not found.")
    assert len(cut) <= 600
    assert _first_lines("short") == "short"


BUILD_MODEL = """
import os
os.environ["KERAS_BACKEND"] = "{backend}"
import keras
import numpy as np

import hpo


def build_model(hp):
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(hp.Int("units", 2, 4, step=2), activation="relu"),
        keras.layers.Dense(1, activation="sigmoid", dtype="float32"),
    ])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model
"""

JAX_SCRIPT = (
    BUILD_MODEL.format(backend="jax")
    + """

if __name__ == "__main__":
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    tuner = hpo.Tuner(build_model, objective="val_accuracy", max_trials=2, directory="runs")
    tuner.search(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=1, verbose=0)
    ensemble = tuner.ensemble(top=2)
    try:
        ensemble.export("served", formats=("savedmodel", "onnx"))
    except hpo.ConfigError as exc:
        print(exc)
    print(ensemble.export("served"))
"""
)

# What the refusal above tells to do: the same Tuner, made again on TensorFlow, no search.
TENSORFLOW_SCRIPT = (
    BUILD_MODEL.format(backend="tensorflow")
    + """

if __name__ == "__main__":
    tuner = hpo.Tuner(build_model, objective="val_accuracy", max_trials=2, directory="runs")
    print(tuner.ensemble(top=2).export("served", formats=("savedmodel", "onnx")))
"""
)


def test_serving_formats_asked_of_an_ensemble_on_jax_name_a_way_to_them_that_works(
    tmp_path: Path,
) -> None:
    # TensorFlow writes a SavedModel, and Keras cannot switch backends in a running process.
    # The refusal named Keras's own export in a process on TensorFlow, whose ONNX file of
    # mixed_bfloat16 models ONNX Runtime cannot load (a MatMul of float16 and bfloat16).
    printed = run_user_script(tmp_path, JAX_SCRIPT, timeout=600).strip().splitlines()
    assert printed[-2].startswith(
        "formats ['onnx', 'savedmodel'] are written by TensorFlow, and Keras runs on jax in "
        "this process."
    )
    assert "KERAS_BACKEND=tensorflow, make the same hpo.Tuner" in printed[-2]
    assert ".export(path, formats=('onnx', 'savedmodel'))" in printed[-2]
    assert printed[-1] == "served/ensemble.keras"
    # That way writes both, each loaded back by its runtime and checked (the ONNX file as a
    # float32 copy of the bfloat16 members).
    printed = run_user_script(tmp_path, TENSORFLOW_SCRIPT, timeout=600).strip().splitlines()
    assert printed[-1] == "served"
    assert (tmp_path / "served" / "ensemble.onnx").is_file()
    assert (tmp_path / "served" / "saved_model" / "saved_model.pb").is_file()


def test_a_study_folder_that_cannot_be_written_is_named_before_the_arrays_go_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `directory="."` in a read-only working folder: the arrays were written first, and their
    # PermissionError ('default_dir') named neither the folder nor the fix.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file where the study folder should be")
    tuner = hpo.Tuner(_hypermodel(), max_trials=1, directory=".", project_name="taken")
    x, y = _data(64, 0)
    with pytest.raises(ConfigError, match="is not writable") as raised:
        tuner.search(x, y, validation_split=0.25, epochs=1, verbose=0)
    assert f"the study folder {tmp_path / 'taken'} is not writable" in str(raised.value)
    assert "Tuner's directory=" in str(raised.value)


@pytest.mark.slow
def test_a_quiet_search_prints_nothing_of_its_other_workers_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Two workers, as on a machine of two GPUs (absent here: the trials run on the CPU). Only
    # the search's own process was silenced: the helper printed its trial lines, and its
    # TensorFlow its start-up notices, into the notebook's cell.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    import keras

    keras.ops.zeros(1)  # this process's own start-up notices, printed before the cell as well
    capfd.readouterr()
    x, y = _data(128, 0)
    summary = _tuner(tmp_path, 4).search(x, y, validation_split=0.25, epochs=1, verbose=0)
    assert summary.finished == 4
    out, err = capfd.readouterr()
    assert out == ""
    assert "absl" not in err and "I0000" not in err


def test_seed_none_as_keras_tuner_defaults_it_is_the_default_seed(tmp_path: Path) -> None:
    # KerasTuner's tuners take seed=None; hpo.Tuner raised a TypeError comparing it.
    tuner = hpo.Tuner(
        _hypermodel(), objective="val_accuracy", max_trials=1, directory=tmp_path, seed=None
    )
    assert tuner.config.sampler.seed == 0


def test_overwrite_refuses_a_project_a_live_search_runs_in(tmp_path: Path) -> None:
    # It deleted the folder under a search of another process, each of whose trials after
    # failed ("no study database", then "damaged" once the new one stood).
    import dataclasses
    import subprocess

    import optuna

    from hpo.config import sqlite_url
    from hpo.search.identity import WorkerIdentity

    (tmp_path / "synthetic").mkdir()
    study = optuna.create_study(
        study_name="synthetic", storage=sqlite_url(tmp_path / "synthetic" / "study.db")
    )
    me = WorkerIdentity.current()
    me.record(study.ask())  # a trial this live process runs
    with pytest.raises(ConfigError, match=r"a search is running in it \(trial 0, worker .*Stop"):
        _tuner(tmp_path, 1, overwrite=True)
    assert (tmp_path / "synthetic" / "study.db").is_file()
    # Searches killed left their trials RUNNING: the project goes. One killed before it
    # recorded its worker, and one of an older hpo (host:pid alone), were refused for good.
    study.tell(0, state=optuna.trial.TrialState.FAIL)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dataclasses.replace(me, pid=gone.pid).record(study.ask())
    study.ask()
    study.ask().set_user_attr("worker", f"{me.host}:{gone.pid}")
    _tuner(tmp_path, 1, overwrite=True)
    assert not (tmp_path / "synthetic").exists()
    # A search preparing its data (or between trials) holds no RUNNING trial: its run lock
    # tells it is there.
    from hpo.search.turns import RUN_LOCK_NAME, SearchRun, lock_file

    (tmp_path / "synthetic").mkdir()
    url = sqlite_url(tmp_path / "synthetic" / "study.db")
    optuna.create_study(study_name="synthetic", storage=url)
    run_lock = lock_file(url, tmp_path, RUN_LOCK_NAME)
    with SearchRun(run_lock):
        with pytest.raises(ConfigError, match=r"a search of this machine is running in it \(prep"):
            _tuner(tmp_path, 1, overwrite=True)
        assert (tmp_path / "synthetic" / "study.db").is_file()
    _tuner(tmp_path, 1, overwrite=True)
    assert not (tmp_path / "synthetic").exists()


def test_max_trial_minutes_is_a_tuner_argument_as_the_budget_messages_name_it(
    tmp_path: Path,
) -> None:
    # "a larger budget or max_trial_minutes gives trials room": hpo.Tuner took no such argument.
    tuner = _tuner(tmp_path, 1, budget="10m", max_trial_minutes=3)
    assert tuner.config.max_trial_minutes == 3
    for bad in (True, "5", 0):
        with pytest.raises(ConfigError, match=r"^max_trial_minutes must be a number of minutes"):
            _tuner(tmp_path, 1, max_trial_minutes=bad)


def test_a_budget_without_max_trials_shows_no_trial_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hpo.Tuner(build, budget="20s")`: the search runs trials until the budget ends, and
    said "0 finished, 1000000 to go" (the placeholder count it runs to); KerasTuner's oracle
    gave max_trials=1000000 and trial ids of 7 digits."""
    x, y = _data(64, 0)
    # The budget ends the search: its first trial starts (or is pruned as not fitting) whatever
    # the load, and the line is printed before it.
    tuner = hpo.Tuner(_hypermodel(), budget="20s", directory=tmp_path, project_name="budget")
    assert tuner.oracle.max_trials is None
    assert _tuner(tmp_path, 3).oracle.max_trials == 3
    tuner.search(x, y, validation_split=0.25, epochs=1, verbose=1)
    printed = capsys.readouterr().out
    assert "Study 'budget': 0 finished, more until the budget ends, 1 worker(s)" in printed
    assert "1000000" not in printed
    assert min(tuner.oracle.trials) == "00"


@pytest.mark.parametrize("max_trials", [0, -1, 2.5])
def test_max_trials_below_one_is_named_as_the_tuner_takes_it(
    tmp_path: Path, max_trials: object
) -> None:
    # "'n_trials' must be >= 1, got 0": the study file's key, which a Tuner user never wrote.
    with pytest.raises(ConfigError, match=r"^max_trials must be a whole number >= 1, got"):
        _tuner(tmp_path, max_trials)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "value", "wanted"),
    [
        ("max_epochs", "10", "a whole number >= 1"),
        ("num_initial_points", 2.5, "a whole number >= 0"),
        ("max_consecutive_failed_trials", "3", "a whole number >= 1"),
        ("max_consecutive_failed_trials", 0, "a whole number >= 1"),
        ("seed", "1", "a whole number >= 0"),
        ("max_model_size", 0, "a whole number >= 1"),
        ("budget", [60], "a duration"),
    ],
)
def test_numeric_arguments_of_another_type_are_named_with_the_type_wanted(
    tmp_path: Path, argument: str, value: object, wanted: str
) -> None:
    """max_epochs="10" was a raw TypeError ('<' between str and int), and
    max_consecutive_failed_trials=0 silently became 5 (KerasTuner's 0 ends its search with
    an error once a trial does not fail)."""
    given = re.escape(repr(value))
    with pytest.raises(ConfigError, match=rf"^{argument} must be {wanted}.*, got {given}"):
        hpo.Tuner(_hypermodel(), directory=tmp_path, **{argument: value})
    assert _tuner(tmp_path, 1, max_consecutive_failed_trials=2).config.max_failures == 2


def test_overwrite_refuses_a_folder_that_holds_what_no_tuner_wrote_and_keeps_it(
    tmp_path: Path,
) -> None:
    # A directory= or project_name= mistyped as the user's own folder: overwrite=True deleted it.
    mine = tmp_path / "synthetic"
    (mine / "wedding").mkdir(parents=True)
    (mine / "wedding" / "01.jpg").write_bytes(b"a photo")
    (mine / "notes.txt").write_text("mine")
    (mine / "study.db").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"holds what neither .*\(notes\.txt, wedding\).*directo"):
        _tuner(tmp_path, 1, overwrite=True)
    assert (mine / "wedding" / "01.jpg").read_bytes() == b"a photo"
    # What a search writes there, and what KerasTuner writes in a project, is deleted.
    shutil.rmtree(mine)
    x, y = _data(64, 0)
    _tuner(tmp_path, 1).search(x, y, validation_split=0.25, epochs=1, verbose=0)
    (mine / "trial_03").mkdir()
    for name in ("oracle.json", "tuner0.json"):
        (mine / name).write_text("{}")
    _tuner(tmp_path, 1, overwrite=True)
    assert not mine.exists()
