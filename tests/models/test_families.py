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
    assert set(IMDB.families) == {"conv1d", "sepconv1d", "ngram", "nbsvm"}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_training_with_batch_norm_is_the_same_whatever_the_padding(family: Any) -> None:
    """A few training steps on a batch cut to its longest text and on the same batch padded
    to 4x that give the same weights and moving statistics: batch norm sees real tokens only.

    Plain SGD: Adam divides each gradient by its own size, so the conv biases, whose gradient
    before batch norm is zero up to rounding, would move by rounding noise blown up to the
    learning rate, whatever the padding."""
    import keras

    from ..data.test_batching import _padded

    params = {
        **family.DEFAULTS,
        "vocab_size": 300,
        "seq_len": 160,
        "embedding_dim": 8,
        "filters": 8,
        "blocks": 2,
        "batch_norm": True,
        "residual": True,
        "dropout": 0.0,
    }
    lengths = np.array([5, 17, 40, 23, 9, 40, 31, 12])
    cut = _padded(lengths, 40)
    padded = np.pad(cut, [(0, 0), (0, 120)])
    y = np.array([0, 1, 1, 0, 1, 0, 1, 0], np.float32)
    weights = []
    keras.utils.set_random_seed(0)
    model = family.build(params)
    initial = model.get_weights()  # moving statistics included
    for x in (cut, padded):
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
        for _ in range(3):
            model.train_on_batch(x, y)
        weights.append(model.get_weights())
        # The moving statistics moved (the check is not vacuous).
        moving = model.get_layer("block0_bn").moving_mean
        assert np.abs(np.asarray(moving)).max() > 0
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
