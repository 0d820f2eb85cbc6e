"""What to try, for models written for KerasTuner: a hypermodel's hyperparameters on Optuna.

A KerasTuner hypermodel declares its space while it builds (`hp.Int("units", 32, 512)`), so its
parameters are sampled define-by-run inside the trial's process: `OptunaHyperParameters` turns
each declaration into an Optuna distribution and asks the running trial for a value, so the
space shows up as ordinary Optuna parameters (in the dashboard, `hpo status`, TPE's history).

| KerasTuner | Optuna |
| --- | --- |
| `Int(min, max, step, "linear" or "log")` | `IntDistribution(min, max, step or 1, log)` |
| `Float(min, max, step, "linear" or "log")` | `FloatDistribution(min, max, step, log)` |
| `Int`/`Float` with `step` and log sampling | `CategoricalDistribution` of KerasTuner's grid |
| `Float(..., sampling="reverse_log")` | `FloatDistribution(min, max)` (no reflected log scale) |
| `Choice(values, ordered)` | `CategoricalDistribution(values)` |
| `Boolean()` | `CategoricalDistribution([False, True])` |
| `Fixed(value)` | `CategoricalDistribution([value])` |

`conditional_scope` is KerasTuner's own: a parameter whose scope is inactive is not sampled and
reads as None, as in KerasTuner. A parameter declared inside a scope is an Optuna parameter of its
own per scope, named after its conditions (`units[model=cnn]`), so one name declared in two
scopes with two ranges is two parameters, not a clash. Values reach `build` with KerasTuner's
types: an `Int` is an `int` (KerasTuner's log grid holds floats), a `Float` a `float`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner
import numpy as np
from keras_tuner.engine import hyperparameters as hp_types
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FixedTrial

from hpo._exception_text import exception_text
from hpo.errors import ConfigError, kerastuner_outcome, kerastuner_signals
from hpo.space import fit_value, narrow_space, suggest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import optuna

__all__ = [
    "GivenHyperParameters",
    "HyperModelFamily",
    "OptunaHyperParameters",
    "task_arguments",
    "task_parameters",
    "to_distribution",
]

_log = logging.getLogger(__name__)
# Arguments of a hypermodel's own `fit` that hpo honours; it trains with its own data and
# callbacks (early stopping, checkpoint, pruning, budget) beside the hypermodel's callbacks.
FIT_ARGUMENTS = ("batch_size", "epochs", "class_weight", "callbacks", "shuffle")


def _typed(hp: Any, value: Any) -> Any:
    """A value as KerasTuner gives it to `build`: `int` for an Int, `float` for a Float."""
    if value is None:
        return None
    if isinstance(hp, hp_types.Int):
        return round(float(value))
    if isinstance(hp, hp_types.Float):
        return float(value)
    if isinstance(hp, hp_types.Boolean):
        return bool(value)
    return value


def optuna_name(hp: Any) -> str:
    """The Optuna name of a KerasTuner parameter: its name, and its scope's conditions if any.

    `hp.Int("units", ...)` inside `conditional_scope("model", ["cnn"])` is `units[model=cnn]`:
    each scope's declaration is its own parameter, as its range may differ from another's.
    """
    name = str(hp.name)
    for condition in getattr(hp, "conditions", None) or []:
        config = condition.get_config()
        values = ",".join(str(v) for v in config.get("values", []))
        name += f"[{config.get('name')}={values}]"
    return name


# The conditions `optuna_name` appends, each `[name=values]`, at the end of the name only: a
# name the user declared with brackets of its own (`units[0]`) keeps them.
_SCOPE_SUFFIX = re.compile(r"(\[[^\[\]=]+=[^\[\]]*\])+$")


def declared_name(name: str) -> str:
    """The name a KerasTuner parameter was declared with, from its Optuna name (`optuna_name`):
    `units[model=cnn]` is `units`, `units[0]` stays `units[0]`."""
    return _SCOPE_SUFFIX.sub("", name)


def declare(hp: keras_tuner.HyperParameters, name: str, distribution: BaseDistribution) -> None:
    """Declares in `hp` the KerasTuner hyperparameter that `distribution` samples (the inverse
    of `to_distribution`; a log-stepped grid comes back as a Choice of its values), keeping
    the value `hp` holds; where KerasTuner has none (choices of several types), nothing."""
    with contextlib.suppress(ValueError, TypeError):
        if isinstance(distribution, CategoricalDistribution):
            choices = list(distribution.choices)
            if sorted(choices, key=repr) == [False, True] and all(type(c) is bool for c in choices):
                hp.Boolean(name)
            elif len(choices) == 1:
                hp.Fixed(name, choices[0])
            else:
                hp.Choice(name, choices)
        elif isinstance(distribution, IntDistribution):
            step = None if distribution.log else distribution.step
            sampling = "log" if distribution.log else "linear"
            hp.Int(name, distribution.low, distribution.high, step=step, sampling=sampling)
        elif isinstance(distribution, FloatDistribution):
            sampling = "log" if distribution.log else "linear"
            hp.Float(
                name, distribution.low, distribution.high, step=distribution.step, sampling=sampling
            )


def to_distribution(hp: Any) -> BaseDistribution:
    """The Optuna distribution of one KerasTuner hyperparameter.

    Raises:
        ConfigError: The hyperparameter has no Optuna equivalent (named, with the reason).
    """
    if isinstance(hp, hp_types.Boolean):
        return CategoricalDistribution([False, True])
    if isinstance(hp, hp_types.Fixed):
        return CategoricalDistribution([hp.value])
    if isinstance(hp, hp_types.Choice):
        return CategoricalDistribution(list(hp.values))
    if isinstance(hp, (hp_types.Int, hp_types.Float)):
        if hp.step is not None and hp.sampling != "linear":
            # KerasTuner's log steps multiply: min, min*step, min*step^2, ... up to max. Its
            # grid holds floats even for an Int: the choices take the declared type.
            return CategoricalDistribution(sorted({_typed(hp, v) for v in hp.values}))
        if hp.sampling == "reverse_log":
            _log.warning(
                "hyperparameter %r: Optuna has no reverse-log scale; sampled linearly on [%s, %s].",
                hp.name,
                hp.min_value,
                hp.max_value,
            )
        log = hp.sampling == "log"
        if isinstance(hp, hp_types.Int):
            return IntDistribution(int(hp.min_value), int(hp.max_value), log=log, step=hp.step or 1)
        return FloatDistribution(float(hp.min_value), float(hp.max_value), log=log, step=hp.step)
    raise ConfigError(
        f"hyperparameter {getattr(hp, 'name', hp)!r} is a {type(hp).__name__}, which hpo cannot "
        f"map to an Optuna distribution. Declare it with hp.Int, hp.Float, hp.Choice, "
        f"hp.Boolean or hp.Fixed."
    )


class GivenHyperParameters(keras_tuner.HyperParameters):
    """KerasTuner's `HyperParameters`, which also read, with `hp.get(name)`, the values a trial
    gives its hypermodel beside those it samples: what the task gives every model
    (`hp.get("input_shape")`, `hp.get("classes")`), where no active parameter has that name.
    They are not among `values`, which hold the hyperparameters alone, as in KerasTuner.

    Args:
        given: Values readable with `hp.get(name)` that are not searched here (the task's
            input shape and classes, say).
    """

    def __init__(self, given: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._given = dict(given or {})

    def get(self, name: str) -> Any:
        """A parameter's value, or else a given value (`hp.get("classes")`)."""
        try:
            return super().get(name)
        except KeyError:
            if name in self._given:
                return self._given[name]
            raise

    def copy(self) -> GivenHyperParameters:
        """A copy, given values included (KerasTuner's `copy` makes plain `HyperParameters`)."""
        copied = GivenHyperParameters.from_config(self.get_config())
        copied._given = dict(self._given)
        return copied


