from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.cost import example_flops
from hpo.models import _imageconv, conv2d, sepconv2d

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FAMILIES = [sepconv2d, conv2d]
TASK = {"classes": 4, "image_shape": (16, 16, 3), "upscale": 1, "augment": "none"}


def _name(family: Any) -> str:
    return str(family.__name__).rsplit(".", 1)[-1]


def _edge(dist: Any, high: bool) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[-1 if high else 0]
    assert isinstance(dist, (IntDistribution, FloatDistribution))
    return dist.high if high else dist.low


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _layers_of(model: Any, class_name: str) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ == class_name]


CORNERS = {
    "low": ({"upscale": 1, "augment": "none"}, False),
    "high": ({"upscale": 2, "augment": "flip_translate", "image_shape": (32, 32, 3)}, True),
    "low_upscaled_flip": ({"upscale": 2, "augment": "flip"}, False),
    "high_native_flip": ({"upscale": 1, "augment": "flip"}, True),
}


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
@pytest.mark.parametrize("corner", list(CORNERS))
def test_family_builds_at_the_corners_of_its_space(family: Any, corner: str) -> None:
    task, high = CORNERS[corner]
    params = {**TASK, **{name: _edge(d, high) for name, d in family.SPACE.items()}, **task}
    model = family.build(params)
    x = _images(3, params["image_shape"])
    for training in (False, True):
        probabilities = np.asarray(model(x, training=training))
        assert probabilities.shape == (3, params["classes"])
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    block_conv = "SeparableConv2D" if family is sepconv2d else "Conv2D"
    convs = [layer for layer in _layers_of(model, block_conv) if layer.name.startswith("block")]
    assert [c.filters for c in convs if c.name.endswith(("_conv1", "_conv2"))] == [
        w for w in _imageconv.block_widths(params) for _ in (1, 2)
    ]
    names = {layer.name for layer in model.layers}
    assert any("_bn" in n for n in names) == params["batch_norm"]
    assert any(n.endswith("_residual") for n in names) == params["residual"]
    assert ("upscale" in names) == (params["upscale"] == 2)
    assert ("augment_flip" in names) == (params["augment"] != "none")
    assert ("augment_translate" in names) == (params["augment"] == "flip_translate")
    named = re.compile(
        r"image|rescale|upscale|augment_\w+|stem|block\d+_[a-z]+\d?|global_pool|dropout|probabilities"
    )
    assert [layer.name for layer in model.layers if not named.fullmatch(layer.name)] == []


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_defaults_build_for_cifar_and_lie_in_the_space(family: Any) -> None:
    for name, dist in family.SPACE.items():
        assert dist._contains(dist.to_internal_repr(family.DEFAULTS[name])), name
    params = {**family.DEFAULTS, **TASK, "classes": 10, "image_shape": (32, 32, 3)}
    model = family.build(params)
    assert model.inputs[0].dtype == "uint8"
    probabilities = np.asarray(model.predict(_images(5, (32, 32, 3)), verbose=0))
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_block_widths_double_up_to_the_cap() -> None:
    assert _imageconv.block_widths({"filters": 64, "blocks": 5}) == [64, 128, 256, 512, 512]
    assert _imageconv.block_widths({"filters": 16, "blocks": 2}) == [16, 32]


@pytest.mark.parametrize("bad", [{"augment": "rotate"}, {"upscale": 3}])
def test_build_rejects_unknown_task_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        conv2d.build({**conv2d.DEFAULTS, **TASK, **bad})


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_suggest_returns_values_inside_the_space(family: Any) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params = family.suggest(study.ask())
        assert set(params) == set(family.SPACE)
        for name, dist in family.SPACE.items():
            assert dist._contains(dist.to_internal_repr(params[name])), (name, params[name])


def _colour_problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """3 classes of noisy 16x16 images; class c has a brighter channel c."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(100, 40, (n, 16, 16, 3))
    x[np.arange(n), :, :, y] += 60
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_family_learns_a_separable_problem(family: Any) -> None:
    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = _colour_problem(384, seed=0)
    x_test, y_test = _colour_problem(192, seed=1)
    params = {**family.DEFAULTS, **TASK, "classes": 3, "augment": "flip"}
    model = family.build(params)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=4, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.8


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_save_and_safe_mode_load_reproduce_predictions(family: Any, tmp_path: Path) -> None:
    import keras

    params = {
        **TASK,
        **{name: _edge(d, True) for name, d in family.SPACE.items()},
        "blocks": 2,
        "upscale": 2,
        "augment": "flip_translate",
    }
    model = family.build(params)
    x = _images(4, params["image_shape"], seed=3)
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), before, rtol=1e-5, atol=1e-6)


@pytest.fixture
def bf16_policy() -> Iterator[None]:
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
@pytest.mark.usefixtures("bf16_policy")
def test_family_predicts_float32_under_mixed_bfloat16(family: Any) -> None:
    params = {**family.DEFAULTS, **TASK, "upscale": 2, "augment": "flip_translate"}
    model = family.build(params)
    assert model.get_layer("block0_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("rescale").compute_dtype == "float32"
    x = _images(3, params["image_shape"])
    for training in (False, True):
        probabilities = model(x, training=training)
        assert probabilities.dtype == "float32"
        np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, rtol=1e-3)


def test_flops_are_plausible_and_separable_is_cheaper() -> None:
    params = {**conv2d.DEFAULTS, **TASK, "image_shape": (32, 32, 3)}
    separable = example_flops(sepconv2d.build(params), (32, 32, 3))
    plain = example_flops(conv2d.build(params), (32, 32, 3))
    # The stem and the first block at 32 x 32 alone: 2 x (3*3*3*16 + 2*3*3*16*16) per pixel.
    first_block = 2 * (3 * 3 * 3 * 16 + 2 * 3 * 3 * 16 * 16) * 32 * 32
    assert first_block < plain < 3 * first_block
    assert 0 < separable < plain / 3
    upscaled = example_flops(conv2d.build({**params, "upscale": 2}), (32, 32, 3))
    assert 3.5 < upscaled / plain < 4.1


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_family_builds_channels_last_under_a_channels_first_setting(family: Any) -> None:
    # A keras.json, or a user's family module, that set channels_first: hpo's images are
    # [height, width, 3] all the same, and the setting is left as it was.
    import keras

    params = {**family.DEFAULTS, **TASK, "augment": "flip"}
    keras.config.set_image_data_format("channels_first")
    try:
        model = family.build(params)
        assert keras.config.image_data_format() == "channels_first"
    finally:
        keras.config.set_image_data_format("channels_last")
    formats = {layer.get_config().get("data_format") for layer in model.layers}
    assert formats - {None} == {"channels_last"}
    assert model.get_layer("stem").output.shape[1:3] == params["image_shape"][:2]
