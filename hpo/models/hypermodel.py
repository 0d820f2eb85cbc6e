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
reads as None, as in KerasTuner.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import keras_tuner
from keras_tuner.engine import hyperparameters as hp_types
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import ConfigError
from hpo.space import suggest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import keras
    import optuna

__all__ = ["HyperModelFamily", "OptunaHyperParameters", "to_distribution"]

_log = logging.getLogger(__name__)
# Arguments of a hypermodel's own `fit` that hpo honours; it trains with its own data and
# callbacks (early stopping, checkpoint, pruning, budget) beside the hypermodel's callbacks.
FIT_ARGUMENTS = ("batch_size", "epochs", "class_weight", "callbacks")


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
            # KerasTuner's log steps multiply: min, min*step, min*step^2, ... up to max.
            return CategoricalDistribution(sorted(hp.values))
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


class OptunaHyperParameters(keras_tuner.HyperParameters):
    """KerasTuner's `HyperParameters`, with each new active parameter's value asked of Optuna.

    Args:
        ask: `ask(name, distribution, default)` returns the value of a new parameter.
        given: Values readable with `hp.get(name)` that are not searched here (the task's
            input size and classes, say).
    """

    def __init__(
        self,
        ask: Callable[[str, BaseDistribution, Any], Any],
        given: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._ask = ask
        self._given = dict(given or {})

    def get(self, name: str) -> Any:
        """A parameter's value, or else a given value (`hp.get("classes")`)."""
        try:
            return super().get(name)
        except KeyError:
            if name in self._given:
                return self._given[name]
            raise

    def _register(self, hyperparameter: Any, overwrite: bool = False) -> Any:
        hp = hyperparameter.__class__.from_config(hyperparameter.get_config())
        self._validate_name(hp.name)
        # Inactive ones are mapped too, so an unsupported parameter fails on any build.
        distribution = to_distribution(hp)
        self._hps[hp.name].append(hp)
        self._space.append(hp)
        if not self.is_active(hp):
            return None
        if overwrite or hp.name not in self.values:
            self.values[hp.name] = self._ask(hp.name, distribution, hp.default)
        return self.values[hp.name]


class _FitRecorder:
    """Stands in for the model in a hypermodel's `fit`, to read the arguments it passes."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}

    def fit(self, *args: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs


class HyperModelFamily:
    """A KerasTuner hypermodel (or `build(hp)` function) as an hpo model family.

    Nothing is sampled in the search process (`suggest` returns nothing); `build_trial` samples
    the hypermodel's parameters from the running trial as it builds.

    Args:
        name: The family's name in the study.
        hypermodel: A `keras_tuner.HyperModel` instance or a `build(hp)` callable.
        rename: Maps a KerasTuner name to the Optuna parameter name (a prefix where needed).
    """

    SPACE: Mapping[str, BaseDistribution] = {}
    DEFAULTS: Mapping[str, Any] = {}

    def __init__(self, name: str, hypermodel: Any, rename: Callable[[str], str]) -> None:
        self.name = name
        self.hypermodel = hypermodel
        self.rename = rename
        self._hp: OptunaHyperParameters | None = None

    def suggest(self, trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
        """Nothing up front: the hypermodel declares its space while it builds."""
        return {}

    def build(self, params: Mapping[str, Any]) -> keras.Model:
        """The hypermodel at its default values (for cost estimates and checks)."""
        return self._build(OptunaHyperParameters(lambda name, dist, default: default, params))

    def build_trial(self, trial: optuna.Trial, params: Mapping[str, Any]) -> keras.Model:
        """The hypermodel with each parameter asked of `trial` as it is declared."""

        def ask(name: str, distribution: BaseDistribution, default: Any) -> Any:
            return suggest(trial, self.rename(name), distribution)

        return self._build(OptunaHyperParameters(ask, params))

    def fit_arguments(self) -> dict[str, Any]:
        """What the hypermodel's own `fit` passes to `model.fit`, among `FIT_ARGUMENTS`.

        Runs the hypermodel's `fit` with a stand-in model (after `build_trial`, so the same
        parameters are read); parameters it declares there are sampled like the others.
        """
        fit = getattr(self.hypermodel, "fit", None)
        if self._hp is None or fit is None:
            return {}
        recorder = _FitRecorder()
        fit(self._hp, recorder)
        ignored = sorted(set(recorder.kwargs) - set(FIT_ARGUMENTS))
        if ignored:
            _log.warning("family %s: fit arguments %s are not used by hpo", self.name, ignored)
        return {k: v for k, v in recorder.kwargs.items() if k in FIT_ARGUMENTS and v is not None}

    def _build(self, hp: OptunaHyperParameters) -> keras.Model:
        self._hp = hp
        build = getattr(self.hypermodel, "build", self.hypermodel)
        return build(hp)


def as_hypermodel(target: Any) -> Any | None:
    """`target` as something with `build(hp)`, or None if it is not a KerasTuner hypermodel.

    Accepts a `HyperModel` instance, a `HyperModel` subclass (instantiated without arguments)
    and a function of one argument, `hp`.
    """
    if isinstance(target, keras_tuner.HyperModel):
        return target
    if inspect.isclass(target) and issubclass(target, keras_tuner.HyperModel):
        return target()
    if inspect.isfunction(target) and len(inspect.signature(target).parameters) == 1:
        return target
    return None