class OptunaHyperParameters(GivenHyperParameters):
    """KerasTuner's `HyperParameters`, with each new active parameter's value asked of Optuna.

    Args:
        ask: `ask(name, distribution, default)` returns the value of a new parameter, `name`
            being its Optuna name (`optuna_name`).
        given: Values readable with `hp.get(name)` that are not searched here (the task's
            input size and classes, say).
        declared: KerasTuner's `Tuner(hyperparameters=...)`: parameters declared before the
            hypermodel builds, which take the place of its declarations of the same name
            (`hp.Fixed("learning_rate", 1e-4)` fixes a rate the model would search).
        tune_new_entries: False: a parameter `declared` does not name keeps its default and is
            not searched. `allow_new_entries`: False: such a parameter is an error.
    """

    def __init__(
        self,
        ask: Callable[[str, BaseDistribution, Any], Any],
        given: Mapping[str, Any] | None = None,
        *,
        declared: keras_tuner.HyperParameters | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
    ) -> None:
        super().__init__(given)
        self._ask = ask
        self._declared = {hp.name: hp for hp in (declared.space if declared else [])}
        self._tune_new = tune_new_entries
        self._allow_new = allow_new_entries

    def _register(self, hyperparameter: Any, overwrite: bool = False) -> Any:
        declared = self._declared.get(hyperparameter.name)
        if declared is not None:
            # Declared before the build: it takes the place of this declaration, in its scope.
            config = {
                **declared.get_config(),
                "conditions": hyperparameter.get_config()["conditions"],
            }
            hp = declared.__class__.from_config(config)
        else:
            hp = hyperparameter.__class__.from_config(hyperparameter.get_config())
        self._validate_name(hp.name)
        if declared is None and self._declared and not self._allow_new:
            raise ConfigError(
                f"hyperparameter {hp.name!r} is not among those given as hyperparameters= "
                f"({', '.join(sorted(self._declared))}), and allow_new_entries is False: "
                f"declare it there, or allow new entries."
            )
        # Inactive ones are mapped too, so an unsupported parameter fails on any build.
        distribution = to_distribution(hp)
        self._hps[hp.name].append(hp)
        self._space.append(hp)
        if not self.is_active(hp):
            return None
        if overwrite or hp.name not in self.values:
            default = _typed(hp, hp.default)
            searched = declared is not None or self._tune_new
            value = self._ask(optuna_name(hp), distribution, default) if searched else default
            self.values[hp.name] = _typed(hp, value)
        return self.values[hp.name]


