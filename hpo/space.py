"""Search spaces as Optuna distributions, their narrowing by a study file, and sampling."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Space", "fit_value", "narrow_space", "suggest", "suggest_all"]

Space = Mapping[str, BaseDistribution]

TRAINING_SPACE: dict[str, BaseDistribution] = {
    "optimizer": CategoricalDistribution(["adam", "rmsprop"]),
    "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128, 256]),
}


def suggest(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    """Asks the trial for one parameter drawn from `dist`."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


def suggest_all(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Asks the trial for every parameter of `space`, in order."""
    return {name: suggest(trial, name, dist) for name, dist in space.items()}


def narrow_space(
    space: Space, overrides: Mapping[str, list[Any]], *, where: str
) -> dict[str, BaseDistribution]:
    """Applies a study file's `[space]` entries that name parameters of `space`.

    Categorical parameters take a subset of their choices; numeric ones take `[low, high]`
    inside their default range.

    Raises:
        ConfigError: An entry is outside the default space.
    """
    narrowed = dict(space)
    for name, value in overrides.items():
        if name not in space:
            continue
        key = f"{where}.{name}"
        dist = space[name]
        if isinstance(dist, CategoricalDistribution):
            rule = f"'{key}' must list distinct choices among {list(dist.choices)}"
            chosen = [_choice(v, dist.choices) for v in value]
            if any(isinstance(c, _Misspelt) for c in chosen):
                raise ConfigError(
                    f"{rule}, as whole numbers ('{name}' takes integers; write them without a "
                    f"decimal point, and not as true or false), got {value!r}."
                )
            if None in chosen or len(set(map(repr, chosen))) != len(chosen):
                raise ConfigError(f"{rule}, got {value!r}.")
            narrowed[name] = CategoricalDistribution(chosen)
            continue
        assert isinstance(dist, (IntDistribution, FloatDistribution))
        rule = f"'{key}' must be [low, high] with {dist.low} <= low <= high <= {dist.high}"
        if isinstance(dist, IntDistribution) and any(
            isinstance(v, float) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(
                f"{rule}, both whole numbers ('{name}' is an integer parameter; write them "
                f"without a decimal point), got {value!r}."
            )
        if (
            len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not dist.low <= value[0] <= value[1] <= dist.high
        ):
            raise ConfigError(f"{rule}, got {value!r}.")
        if isinstance(dist, IntDistribution):
            low, high = _on_grid(key, dist, value)
            narrowed[name] = IntDistribution(low, high, log=dist.log, step=dist.step)
        elif dist.step is not None:
            bounds = _on_float_grid(key, dist, value)
            narrowed[name] = FloatDistribution(*bounds, step=dist.step)
        else:
            narrowed[name] = FloatDistribution(float(value[0]), float(value[1]), log=dist.log)
    return narrowed


class _Misspelt:
    """A categorical value equal to an integer choice but not one (64.0, or true for 1)."""


def _choice(value: Any, choices: Sequence[Any]) -> Any:
    """The choice among `choices` that `value` names, compared by type as well as by value:
    64.0 == 64 and True == 1, and a trial handed either crashed where it needed an integer.
    A whole number names a float choice (0 for 0.0). None where none matches; a `_Misspelt`
    where `value` equals an integer choice in another type."""
    for choice in choices:
        if value != choice:
            continue
        if type(value) is type(choice) or (isinstance(choice, float) and type(value) is int):
            return choice
        if type(choice) is int:
            return _Misspelt()
    return None


def _on_float_grid(key: str, dist: FloatDistribution, value: list[float]) -> tuple[float, float]:
    """`[low, high]` of a stepped float (a hypermodel's `hp.Float(..., step=0.1)`) on its
    values, moved inward as `_on_grid` moves an integer's: the step was dropped, and trials
    sampled 0.2946 of a parameter that takes 0.1, 0.2, 0.3.

    Raises:
        ConfigError: No value of the parameter lies between the bounds.
    """
    assert dist.step is not None
    step, places = dist.step, 12  # steps counted to 12 places: 0.3 is 3 steps of 0.1
    first = math.ceil(round((value[0] - dist.low) / step, places))
    last = math.floor(round((value[1] - dist.low) / step, places))
    if first > last:
        raise ConfigError(
            f"'{key}' must hold one of its values (every {step} from {dist.low} to {dist.high}), "
            f"got {value!r}, between them."
        )
    return round(dist.low + first * step, places), round(dist.low + last * step, places)


def _on_grid(key: str, dist: IntDistribution, value: list[int]) -> tuple[int, int]:
    """`[low, high]` moved inward onto the values of a stepped parameter (conv1d's odd kernel
    sizes): Optuna steps from `low`, so `[4, 7]` of 3, 5, 7, 9 sampled 4 and 6, which the
    family's space never holds; it searches 5 and 7. A high bound between values is what
    Optuna itself moves down (`[3, 8]` is 3, 5, 7), as it always did.

    Raises:
        ConfigError: No value of the parameter lies between the bounds.
    """
    grid = range(dist.low, dist.high + 1, dist.step)
    low = dist.low - (dist.low - value[0]) // dist.step * dist.step  # the first at or above
    high = dist.low + (value[1] - dist.low) // dist.step * dist.step  # the last at or below
    if low > high:
        values = (
            ", ".join(map(str, grid))
            if len(grid) <= 12
            else f"{dist.low}, {dist.low + dist.step}, ... {grid[-1]}"
        )
        raise ConfigError(
            f"'{key}' must hold one of its values {values} (every {dist.step} from {dist.low}), "
            f"got {value!r}, between them."
        )
    return low, high


def fit_value(dist: BaseDistribution, value: Any) -> Any:
    """Returns `value` if `dist` contains it, else the closest value `dist` does contain."""
    if isinstance(dist, CategoricalDistribution):
        if value in dist.choices:
            return value
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dist.choices):
            return min(dist.choices, key=lambda c: abs(c - value))
        return dist.choices[0]
    assert isinstance(dist, (IntDistribution, FloatDistribution))
    clipped = min(max(value, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        return dist.low + (int(clipped) - dist.low) // dist.step * dist.step
    return clipped
