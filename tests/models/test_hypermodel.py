"""KerasTuner hyperparameters on Optuna, define-by-run, and families loaded from import paths."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.errors import ConfigError, SearchStopped
from hpo.models.external import load_families
from hpo.models.hypermodel import (
    HyperModelFamily,
    OptunaHyperParameters,
    as_hypermodel,
    declare,
    returned_score,
    to_distribution,
)
from hpo.models.portable import family_name
from hpo.oracle import trial_hyperparameters

if TYPE_CHECKING:
    from pathlib import Path


def _every_kind(hp: keras_tuner.HyperParameters, seen: dict[str, Any]) -> None:
    seen["int"] = hp.Int("int", 1, 9, step=2)
    seen["int_log"] = hp.Int("int_log", 8, 512, sampling="log")
    seen["int_log_step"] = hp.Int("int_log_step", 16, 256, step=2, sampling="log")
    seen["float"] = hp.Float("float", 0.0, 0.5, step=0.1)
    seen["float_log"] = hp.Float("float_log", 1e-4, 1e-1, sampling="log")
    seen["float_reverse"] = hp.Float("float_reverse", 0.9, 0.999, sampling="reverse_log")
    seen["choice"] = hp.Choice("choice", ["relu", "gelu", "tanh"])
    seen["ordered"] = hp.Choice("ordered", [32, 64, 128], ordered=True)
    seen["boolean"] = hp.Boolean("boolean")
    seen["fixed"] = hp.Fixed("fixed", "always")


EXPECTED = {
    "int": IntDistribution(1, 9, step=2),
    "int_log": IntDistribution(8, 512, log=True),
    "int_log_step": CategoricalDistribution([16, 32, 64, 128, 256]),
    "float": FloatDistribution(0.0, 0.5, step=0.1),
    "float_log": FloatDistribution(1e-4, 1e-1, log=True),
    "float_reverse": FloatDistribution(0.9, 0.999),
    "choice": CategoricalDistribution(["relu", "gelu", "tanh"]),
    "ordered": CategoricalDistribution([32, 64, 128]),
    "boolean": CategoricalDistribution([False, True]),
    "fixed": CategoricalDistribution(["always"]),
}


TYPES = {
    "int": int,
    "int_log": int,
    "int_log_step": int,
    "float": float,
    "float_log": float,
    "float_reverse": float,
    "choice": str,
    "ordered": int,
    "boolean": bool,
    "fixed": str,
}


def test_each_distribution_declares_the_kerastuner_parameter_that_maps_back_to_it() -> None:
    # get_best_hyperparameters() gave values with an empty space.
    hp = keras_tuner.HyperParameters()
    held = {name: i for i, name in enumerate(EXPECTED)}  # a trial's values, whatever they are
    hp.values.update(held)
    for name, distribution in EXPECTED.items():
        declare(hp, name, distribution)
    assert {p.name: to_distribution(p) for p in hp.space} == EXPECTED
    assert hp.values == held  # the values held stay
    mixed = keras_tuner.HyperParameters()
    declare(mixed, "mixed", CategoricalDistribution([1, "a"]))  # none in KerasTuner: left out
    assert mixed.space == []


def test_every_kind_maps_to_its_distribution_and_the_sampled_values_reach_build() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        seen: dict[str, Any] = {}
        hp = OptunaHyperParameters(
            lambda name, dist, default, trial=trial: trial._suggest(name, dist)
        )
        _every_kind(hp, seen)
        assert trial.params == seen
        # `==` holds between 16.0 and 16: build gets the types KerasTuner gives it.
        assert {name: type(value) for name, value in seen.items()} == TYPES
        assert trial.distributions == EXPECTED
        # KerasTuner's own view of the parameters agrees: hp.values holds what build used.
        assert hp.values == seen
        study.tell(trial, 0.0)


def test_conditional_scopes_sample_only_active_parameters() -> None:
    def build(hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kind = hp.Choice("kind", ["mlp", "cnn"])
        with hp.conditional_scope("kind", ["mlp"]):
            units = hp.Int("units", 8, 64)
        with hp.conditional_scope("kind", ["cnn"]):
            filters = hp.Int("filters", 8, 64)
        return {"kind": kind, "units": units, "filters": filters}

    study = optuna.create_study()
    for kind in ("mlp", "cnn"):
        study.enqueue_trial({"kind": kind})
        trial = study.ask()
        hp = OptunaHyperParameters(lambda n, d, default, t=trial: t._suggest(n, d))
        built = build(hp)
        active, inactive = ("units", "filters") if kind == "mlp" else ("filters", "units")
        assert built[inactive] is None and isinstance(built[active], int)
        # A parameter of a scope is named after its conditions (its own Optuna parameter).
        assert set(trial.params) == {"kind", f"{active}[kind={kind}]"}


def test_an_unmappable_hyperparameter_is_a_config_error_naming_it() -> None:
    class Custom(keras_tuner.engine.hyperparameters.HyperParameter):  # type: ignore[misc]
        pass

    hp = OptunaHyperParameters(lambda name, dist, default: default)
    with pytest.raises(ConfigError, match=r"'odd' is a Custom.*hp\.Int, hp\.Float"):
        hp._retrieve(Custom(name="odd", default=1))
    with pytest.raises(ConfigError, match="cannot map"):
        to_distribution(Custom(name="odd", default=1))


def test_family_prefixes_clashing_names_and_reads_fit_arguments() -> None:
    class Model(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return {"units": hp.Int("units", 1, 4), "vocab": hp.get("vocab_size")}

        def fit(
            self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kwargs: Any
        ) -> Any:
            return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32]), verbose=2)

    family = HyperModelFamily("mine", Model(), lambda n: f"mine/{n}" if n == "batch_size" else n)
    trial = optuna.create_study().ask()
    built = family.build_trial(trial, {"vocab_size": 123, "batch_size": 64})
    assert built["vocab"] == 123  # given values are readable with hp.get
    arguments = family.fit_arguments()
    assert arguments == {"batch_size": trial.params["mine/batch_size"]}
    assert set(trial.params) == {"units", "mine/batch_size"}
    # Without a trial (cost estimates), every parameter takes its default.
    assert family.build({"vocab_size": 5}) == {"units": 1, "vocab": 5}


def _fit_returning(after_fit: Any) -> HyperModelFamily:
    """A family whose fit trains with model.fit, then returns `after_fit(model, history)`."""

    class Model(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Int("units", 1, 4)

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            if hasattr(model, "summary"):
                model.summary()  # printing it first is not training it in a loop of its own
            history = model.fit(x, y, validation_data=validation_data, **kwargs)
            return after_fit(model, history)

    family = HyperModelFamily("mine", Model(), lambda n: n)
    family.build_trial(optuna.create_study().ask(), {})
    return family


def _saves_then_returns_history(model: Any, history: Any) -> Any:
    model.save("m.keras")
    model.save_weights("w.weights.h5")
    return history


@pytest.mark.parametrize(
    ("after_fit", "scores"),
    [
        (lambda model, history: history, None),
        (lambda model, history: None, None),
        (_saves_then_returns_history, None),
        (lambda model, history: 0.25, "0.25"),
        (lambda model, history: np.float32(0.5), "np.float32(0.5)"),
        (lambda model, history: [0.25, 0.75], "[0.25, 0.75]"),
        (lambda model, history: {"metric_a": 1.0}, "{'metric_a': 1.0}"),
        (lambda model, history: float(model.evaluate(x=None)), "a score of the trained model"),
        (lambda model, history: min(history.history["val_loss"]), "a score of the trained model"),
    ],
)
def test_a_fit_that_returns_a_score_is_told_from_one_that_saves_or_returns_its_history(
    after_fit: Any, scores: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # KerasTuner's custom objective returns a number or a dict (or computes one from the trained
    # model); saving the model, printing it or returning the History is a fit as Keras's.
    monkeypatch.chdir(tmp_path)
    family = _fit_returning(after_fit)
    family.fit_arguments(np.zeros((4, 2)), np.zeros(4), (np.zeros((2, 2)), np.zeros(2)))
    assert family.returns_score == scores and not family.trains_itself
    assert not list(tmp_path.iterdir())  # the stand-in model saves nothing


def _counts_then_returns_history(model: Any, history: Any) -> Any:
    print(model.count_params(), history.history["loss"])
    return history


@pytest.mark.parametrize(
    ("after_fit", "scores"),
    [
        (_counts_then_returns_history, None),
        (lambda model, history: float(model.evaluate(*history.validation, verbose=0)), "float"),
    ],
)
def test_what_a_fit_that_uses_the_trained_model_returns_is_told_by_running_it(
    after_fit: Any, scores: str | None
) -> None:
    class Model(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            model = keras.Sequential([keras.layers.Dense(hp.Int("units", 1, 4))])
            model.add(keras.layers.Dense(1))
            model.compile("adam", "mse")
            return model

        def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any, **kwargs: Any):
            history = model.fit(x, y, validation_data=validation_data, verbose=0, **kwargs)
            history.validation = validation_data
            return after_fit(model, history)

    family = HyperModelFamily("mine", Model(), lambda n: n)
    model = family.build_trial(optuna.create_study().ask(), {})
    x, y = np.ones((8, 2), "float32"), np.ones(8, "float32")
    family.fit_arguments(x, y, (x, y))
    assert family.returns_score == "a score of the trained model"  # the stand-in cannot tell
    family.settle_returns(model, x, y, (x, y))
    assert family.returns_score is None if scores is None else family.returns_score is not None


def test_a_returned_score_is_read_as_kerastuner_reads_it() -> None:
    assert returned_score(np.float32(0.5)) == 0.5
    assert returned_score(np.array(0.25)) == 0.25
    assert returned_score(keras.ops.convert_to_tensor(0.75)) == 0.75
    assert returned_score([0.25, np.float64(0.75)]) == 0.5  # a list is averaged, as KerasTuner does
    assert returned_score(True) == 1.0
    for value in (None, "0.5", np.zeros(2), [], [0.5, None], {"a": 1.0}, keras.callbacks.History()):
        assert returned_score(value) is None


def test_a_fit_that_tunes_shuffle_passes_it_on(caplog: pytest.LogCaptureFixture) -> None:
    # KerasTuner's "tune data preprocessing" guide, as written: shuffle was sampled, recorded,
    # and then "not used by hpo".
    class Model(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Int("units", 1, 4)

        def fit(self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kwargs: Any):
            return model.fit(*args, shuffle=hp.Boolean("shuffle"), **kwargs)

    for shuffle in (False, True):
        family = HyperModelFamily("mine", Model(), lambda n: n)
        family.build_trial(optuna.trial.FixedTrial({"units": 2, "shuffle": shuffle}), {})
        with caplog.at_level("WARNING"):
            assert family.fit_arguments() == {"shuffle": shuffle}
        assert "not used" not in caplog.text


def test_a_datasets_batch_size_is_the_default_under_what_the_user_sets() -> None:
    # hpo.Tuner.search given a dataset batched by 20 passes that batch size as a default: the
    # search's batch_size= and the hypermodel's own fit come first.
    def build(hp: keras_tuner.HyperParameters) -> Any:
        return hp.Int("units", 1, 4)

    class OwnFit(keras_tuner.HyperModel):  # type: ignore[misc]
        def __init__(self, batch_size: int | None) -> None:
            super().__init__()
            self.batch_size = batch_size

        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Int("units", 1, 4)

        def fit(self, hp: keras_tuner.HyperParameters, model: Any, *args: Any, **kw: Any) -> Any:
            if self.batch_size is not None:
                kw["batch_size"] = self.batch_size
            return model.fit(*args, **kw)

    defaults = {"batch_size": 20}
    for hypermodel, given, expected in [
        (build, {}, 20),
        (build, {"batch_size": 8}, 8),
        (OwnFit(None), {}, 20),
        (OwnFit(None), {"batch_size": 8}, 8),
        (OwnFit(16), {}, 16),
    ]:
        family = HyperModelFamily(
            "mine", hypermodel, lambda n: n, fit_kwargs=given, fit_defaults=defaults
        )
        family.build_trial(optuna.trial.FixedTrial({"units": 2}), {})
        assert family.fit_arguments() == {"batch_size": expected}, (hypermodel, given)


def test_the_up_front_cost_estimate_prices_the_batch_size_the_trials_will_use(
    tmp_path: Path,
) -> None:
    # A dataset batched by 16 (hpo.Tuner's default for its trials): the pre-trial check prices
    # an epoch of 100 rows at 7 optimizer steps, not at hpo's default batch of 64 (2 steps).
    from hpo.config import DataConfig, StudyConfig
    from hpo.models.portable import PortableHypermodel
    from hpo.study import default_params, search_space
    from hpo.tasks import study_task
    from hpo.tasks.arrays import save_study_arrays
    from hpo.training.runner import EstimateJob, estimate_epochs

    def build(hp: keras_tuner.HyperParameters) -> Any:
        hidden = keras.layers.Dense(hp.Int("units", 2, 4), activation="relu")
        model = keras.Sequential(
            [keras.Input((4,)), hidden, keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(140, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    folder = save_study_arrays(tmp_path / "cache", x[:100], y[:100], x[100:], y[100:])
    steps = {}
    for defaults in ({}, {"batch_size": 16}):
        portable = PortableHypermodel(build, {}, None, defaults)
        config = StudyConfig(
            name="s",
            task="arrays",
            families={portable.name: portable.spec},
            study_dir=tmp_path,
            hypermodel=portable,
            data=DataConfig(path=str(folder)),
        )
        task = study_task(config)
        params = default_params(task, search_space(task, config.space))
        [priced] = estimate_epochs(EstimateJob(config=config, data_folder=folder, params=params))
        assert priced.features is not None
        steps[defaults.get("batch_size")] = priced.features.steps
    assert steps == {None: 2, 16: 7}


def test_inputs_a_fit_transforms_are_the_trials_and_other_changes_are_refused() -> None:
    # KerasTuner's "tune data preprocessing" guide normalizes x in fit when hp.Boolean says so:
    # the trial trains on the inputs so transformed (of the same shape); labels are as given.
    class Normalizing(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Boolean("normalize")

        def fit(
            self, hp: keras_tuner.HyperParameters, model: Any, x: Any, y: Any, **kw: Any
        ) -> Any:
            if hp.get("normalize"):
                x = (x - x.mean()) / x.std()
            return model.fit(x=np.asarray(x), y=list(y), **kw)

    x, y = np.arange(600, dtype="float32").reshape(300, 2), np.arange(300) % 2
    for normalize in (False, True):
        family = HyperModelFamily("norm", Normalizing(), lambda n: n)
        family.build_trial(optuna.trial.FixedTrial({"normalize": normalize}), {})
        if normalize:
            [(name, inputs)] = family.fit_arguments(x, y).items()
            assert (name, inputs.dtype) == ("x", np.float32)
            np.testing.assert_allclose(inputs, (x - x.mean()) / x.std(), rtol=1e-6)
        else:  # the same values, converted, are the data as given
            assert family.fit_arguments(x, y) == {}

    class Reshaping(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return None

        def fit(self, hp: Any, model: Any, x: Any, y: Any, **kw: Any) -> Any:
            return model.fit(x[:, :1], y, **kw)

    family = HyperModelFamily("reshape", Reshaping(), lambda n: n)
    family.build_trial(optuna.trial.FixedTrial({}), {})
    with pytest.raises(ConfigError, match=r"other x .*\[300, 1\] for .*\[300, 2\].*Normalization"):
        family.fit_arguments(x, y)

    class Relabeling(Reshaping):
        def fit(self, hp: Any, model: Any, x: Any, y: Any, **kw: Any) -> Any:
            return model.fit(x, 1 - y, **kw)

    family = HyperModelFamily("relabel", Relabeling(), lambda n: n)
    family.build_trial(optuna.trial.FixedTrial({}), {})
    with pytest.raises(ConfigError, match=r"other y .*labels as given"):
        family.fit_arguments(x, y)

    # A model of several inputs: its dict or list passed on as given, or transformed.
    class Passing(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Boolean("scale")

        def fit(
            self, hp: keras_tuner.HyperParameters, model: Any, x: Any, y: Any, **kw: Any
        ) -> Any:
            if hp.get("scale"):
                x = {**x, "b": x["b"] * 2} if isinstance(x, dict) else [x[0], x[1] * 2]
            return model.fit(x, y, **kw)

    for given in ({"a": x, "b": x[:, :1]}, [x, x[:, :1]]):
        for scale in (False, True):
            family = HyperModelFamily("pass", Passing(), lambda n: n)
            family.build_trial(optuna.trial.FixedTrial({"scale": scale}), {})
            if scale:
                with pytest.raises(ConfigError, match=r"passes model\.fit other x"):
                    family.fit_arguments(given, y)
            else:
                assert family.fit_arguments(given, y) == {}


def test_validation_data_a_fit_transforms_is_refused_and_as_given_is_taken() -> None:
    # Standardized with x's statistics, as x is: each trial was scored on the validation
    # data as given, untransformed, at chance, with nothing said.
    class Standardizing(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return hp.Boolean("validation_too")

        def fit(
            self,
            hp: keras_tuner.HyperParameters,
            model: Any,
            x: Any,
            y: Any,
            validation_data: Any = None,
            **kw: Any,
        ) -> Any:
            mean, std = x.mean(0), x.std(0)
            if hp.get("validation_too"):
                x_val, y_val = validation_data
                validation_data = ((x_val - mean) / std, y_val)
            else:
                validation_data = (np.asarray(validation_data[0]), list(validation_data[1]))
            return model.fit((x - mean) / std, y, validation_data=validation_data, **kw)

    x, y = np.arange(600, dtype="float32").reshape(300, 2), np.arange(300) % 2
    validation = (x[:50] + 1, y[:50])
    family = HyperModelFamily("std", Standardizing(), lambda n: n)
    family.build_trial(optuna.trial.FixedTrial({"validation_too": False}), {})
    assert set(family.fit_arguments(x, y, validation)) == {"x"}
    family = HyperModelFamily("std", Standardizing(), lambda n: n)
    family.build_trial(optuna.trial.FixedTrial({"validation_too": True}), {})
    with pytest.raises(ConfigError, match=r"other validation_data than it is given .*Normaliz"):
        family.fit_arguments(x, y, validation)


def test_a_fit_written_for_a_dataset_is_told_it_is_given_arrays() -> None:
    class Mapping(keras_tuner.HyperModel):  # type: ignore[misc]
        def build(self, hp: keras_tuner.HyperParameters) -> Any:
            return None

        def fit(self, hp: Any, model: Any, x: Any, *args: Any, **kw: Any) -> Any:
            return model.fit(x.map(lambda a, b: (a * 2, b)), **kw)

    family = HyperModelFamily("mapping", Mapping(), lambda n: n)
    family.build_trial(optuna.trial.FixedTrial({}), {})
    x, y = np.zeros((20, 2), "float32"), np.zeros(20)
    with pytest.raises(ConfigError, match=r"no attribute 'map'.*given x and y as NumPy arrays"):
        family.fit_arguments(x, y)


def test_hyperparameters_given_to_the_tuner_take_the_place_of_the_hypermodels() -> None:
    """KerasTuner's `Tuner(hyperparameters=hp, tune_new_entries=False)`, as its guide fixes
    HyperResNet's learning rate: the given parameters replace the model's declarations."""

    def build(hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        return {
            "rate": hp.Choice("learning_rate", [0.1, 0.01]),
            "units": hp.Int("units", 8, 64),
            "activation": hp.Choice("activation", ["relu", "tanh"]),
        }

    given = keras_tuner.HyperParameters()
    given.Fixed("learning_rate", 1e-4)
    given.Int("units", 16, 32, step=16)

    def family(**flags: bool) -> HyperModelFamily:
        return HyperModelFamily("m", build, lambda n: n, declared={"declared": given, **flags})

    study = optuna.create_study()
    trial = study.ask()
    built = family(tune_new_entries=False).build_trial(trial, {})
    # The rate is the given one (outside the model's own choices), units the given range; the
    # activation, not given, keeps its default and is not searched.
    assert built["rate"] == 1e-4 and built["units"] in (16, 32) and built["activation"] == "relu"
    assert trial.distributions == {
        "learning_rate": CategoricalDistribution([1e-4]),
        "units": IntDistribution(16, 32, step=16),
    }
    trial = study.ask()
    family().build_trial(trial, {})
    assert set(trial.params) == {"learning_rate", "units", "activation"}
    with pytest.raises(ConfigError, match=r"'activation' is not among.*allow_new_entries"):
        family(allow_new_entries=False).build_trial(study.ask(), {})


def test_kerastuners_failed_trial_prunes_the_trial_and_its_fatal_error_stops_the_search() -> None:
    def build(hp: keras_tuner.HyperParameters) -> int:
        units = hp.Int("units", 8, 64)
        if units > 32:
            raise keras_tuner.errors.FailedTrialError(f"model too large: {units} units")
        if units == 8:
            raise keras_tuner.errors.FatalValueError("no model of 8 units")
        return units

    family = HyperModelFamily("m", build, lambda n: n)
    study = optuna.create_study()
    study.enqueue_trial({"units": 48})
    with pytest.raises(optuna.TrialPruned, match=r"rejected these values .*48 units"):
        family.build_trial(study.ask(), {})
    study.enqueue_trial({"units": 8})
    with pytest.raises(SearchStopped, match=r"FatalValueError .*8 units.*the search stops") as info:
        family.build_trial(study.ask(), {})
    assert info.value.kind == "FatalValueError"


def _build_with_defaults(hp: Any, units: int = 4, activation: str = "relu") -> Any:
    return (hp, units, activation)


class _Builder:
    def __call__(self, hp: Any) -> Any:
        return hp

    def build_model(self, hp: Any, *, units: int = 8) -> Any:
        return hp


def test_anything_callable_as_build_model_of_hp_is_a_hypermodel_as_in_kerastuner() -> None:
    named = [
        (_build_with_defaults, "_build_with_defaults"),
        (functools.partial(_build_with_defaults, units=8), "_build_with_defaults"),
        (lambda hp: hp, "hypermodel"),
        (_Builder(), "_Builder"),
        (_Builder().build_model, "build_model"),
    ]
    for target, name in named:
        assert as_hypermodel(target) is target, name
        assert family_name(target) == name
    # What needs more than `hp`, or is a model already built, is not one.

    def two(hp: Any, data: Any) -> Any:
        return hp

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for target in (two, model, _Builder, "module:function", 3):
        assert as_hypermodel(target) is None, target


def test_load_families_from_a_module_beside_the_study(tmp_path: Path) -> None:
    (tmp_path / "userfams_a.py").write_text(
        "import keras_tuner\n"
        "class Tuned(keras_tuner.HyperModel):\n"
        "    def build(self, hp):\n"
        "        return hp.Int('blocks', 1, 3)\n"
        "def build_fn(hp):\n"
        "    return hp.Int('units', 1, 3)\n"
        "NOT_A_MODEL = 3\n"
    )
    (tmp_path / "never_named.py").write_text("raise RuntimeError('imported without being named')\n")
    families = load_families(
        {"tuned": "userfams_a:Tuned", "fn": "userfams_a:build_fn"},
        tmp_path,
        builtin={},
        reserved={"blocks"},
    )
    assert set(families) == {"tuned", "fn"}
    assert all(isinstance(f, HyperModelFamily) for f in families.values())
    # Two hypermodels in one study: every parameter carries its family's name.
    trial = optuna.create_study().ask()
    families["tuned"].build_trial(trial, {})  # type: ignore[attr-defined]
    families["fn"].build_trial(trial, {})  # type: ignore[attr-defined]
    assert set(trial.params) == {"tuned/blocks", "fn/units"}

    with pytest.raises(ConfigError, match="is a int: expected a KerasTuner HyperModel"):
        load_families({"x": "userfams_a:NOT_A_MODEL"}, tmp_path, builtin={}, reserved=set())
    with pytest.raises(ConfigError, match=r"importing 'no_such_module' failed .*beside the study"):
        load_families({"x": "no_such_module:build"}, tmp_path, builtin={}, reserved=set())
    with pytest.raises(ConfigError, match="has no 'missing'; it defines"):
        load_families({"x": "userfams_a:missing"}, tmp_path, builtin={}, reserved=set())
    with pytest.raises(ConfigError, match="must be an import path"):
        load_families({"x": "models/userfams_a.py:Tuned"}, tmp_path, builtin={}, reserved=set())
    with pytest.raises(ConfigError, match="differ from the task's own families"):
        load_families({"conv1d": "userfams_a:Tuned"}, tmp_path, {"conv1d": None}, set())  # type: ignore[dict-item]


def test_a_finished_trial_built_by_a_changed_hypermodel_names_the_new_hyperparameter() -> None:
    # A notebook's build_model, changed and searched again in the same project: the earlier
    # trials are built again (get_best_models) with only their own values.
    def build(hp: keras_tuner.HyperParameters) -> Any:
        return hp.Int("units", 64, 128, step=64), hp.Float("dropout", 0.0, 0.5)

    family = HyperModelFamily("build_model", build, lambda n: n)
    with pytest.raises(
        ConfigError,
        match=r"now declares hyperparameter 'dropout', which this trial never had: an earlier "
        r"version of the hypermodel built it\. .*overwrite=True",
    ):
        family.build_trial(optuna.trial.FixedTrial({"units": 32}), {})


def _numbered(hp: keras_tuner.HyperParameters) -> dict[str, Any]:
    kind = hp.Choice("kind", ["mlp", "cnn"])
    with hp.conditional_scope("kind", ["cnn"]):
        width = hp.Int("width", 8, 64, step=8)
    return {
        "kind": kind,
        "width": width,
        **{f"units[{i}]": hp.Int(f"units[{i}]", 8, 32, step=8) for i in range(2)},
    }


def test_a_trial_gives_back_names_declared_with_brackets_of_their_own() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"kind": "cnn", "width[kind=cnn]": 16, "units[0]": 32, "units[1]": 8})
    trial = study.ask()
    HyperModelFamily("mine", _numbered, lambda n: n).build_trial(trial, {})
    study.tell(trial, 0.0)
    # hpo's scope suffix is stripped; the user's own brackets are part of the name.
    hp = trial_hyperparameters(study.trials[0], "mine")
    assert hp.values == {"kind": "cnn", "width": 16, "units[0]": 32, "units[1]": 8}
    assert _numbered(hp) == hp.values


def test_the_study_file_narrows_a_name_declared_with_brackets() -> None:
    family = HyperModelFamily("mine", _numbered, lambda n: n, narrowed={"units[0]": [16, 16]})
    family.build({})
    for _ in range(5):
        trial = optuna.create_study().ask()
        family.build_trial(trial, {})
        assert trial.params["units[0]"] == 16