# `returns_score` of a fit that uses the model after `model.fit`: a score of the trained model,
# unless `settle_returns` finds that it returns none.
USES_TRAINED = "a score of the trained model"


class _TrainsItself(AttributeError):
    """The hypermodel's `fit` calls the model, or reads what only a model has, instead of
    passing it to `model.fit`: it trains it in a loop of its own."""


class _ScoresItself(Exception):
    """The hypermodel's `fit` uses the model after `model.fit`: it may score it itself
    (KerasTuner's custom objective), which a run on a few rows tells (`settle_returns`)."""


class _RecordedHistory:
    """What the stand-in's `fit` returns in place of Keras's `History`: a fit that reads it
    (`return min(history.history["val_loss"])`) scores the trained model (`_ScoresItself`);
    one that returns it is a fit as Keras's."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _ScoresItself(f"the History model.fit returns is read (history.{name})")


class _FitRecorder:
    """Stands in for the model in a hypermodel's `fit`, to read the arguments it passes.

    After `model.fit`, any use of the model ends the fit (`_ScoresItself`): what a fit does
    then (`loss, acc = model.evaluate(...)`, `model.predict(x)[:, 1]`) needs a trained model,
    which the stand-in's answers are not.
    """

    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.fitted = False

    def fit(self, *args: Any, **kwargs: Any) -> _RecordedHistory:
        self.args, self.kwargs, self.fitted = args, kwargs, True
        return _RecordedHistory()

    def _used(self, what: str) -> Exception:
        return _ScoresItself(what) if self.fitted else _TrainsItself(what)

    # What a fit may do with the model around `model.fit` that neither trains nor scores it
    # (print it, save it where it likes): nothing, for the stand-in.
    def summary(self, *args: Any, **kwargs: Any) -> None:
        return None

    def save(self, *args: Any, **kwargs: Any) -> None:
        return None

    def save_weights(self, *args: Any, **kwargs: Any) -> None:
        return None

    def export(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._used("the model is called")

    def __getattr__(self, name: str) -> Any:
        # Only for what the stand-in lacks: `model.trainable_variables` of a training loop.
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._used(f"model.{name} is read")

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """Zeros, one a row, before `model.fit` (a fit that looks at the untrained model)."""
        if self.fitted:
            raise _ScoresItself("model.predict")
        first = next(iter(x.values())) if isinstance(x, dict) else x
        return np.zeros((len(first), 1), dtype=np.float32)

    def evaluate(self, *args: Any, **kwargs: Any) -> float:
        if self.fitted:
            raise _ScoresItself("model.evaluate")
        return 0.0

    def data(self) -> dict[str, Any]:
        """The inputs and labels it was given, by name."""
        return {
            **dict(zip(("x", "y"), self.args, strict=False)),
            **{k: v for k, v in self.kwargs.items() if k in ("x", "y")},
        }


class HyperModelFamily:
    """A KerasTuner hypermodel (or `build(hp)` function) as an hpo model family.

    Nothing is sampled in the search process (`suggest` returns nothing); `build_trial` samples
    the hypermodel's parameters from the running trial as it builds.

    Args:
        name: The family's name in the study.
        hypermodel: A `keras_tuner.HyperModel` instance or class, or a `build(hp)` callable.
        rename: Maps a KerasTuner name to the Optuna parameter name (a prefix where needed).
        narrowed: Parameters narrowed by the study file, KerasTuner name -> choices or
            [low, high]; a name the hypermodel never declares is an error at its first build.
        fit_kwargs: Arguments that reach the hypermodel's `fit` as KerasTuner's `search(...,
            **kwargs)` passes them (`hpo.Tuner`); without a `fit` of its own they go to
            `model.fit` as they are.
        declared: `hpo.Tuner(hyperparameters=..., tune_new_entries=..., allow_new_entries=...)`
            as KerasTuner's tuners take them (see `OptunaHyperParameters`): a
            `keras_tuner.HyperParameters` and the two flags, by name.
        fit_defaults: `model.fit` arguments for what neither `fit_kwargs` nor the hypermodel's
            own `fit` sets: the batch size of the dataset `hpo.Tuner.search` was given.
        overrides: `hpo.Tuner(optimizer=, loss=, metrics=, max_model_size=)`, as KerasTuner's
            tuners take them, applied to each model built (`override_compile`); and
            `default_objective`, where the Tuner was given no objective: a fit that returns a
            score is then what ranks the trials, as in KerasTuner (`ReturnsObjective`).
    """

    SPACE: Mapping[str, BaseDistribution] = {}
    DEFAULTS: Mapping[str, Any] = {}

    def __init__(
        self,
        name: str,
        hypermodel: Any,
        rename: Callable[[str], str],
        narrowed: Mapping[str, list[Any]] | None = None,
        fit_kwargs: Mapping[str, Any] | None = None,
        declared: Mapping[str, Any] | None = None,
        fit_defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.overrides = dict(overrides or {})
        self.fit_kwargs = dict(fit_kwargs or {})
        self.fit_defaults = dict(fit_defaults or {})
        self.declared = dict(declared or {})
        # The study file's `[space]` narrowing of this hypermodel's parameters, by KerasTuner
        # name (`[space] "resnet/conv4_depth" = [6]`): KerasTuner's `hyperparameters=`.
        self.narrowed = dict(narrowed or {})
        # A HyperModel class is instantiated at the first build, when the task's input shape
        # and classes are known (KerasTuner's HyperResNet and HyperXception need them).
        self._hypermodel = hypermodel
        self.rename = rename
        self._hp: OptunaHyperParameters | None = None
        # Its `fit` trains the model in a loop of its own, not through `model.fit`: found by
        # `fit_arguments`, and then the trial runs it (`train_own`).
        self.trains_itself = False
        # What its `fit` returns as the trial's score (KerasTuner's custom objective: a number,
        # a dict of them, or what it computes with the trained model), said for people; None
        # where it returns none (a History, or nothing). Found by `fit_arguments`; where only
        # a fit on a trained model can tell (`USES_TRAINED`), by `settle_returns`.
        self.returns_score: str | None = None
        # The keys of the dict it returns, where it returns one (KerasTuner's metrics dict).
        self.returned_keys: list[str] | None = None
        # Whether the fit passes `epochs` to `model.fit` itself (read by `fit_arguments`).
        self._passes_epochs = False

    def suggest(self, trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
        """Nothing up front: the hypermodel declares its space while it builds."""
        return {}

    def build(self, params: Mapping[str, Any]) -> keras.Model:
        """The hypermodel at its default values (for cost estimates and checks); a narrowed
        parameter whose default falls outside takes the nearest value inside."""

        def default(name: str, distribution: BaseDistribution, value: Any) -> Any:
            return fit_value(self._narrow(name, distribution), value)

        model = self._build(OptunaHyperParameters(default, params, **self.declared))
        self._check_narrowed()
        return model

    def build_trial(self, trial: optuna.trial.BaseTrial, params: Mapping[str, Any]) -> keras.Model:
        """The hypermodel with each parameter asked of `trial` as it is declared."""

        def ask(name: str, distribution: BaseDistribution, default: Any) -> Any:
            distribution = self._narrow(name, distribution)
            try:
                return suggest(trial, self.rename(name), distribution)
            except ValueError as exc:
                if isinstance(trial, FixedTrial) and "is not found" in str(exc):
                    # A finished trial built again (`hpo.Tuner.get_best_models`) by a
                    # hypermodel changed since, which declares what the trial was never asked.
                    raise ConfigError(
                        f"family {self.name!r} now declares hyperparameter {name!r}, which "
                        f"this trial never had: an earlier version of the hypermodel built it. "
                        f"(To search the new one alone, start a new project: overwrite=True or "
                        f"another project_name.)"
                    ) from None
                # Optuna keeps one distribution per parameter name for the whole study.
                raise ConfigError(
                    f"family {self.name!r}: hyperparameter {name!r} is declared as "
                    f"{distribution} in this build, unlike in an earlier build ({exc}). A "
                    f"hyperparameter must keep its values from build to build: give the other "
                    f"declaration its own name, or declare it in a conditional_scope."
                ) from exc

        return self._build(OptunaHyperParameters(ask, params, **self.declared))

    def _narrow(self, name: str, distribution: BaseDistribution) -> BaseDistribution:
        """The distribution narrowed by the study file, for the Optuna name `name`."""
        plain = declared_name(name)
        if plain not in self.narrowed:
            return distribution
        key = f"{self.name}/{plain}"
        return narrow_space({key: distribution}, {key: self.narrowed[plain]}, where="space")[key]

    def _check_narrowed(self) -> None:
        declared = {hp.name for hp in self._hp.space} if self._hp is not None else set()
        unknown = sorted(set(self.narrowed) - declared)
        if unknown:
            raise ConfigError(
                f"'space.{self.name}/{unknown[0]}' narrows a parameter that family "
                f"{self.name!r} does not declare; its parameters: {sorted(declared)}."
            )

    @property
    def used_values(self) -> dict[str, Any]:
        """The values the last build (and the `fit` read after it) used, by declared name:
        sampled, fixed, and the defaults of parameters not searched."""
        return {} if self._hp is None else dict(self._hp.values)

    @property
    def hypermodel(self) -> Any:
        """The hypermodel (instantiated, for a class, at the first build)."""
        return self._hypermodel

    def fit_arguments(
        self, x: Any = None, y: Any = None, validation_data: Any = None
    ) -> dict[str, Any]:
        """What the hypermodel's own `fit` passes to `model.fit`, among `FIT_ARGUMENTS`, over
        `fit_defaults`.

        Runs the hypermodel's `fit` with a stand-in model (after `build_trial`, so the same
        parameters are read), given the training inputs and labels, and `validation_data`, as
        KerasTuner gives them (`fit(hp, model, x, y, validation_data, **kwargs)` and
        `fit(hp, model, *args, **kwargs)` alike); parameters it declares there are sampled like
        the others. A fit that returns a score (KerasTuner's custom objective: a number or a
        dict of them, or what it computes with the model after `model.fit`) sets
        `returns_score`: where Keras logs no value of the study's objective, the trial runs that
        fit as it is written and takes the objective's value from what it returns.

        Raises:
            ConfigError: The hypermodel's `fit` fails with a stand-in model.
        """
        fit = getattr(self.hypermodel, "fit", None)
        if self._hp is None or fit is None:
            given = {k: v for k, v in self.fit_kwargs.items() if k in FIT_ARGUMENTS}
            return {**self.fit_defaults, **given}
        recorder = _FitRecorder()
        given = {} if validation_data is None else {"validation_data": validation_data}
        # KerasTuner passes a list of callbacks, which a training loop of the user's calls:
        # given to a fit that names `callbacks`, one that passes its own beside **kwargs works.
        kwargs = dict(self.fit_kwargs)
        if "callbacks" in _parameters(fit):
            kwargs.setdefault("callbacks", [])
        try:
            returned = fit(self._hp, recorder, x, y, **given, **kwargs)
        except _ScoresItself:
            returned = _ScoresItself  # what it would return is the score it computes
        except _TrainsItself:
            # KerasTuner's custom training loop: the trial runs the fit with the model.
            self.trains_itself = True
            own = self.fit_kwargs.get("callbacks")
            return {"callbacks": own} if own else {}
        except Exception as exc:
            outcome = kerastuner_outcome(exc, f"family {self.name!r}: its fit")
            if outcome is not None:
                raise outcome from exc
            cause = exception_text(exc, 200)
            raise ConfigError(
                f"family {self.name!r}: its fit(hp, model, x, y, **kwargs) failed before "
                f"training ({type(exc).__name__}: {cause}); hpo reads from it only the "
                f"arguments it passes to model.fit ({', '.join(FIT_ARGUMENTS)}). It is given "
                f"x and y as NumPy arrays (a dict or list of them for several inputs), whatever "
                f"the search was given: hpo reads a tf.data.Dataset or PyDataset once into "
                f"arrays that every trial's process reads. A fit written for a dataset "
                f"(x.map, x.batch) can transform the arrays instead, or the model can (a layer "
                f"in build), and pass batch_size= to model.fit."
            ) from exc
        transformed: dict[str, np.ndarray] = {}
        for name, value in recorder.data().items():
            if _same_data(value, {"x": x, "y": y}[name]):
                continue
            inputs = _transformed_inputs(value, x) if name == "x" else None
            if inputs is None:
                raise ConfigError(
                    f"family {self.name!r}: its fit(hp, model, x, y, **kwargs) passes model.fit "
                    f"other {name} than it is given ({_shape_of(value)} for "
                    f"{_shape_of({'x': x, 'y': y}[name])}): hpo trains on inputs its fit "
                    f'transforms (KerasTuner\'s "tune data preprocessing") where they keep '
                    f"their shape, and on labels as given. Transform the data before the "
                    f"search, or in the model (a layer in build, such as "
                    f"keras.layers.Normalization); to batch the data (a tf.data pipeline), pass "
                    f"batch_size= to model.fit instead."
                )
            transformed[name] = inputs
        passed_validation = recorder.kwargs.get("validation_data")
        if validation_data is not None and passed_validation is not None:
            self._check_validation(passed_validation, validation_data)
        ignored = sorted(set(recorder.kwargs) - set(FIT_ARGUMENTS) - {"x", "y", "validation_data"})
        if ignored:
            _log.warning("family %s: fit arguments %s are not used by hpo", self.name, ignored)
        self._passes_epochs = "epochs" in recorder.kwargs
        self.returns_score = USES_TRAINED if returned is _ScoresItself else None
        self.returned_keys = None
        self._read_returned(returned)
        passed = {
            k: v
            for k, v in recorder.kwargs.items()
            if k in FIT_ARGUMENTS and v is not None and not (k == "callbacks" and v == [])
        }
        return {**self.fit_defaults, **passed, **transformed}

    def _check_validation(self, passed: Any, given: Any) -> None:
        """Refuses validation data the hypermodel's `fit` changed before `model.fit`: the trial
        is validated, and its model ensembled, tested and served, on inputs as given, which
        the fit's own transformation (code, not a layer of the model) never reaches.

        Raises:
            ConfigError: `passed` holds other inputs or labels than `given`.
        """
        pairs = isinstance(passed, (tuple, list)) and len(passed) >= 2
        if pairs and _same_data(passed[0], given[0]) and _same_data(passed[1], given[1]):
            return
        raise ConfigError(
            f"family {self.name!r}: its fit(hp, model, x, y, **kwargs) passes model.fit other "
            f"validation_data than it is given (transformed, as it transforms x, say). hpo "
            f"validates each trial on the validation data as given, as it later ensembles, "
            f"tests and serves the model on inputs as given, which a transformation in fit "
            f"never reaches. Pass validation_data on as given (a fit that normalizes x alone "
            f'is KerasTuner\'s "tune data preprocessing" guide), or transform in the model (a '
            f"layer in build, such as keras.layers.Normalization adapted to x)."
        )

    def settle_returns(self, model: keras.Model, x: Any, y: Any, validation_data: Any) -> None:
        """Tells whether a fit that uses the model after `model.fit` returns a score, which
        the stand-in cannot (it scores an untrained model, fine-tunes it, or only prints its
        History): runs the fit as written on `model` and the few rows given (one epoch where
        the search gives epochs), and keeps `returns_score` only where it returns a number,
        a list of them or a dict. A fit that fails so is taken to return none (its trials
        are ranked by the study's objective as Keras logs it), with a warning.

        `x`, `y` and `validation_data` are as the trial gives them to a fit it runs as written:
        the labels in the form the model's loss takes. What the fit does besides (writing a
        file, say) is done on this run too."""
        if self.returns_score != USES_TRAINED:
            return
        kwargs = {k: v for k, v in self.fit_kwargs.items() if k != "callbacks"}
        if "epochs" in kwargs:
            kwargs["epochs"] = 1
        self.returns_score, self.returned_keys = None, None
        try:
            returned = self.hypermodel.fit(
                self._hp, model, x, y, validation_data=validation_data, callbacks=[], **kwargs
            )
        except Exception as exc:
            _log.warning(
                "family %s: its fit uses the model after model.fit, and run on a few rows to "
                "tell whether it returns a score, it failed (%s: %s); its trials are ranked by "
                "the study's objective as Keras logs it",
                self.name,
                type(exc).__name__,
                exception_text(exc, 200),
            )
            return
        self._read_returned(returned)

    def _read_returned(self, returned: Any) -> None:
        """Keeps what a run of the fit returned, where it is a score: `returns_score` (as said
        for people) and, for a dict, `returned_keys`."""
        if isinstance(returned, dict) or returned_score(returned) is not None:
            self.returns_score = exception_text(repr(returned), 80)
            self.returned_keys = sorted(map(str, returned)) if isinstance(returned, dict) else None

    def train_own(
        self,
        model: keras.Model,
        x: Any,
        y: Any,
        validation_data: Any,
        callbacks: list[keras.callbacks.Callback],
        sample_weight: Any = None,
        epochs: int | None = None,
    ) -> Any:
        """Runs the hypermodel's `fit` on the model, which it trains in a loop of its own
        (`trains_itself`), as KerasTuner runs it: given `validation_data` and
        the callbacks (hpo's, and the search's own), whose `on_epoch_end` it calls with its
        logs; and `sample_weight`, where the search was given one, among its keyword arguments.
        With `epochs` (the study's cap; for a fit run as written for its score), a fit that takes
        **kwargs (and passes them on to `model.fit`) also gets `fit_defaults` (a dataset's batch
        size) and, where neither the search nor the fit itself gives `model.fit` epochs, those.
        Returns what the fit returns."""
        kwargs = {k: v for k, v in self.fit_kwargs.items() if k != "callbacks"}
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        if epochs is not None and _takes_keywords(self.hypermodel.fit):
            # A fit run as written for its score: the dataset's batch size (its batches, as
            # Keras would train on them), and the study's epochs where it passes none itself.
            for name, value in self.fit_defaults.items():
                kwargs.setdefault(name, value)
            if not self._passes_epochs:
                kwargs.setdefault("epochs", epochs)
        return self.hypermodel.fit(
            self._hp, model, x, y, validation_data=validation_data, callbacks=callbacks, **kwargs
        )

    def _build(self, hp: OptunaHyperParameters) -> keras.Model:
        self._hp = hp
        if inspect.isclass(self._hypermodel):
            self._hypermodel = _instantiate(self.name, self._hypermodel, hp._given)
        build = getattr(self._hypermodel, "build", self._hypermodel)
        with kerastuner_signals(f"family {self.name!r}: its build"):
            model = build(hp)
            override_compile(model, self.overrides, self.name)
            return model


def override_compile(model: Any, overrides: Mapping[str, Any], family: str) -> None:
    """KerasTuner's `Tuner(optimizer=, loss=, metrics=, max_model_size=)` on a model its
    hypermodel built: a model of more parameters than `max_model_size` is rejected
    (`FailedTrialError`: the trial is pruned), and the others are compiled again with the
    given optimizer (a copy each time), loss or metrics in place of their own, keeping the
    rest of the model's compile arguments.

    Raises:
        keras_tuner.errors.FailedTrialError: The model is larger than `max_model_size`.
        ConfigError: A compile argument is given for a model that comes uncompiled.
    """
    import keras

    limit = overrides.get("max_model_size")
    if limit is not None and isinstance(model, keras.Model) and model.built:
        size = model.count_params()
        if size > limit:
            raise keras_tuner.errors.FailedTrialError(
                f"Oversized model: {size} parameters (max_model_size={limit}). Skip model."
            )
    given = {k: overrides[k] for k in ("optimizer", "loss", "metrics") if overrides.get(k)}
    if not given or not isinstance(model, keras.Model):
        return
    if not model.compiled:
        raise ConfigError(
            f"family {family!r}: hpo.Tuner({', '.join(f'{k}=' for k in given)}) compiles "
            f"again the model build_model compiled, as KerasTuner does, and this one comes "
            f"uncompiled: compile it in build_model, or leave them out (hpo then compiles it "
            f"with the optimizer and learning rate it searches and the loss its output needs)."
        )
    arguments = keras.saving.deserialize_keras_object(model.get_compile_config() or {})
    if "optimizer" in given and not isinstance(given["optimizer"], str):
        # A new optimizer for each model, as KerasTuner makes it.
        given["optimizer"] = keras.optimizers.deserialize(
            keras.optimizers.serialize(given["optimizer"])
        )
    model.compile(**{**arguments, **given})


def returned_score(value: Any) -> float | None:
    """A score as a hypermodel's fit returns it, as KerasTuner reads one: a number (a NumPy or
    Keras scalar, a 0-d array or tensor included), or a list of them, averaged; None for
    anything else (a History, None, a string)."""
    if isinstance(value, (list, tuple)):
        scores = [returned_score(v) for v in value]
        if not scores or any(s is None for s in scores):
            return None
        return float(np.mean([s for s in scores if s is not None]))
    if value is None or isinstance(value, (str, bytes, dict)):
        return None
    if not isinstance(value, (int, float, np.number, np.ndarray)):
        try:
            value = keras.ops.convert_to_numpy(value)
        except Exception:
            return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return float(array) if array.ndim == 0 else None


def _takes_keywords(function: Any) -> bool:
    """Whether `function` takes **kwargs."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _parameters(function: Any) -> set[str]:
    """The names of a function's parameters (none where they cannot be read)."""
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _transformed_inputs(passed: Any, given: Any) -> np.ndarray | None:
    """Inputs a hypermodel's `fit` made from the training inputs, as an array, where they are
    one array of the same shape (scaled or normalized for this trial, say); else None."""
    if isinstance(passed, (dict, list, tuple)) or isinstance(given, (dict, list, tuple)):
        return None
    import keras

    try:
        array = np.asarray(keras.ops.convert_to_numpy(passed))
    except Exception:
        return None
    if array.shape != np.shape(given) or not np.issubdtype(array.dtype, np.number):
        return None
    return array.astype(np.asarray(given[:1]).dtype, copy=False)


