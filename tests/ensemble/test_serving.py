"""Exports in each format, checked as their runtime loads them (`hpo.ensemble.serving`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.ensemble.litert_export import LITERT_NAME, SERVE_LITERT
from hpo.ensemble.onnx_export import ONNX_NAME, SERVE_ONNX
from hpo.ensemble.serving import (
    Format,
    Reference,
    check_formats,
    check_served,
    write_exports,
)
from hpo.errors import ConfigError, HpoError

if TYPE_CHECKING:
    from pathlib import Path


def test_an_image_model_serves_unaugmented_and_whole_in_onnx_and_a_wrong_one_is_refused(
    tmp_path: Path,
) -> None:
    from hpo.models import sepconv2d

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(24) % 3
    # An image family's model as a search builds it: resizing, augmentation (inactive when
    # serving), separable convolutions, batch norm, residual blocks.
    task = {"classes": 3, "image_shape": (8, 8, 3), "upscale": 2, "augment": "flip_translate"}
    model = sepconv2d.build({**sepconv2d.DEFAULTS, **task})
    probabilities = np.asarray(model.predict(images, verbose=0), np.float64)

    right = Reference(images, None, labels, probabilities, tolerance=1e-5)
    entry = write_exports(model, tmp_path, {Format.ONNX}, right)["onnx"]
    assert (
        entry["input_kind"] == "raw"
        and entry["input"] == model.inputs[0].name
        and "not_onnx" not in entry
    )
    assert entry["checked_classes"] == 3 and entry["max_abs_difference"] <= 1e-5

    wrong = Reference(images, None, labels, probabilities[:, ::-1].copy(), tolerance=1e-5)
    with pytest.raises(HpoError, match="the ONNX export disagrees with the evaluated one"):
        check_served(SERVE_ONNX, tmp_path / ONNX_NAME, images, wrong, "the ONNX export")


def test_an_image_model_serves_whole_in_litert_without_tensorflow(tmp_path: Path) -> None:
    from hpo.models import conv2d

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (18, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(18) % 3
    task = {"classes": 3, "image_shape": (8, 8, 3), "upscale": 2, "augment": "flip"}
    model = conv2d.build({**conv2d.DEFAULTS, **task})
    probabilities = np.asarray(model.predict(images, verbose=0), np.float64)

    right = Reference(images, None, labels, probabilities, tolerance=1e-5)
    entry = write_exports(model, tmp_path, {Format.LITERT}, right)["litert"]
    assert entry["path"] == LITERT_NAME and (tmp_path / LITERT_NAME).is_file()
    assert entry["input_kind"] == "raw" and "not_litert" not in entry
    assert "without hpo, keras or tensorflow" in entry["loaded_with"]
    assert entry["checked_classes"] == 3 and entry["max_abs_difference"] <= 1e-5

    wrong = Reference(images, None, labels, probabilities[:, ::-1].copy(), tolerance=1e-5)
    with pytest.raises(HpoError, match="the LiteRT export disagrees with the evaluated one"):
        check_served(SERVE_LITERT, tmp_path / LITERT_NAME, images, wrong, "the LiteRT export")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_served_formats_off_tensorflow_are_refused_before_any_work(backend: str) -> None:
    check_formats([Format.KERAS], backend)
    for fmt in (Format.SAVEDMODEL, Format.ONNX, Format.LITERT):
        check_formats([fmt], "tensorflow")
        with pytest.raises(ConfigError, match=rf"--format {fmt.value} needs the TensorFlow.*"):
            check_formats([fmt], backend)


def test_onnx_without_its_packages_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "tf2onnx" else real(name)
    )
    check_formats([Format.SAVEDMODEL], "tensorflow")
    with pytest.raises(ConfigError, match=r"tf2onnx is not installed.*pip install 'hpo\[onnx\]'"):
        check_formats([Format.ONNX], "tensorflow")


def test_litert_without_its_interpreter_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "ai_edge_litert" else real(name)
    )
    check_formats([Format.ONNX], "tensorflow")
    with pytest.raises(
        ConfigError, match=r"ai_edge_litert is not installed.*pip install 'hpo\[litert\]'"
    ):
        check_formats([Format.LITERT], "tensorflow")
