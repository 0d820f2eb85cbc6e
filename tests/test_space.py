"""The search space's parts: asking a trial, narrowing by a study file, fitting a value."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.errors import ConfigError
from hpo.space import fit_value, narrow_space, suggest, suggest_all

SPACE = {
    "units": IntDistribution(8, 512, log=True),
    "blocks": IntDistribution(1, 9, step=2),
    "rate": FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.1),
    "act": CategoricalDistribution(["relu", "gelu"]),
}


def test_suggest_asks_for_the_whole_distribution() -> None:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = suggest_all(trial, SPACE)
    assert list(values) == list(SPACE)
    assert trial.distributions == SPACE  # log and step included
    with pytest.raises(TypeError, match="unsupported distribution"):
        suggest(trial, "odd", object())  # type: ignore[arg-type]


def test_narrowing_keeps_log_and_step_and_skips_names_of_other_spaces() -> None:
    overrides = {"elsewhere": [1], "units": [16, 64], "blocks": [3, 9], "rate": [1e-3, 1e-2]}
    narrowed = narrow_space(SPACE, overrides, where="space")
    assert narrowed["units"] == IntDistribution(16, 64, log=True)
    assert narrowed["blocks"] == IntDistribution(3, 9, step=2)
    assert narrowed["rate"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert "elsewhere" not in narrowed
    # A categorical entry is narrowed and the ones after it still are.
    narrowed = narrow_space(SPACE, {"act": ["gelu"], "units": [16, 64]}, where="space")
    assert narrowed["act"] == CategoricalDistribution(["gelu"])
    assert narrowed["units"] == IntDistribution(16, 64, log=True)
    # One point, and the whole default range, are allowed; a float range of ints is float.
    assert narrow_space(SPACE, {"units": [8, 8]}, where="s")["units"] == IntDistribution(
        8, 8, log=True
    )
    dropout = narrow_space(SPACE, {"dropout": [0, 1 / 2]}, where="s")["dropout"]
    assert dropout == FloatDistribution(0.0, 0.5, step=0.1)
    assert isinstance(dropout.low, float)


@pytest.mark.parametrize(
    "value",
    [[16, 64, 128], [16.0, 64], [True, 64], ["16", 64], [64, 16], [4, 64], [16, 1024]],
)
def test_a_numeric_range_must_be_two_ordered_numbers_inside_the_default(value: list[Any]) -> None:
    with pytest.raises(ConfigError, match=r"'space.units' must be \[low, high\] with 8 <= low"):
        narrow_space(SPACE, {"units": value}, where="space")


def test_a_stepped_range_searches_the_values_between_its_bounds() -> None:
    # Optuna steps from low: [4, 8] of the odd 1..9 sampled 4, 6 and 8, which the space never
    # holds. Bounds move inward onto its values; a high one between them always did.
    for bounds, searched in [
        ([4, 8], (5, 7)),
        ([3, 4], (3, 3)),
        ([5, 5], (5, 5)),
        ([2, 9], (3, 9)),
    ]:
        low, high = searched
        assert narrow_space(SPACE, {"blocks": bounds}, where="s")["blocks"] == IntDistribution(
            low, high, step=2
        )
    with pytest.raises(ConfigError, match=r"'space.blocks' must hold one of its values 1, 3, 5"):
        narrow_space(SPACE, {"blocks": [4, 4]}, where="space")


def test_an_integer_range_given_as_fractions_says_whole_numbers() -> None:
    with pytest.raises(ConfigError, match=r"both whole numbers \('units' is an integer"):
        narrow_space(SPACE, {"units": [16.5, 32.5]}, where="space")


def test_integer_choices_given_as_fractions_or_booleans_say_whole_numbers() -> None:
    # batch_size = [64.0] passed (64.0 == 64, True == 1), and every trial then crashed.
    space = {
        "batch_size": CategoricalDistribution([32, 64]),
        "pool": CategoricalDistribution([0, 1]),
    }
    for name, value in [("batch_size", [64.0]), ("batch_size", [32, 64.0]), ("pool", [True])]:
        with pytest.raises(ConfigError, match=rf"'s.{name}' .* as whole numbers"):
            narrow_space(space, {name: value}, where="s")
    assert narrow_space(space, {"batch_size": [64]}, where="s")["batch_size"].choices == (64,)
    # A whole number names a float choice, which the trial is given as the float.
    rates = {"drop": CategoricalDistribution([0.0, 0.5])}
    narrowed = narrow_space(rates, {"drop": [0]}, where="s")["drop"]
    assert narrowed.choices == (0.0,) and isinstance(narrowed.choices[0], float)
    flags = {"flag": CategoricalDistribution([True, False])}
    with pytest.raises(ConfigError, match=r"distinct choices among \[True, False\], got \[1\]"):
        narrow_space(flags, {"flag": [1]}, where="s")


def test_fit_value_lands_on_the_step_grid() -> None:
    fitted = fit_value(IntDistribution(3, 9, step=2), 6)
    assert fitted == 5 and isinstance(fitted, int)
    assert fit_value(IntDistribution(3, 9, step=2), 1) == 3


def test_a_stepped_float_keeps_its_step_and_its_values() -> None:
    # A hypermodel's hp.Float("drop", 0.0, 0.5, step=0.1) narrowed to [0.1, 0.3] lost its
    # step: trials sampled 0.2946.
    space = {"drop": FloatDistribution(0.0, 0.5, step=0.1)}
    for bounds, searched in [([0.1, 0.3], (0.1, 0.3)), ([0.15, 0.45], (0.2, 0.4))]:
        low, high = searched
        assert narrow_space(space, {"drop": bounds}, where="s")["drop"] == FloatDistribution(
            low, high, step=0.1
        )
    with pytest.raises(ConfigError, match=r"'s.drop' must hold one of its values"):
        narrow_space(space, {"drop": [0.11, 0.19]}, where="s")