def _shape_of(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} {list(shape)}" if shape is not None else type(value).__name__


def _same_data(passed: Any, given: Any, rows: int = 256) -> bool:
    """Whether a hypermodel's `fit` passed the data it was given on (the same object, or the
    same values: a conversion to a tensor, say), read on its first and last rows."""
    if passed is given:
        return True
    if given is None or passed is None:
        return False
    if isinstance(given, dict):  # several inputs, by name
        return (
            isinstance(passed, dict)
            and passed.keys() == given.keys()
            and all(_same_data(passed[k], given[k], rows) for k in given)
        )
    if isinstance(given, list):  # several inputs, in order
        return (
            isinstance(passed, (list, tuple))
            and len(passed) == len(given)
            and all(_same_data(p, g, rows) for p, g in zip(passed, given, strict=True))
        )
    try:
        a, b = np.asarray(passed), np.asarray(given)
    except Exception:
        return False
    return a.shape == b.shape and all(
        np.array_equal(a[part], b[part]) for part in (slice(None, rows), slice(-rows, None))
    )


# Constructor arguments of a HyperModel class that hpo fills from the task: what KerasTuner's
# ready-made hypermodels take (HyperResNet(input_shape=..., classes=...)), from the first of
# the task's values that it gives (images give `image_shape`, in-memory arrays `input_shape`).
_FROM_TASK = {
    "input_shape": ("input_shape", "image_shape"),
    "classes": ("classes",),
    "num_classes": ("classes",),
}


