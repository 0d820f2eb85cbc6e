from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.models import _textconv, conv1d, sepconv1d
from hpo.tasks.imdb import IMDB

FAMILIES = [conv1d, sepconv1d]
INPUT = {"vocab_size": 50, "seq_len": 27}


def _edge(dist: Any, high: bool) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[-1 if high else 0]
    assert isinstance(dist, (IntDistribution, FloatDistribution))
    return dist.high if high else dist.low


def _forward(model: Any, params: dict[str, Any]) -> np.ndarray:
    x = np.random.default_rng(0).integers(0, params["vocab_size"], (3, params["seq_len"]))
    return np.asarray(model(x, training=False))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("high", [False, True], ids=["low", "high"])
def test_family_builds_at_the_edges_of_its_space(family: Any, high: bool) -> None:
    params = {name: _edge(dist, high) for name, dist in family.SPACE.items()} | INPUT
    model = family.build(params)
    probabilities = _forward(model, params)
    assert probabilities.shape == (3, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    conv_type = "SeparableConv1D" if family is sepconv1d else "Conv1D"
    convs = [layer for layer in model.layers if type(layer).__name__ == conv_type]
    assert len(convs) == params["blocks"] * params["branches"]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize(
    "flip", ["batch_norm", "residual", "block_pool", "global_pool", "dense_units"]
)
def test_family_builds_with_each_categorical_choice(family: Any, flip: str) -> None:
    for choice in family.SPACE[flip].choices:
        params = {**family.DEFAULTS, **INPUT, flip: choice}
        model = family.build(params)
        assert _forward(model, params).shape == (3, 1)
        names = {layer.name for layer in model.layers}
        if flip == "residual":
            assert any("residual" in n for n in names) == bool(choice)
        if flip == "batch_norm":
            assert any(n.endswith("_bn") for n in names) == bool(choice)
        if flip == "dense_units":
            assert ("head" in names) == bool(choice)


def test_defaults_lie_in_each_familys_space() -> None:
    for family in FAMILIES:
        for name, dist in family.SPACE.items():
            assert dist._contains(dist.to_internal_repr(family.DEFAULTS[name])), name


def test_branches_widen_the_kernel() -> None:
    assert _textconv.kernel_sizes({"kernel_size": 3, "branches": 3}) == [3, 5, 7]
    params = {**conv1d.DEFAULTS, **INPUT}
    model = conv1d.build(params)
    widths = sorted(
        layer.kernel_size[0] for layer in model.layers if type(layer).__name__ == "Conv1D"
    )
    assert widths == [3, 5, 7]


def test_task_registers_the_text_families() -> None:
    assert set(IMDB.families) == {"conv1d", "sepconv1d", "ngram"}