def task_parameters(cls: type) -> list[str]:
    """The parameters of HyperModel class `cls`'s constructor that the task fills: those of
    `input_shape`, `classes` and `num_classes` it takes."""
    parameters = inspect.signature(cls).parameters
    return [argument for argument in _FROM_TASK if argument in parameters]


def task_arguments(cls: type, given: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of HyperModel class `cls`'s constructor (`task_parameters`) that the
    task's values `given` (its build context) give."""
    return {
        argument: next(given[s] for s in _FROM_TASK[argument] if s in given)
        for argument in task_parameters(cls)
        if any(s in given for s in _FROM_TASK[argument])
    }


def _instantiate(name: str, cls: type, given: Mapping[str, Any]) -> Any:
    """A HyperModel class instantiated with what the task gives (input shape, classes)."""
    kwargs = task_arguments(cls, given)
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise ConfigError(
            f"family {name!r}: {cls.__name__}({', '.join(f'{k}=...' for k in kwargs)}) failed "
            f"({type(exc).__name__}: {exc}). Name an instance built with its arguments in the "
            f"study file instead, e.g. `{name.lower()} = MyHyperModel(...)` in your module."
        ) from exc


def as_hypermodel(target: Any) -> Any | None:
    """`target` as something with `build(hp)`, or None if it is not a KerasTuner hypermodel.

    Accepts a `HyperModel` instance, a `HyperModel` subclass (instantiated at the first build,
    with the task's `input_shape` and `classes` where its constructor takes them) and, as
    KerasTuner does, anything callable as `build_model(hp)`: a function (its other parameters
    left at their defaults), a `functools.partial`, a lambda, a method or an object with
    `__call__`. A Keras model or layer, itself callable, is not one.
    """
    if isinstance(target, keras_tuner.HyperModel):
        return target
    if inspect.isclass(target):
        # A HyperModel class is instantiated at the first build (see `HyperModelFamily`).
        return target if issubclass(target, keras_tuner.HyperModel) else None
    if not callable(target) or isinstance(target, keras.layers.Layer):
        return None
    try:
        inspect.signature(target).bind(None)
    except (TypeError, ValueError):  # needs more than `hp`, or has no signature to read
        return None
    return target
