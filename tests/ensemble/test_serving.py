"""Exports in each format, checked as their runtime loads them (`hpo.ensemble.serving`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from hpo.ensemble.litert_export import LITERT_NAME, SERVE_LITERT
from hpo.ensemble.onnx_export import ONNX_NAME, SERVE_ONNX
from hpo.ensemble.serving import (
    Format,
    Reference,
    check_formats,
    check_served,
    serving_backend,
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


def test_an_onnx_graph_with_inputs_the_model_lacks_is_refused_naming_why_and_removed(
    tmp_path: Path,
) -> None:
    """tf2onnx makes an adapted Normalization's mean and variance graph inputs: the check's
    own unpacking failed ("too many values to unpack") and the file that no server can feed
    stayed in the folder."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (32, 4)).astype("float32")
    normalize = keras.layers.Normalization()
    normalize.adapt(x)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(normalize(inputs)))
    probabilities = np.asarray(model.predict(x, verbose=0), np.float64)
    reference = Reference(x, None, np.arange(32) % 2, probabilities, tolerance=1e-5)
    with pytest.raises(
        HpoError, match=r"takes 3 inputs .*Normalization's mean .* as savedmodel or keras"
    ):
        write_exports(model, tmp_path, {Format.ONNX}, reference)
    assert not (tmp_path / ONNX_NAME).exists()


def test_an_onnx_op_onnx_runtime_lacks_is_refused_naming_the_fix_and_the_final_folder(
    tmp_path: Path,
) -> None:
    """A Discretization becomes tf2onnx's Bucketize, which ONNX Runtime has no kernel for: the
    message was ONNX Runtime's bare INVALID_GRAPH, and named the staging folder the export was
    written in (removed by then), not the folder it was for."""
    import keras

    x = np.random.default_rng(0).uniform(0, 1, (16, 1)).astype("float32")
    inputs = keras.Input((1,))
    bins = keras.layers.Discretization(bin_boundaries=[0.25, 0.5, 0.75])(inputs)
    hot = keras.layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")(bins)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hot))
    probabilities = np.asarray(model.predict(x, verbose=0), np.float64)
    reference = Reference(x, None, np.arange(16) % 2, probabilities, tolerance=1e-5)
    staging, final = tmp_path / ".out.tmp-1", tmp_path / "out"
    staging.mkdir()
    with pytest.raises(HpoError) as raised:
        write_exports(model, staging, {Format.ONNX}, reference, published=final)
    message = str(raised.value)
    assert "Bucketize" in message and "Export it as savedmodel or keras instead" in message
    assert f"{final}/{ONNX_NAME}" in message and str(staging) not in message
    assert not (staging / ONNX_NAME).exists()


def test_text_for_onnx_or_litert_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """ONNX of a model that vectorizes text itself was refused only after ensemble.keras and
    saved_model/ were written, and they stayed."""
    import keras

    texts = np.array([["good film"], ["bad film"], ["fine"], ["dull"]])
    inputs = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["good", "bad", "fine"])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(ids))
    import tensorflow as tf

    probabilities = np.asarray(model.predict(tf.constant(texts), verbose=0), np.float64)
    reference = Reference(texts, None, np.arange(4) % 2, probabilities, tolerance=1e-5)
    for converted in (Format.ONNX, Format.LITERT):
        with pytest.raises(ConfigError, match=rf"--format {converted.value}: .*no string op"):
            write_exports(model, tmp_path, {Format.KERAS, Format.SAVEDMODEL, converted}, reference)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_removes_what_it_wrote_and_keeps_what_it_left(tmp_path: Path) -> None:
    from hpo.ensemble.serving import _removed_on_failure

    kept, written, folder = tmp_path / "kept.onnx", tmp_path / "new.onnx", tmp_path / "saved"
    kept.write_text("an earlier export")
    for path, write in (
        (kept, lambda: None),  # failed before writing: the earlier file stays
        (written, lambda: written.write_text("half")),
        (folder, lambda: (folder.mkdir(), (folder / "saved_model.pb").write_text("half"))),
    ):
        with pytest.raises(HpoError), _removed_on_failure(path):
            write()
            raise HpoError("did not serve")
    assert kept.read_text() == "an earlier export"
    assert not written.exists() and not folder.exists()


def test_hashed_ngrams_serve_in_onnx_as_in_keras(tmp_path: Path) -> None:
    from hpo.models import ngram

    # Trigrams of ids up to 40,000 wrap the 32-bit hash to negative values, whose floor modulo
    # tf2onnx would write as a remainder truncated toward zero (other buckets, other outputs).
    rng = np.random.default_rng(2)
    tokens = rng.integers(2, 40000, (32, 40)).astype(np.int32)
    tokens[::3, 25:] = 0  # padded reviews too
    params = {**ngram.DEFAULTS, "ngram_order": 3, "ngram_dim": 8, "ngram_buckets": 65536}
    model = ngram.build(params)
    for layer in model.layers:  # weights far from their initial zeros: every bucket counts
        layer.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in layer.get_weights()])
    probabilities = np.asarray(model.predict(tokens, verbose=0), np.float64)

    reference = Reference(tokens, tokens, np.arange(32) % 2, probabilities, tolerance=1e-5)
    entry = write_exports(model, tmp_path, {Format.ONNX}, reference)["onnx"]
    assert entry["input_kind"] == "token ids" and entry["max_abs_difference"] <= 1e-5


def test_a_bfloat16_model_goes_to_onnx_and_litert_as_a_float32_copy(tmp_path: Path) -> None:
    import keras

    from hpo.models import conv1d

    rng = np.random.default_rng(3)
    tokens = rng.integers(2, 500, (16, 30)).astype(np.int32)
    tokens[::4, 20:] = 0
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as `precision = "auto"` may
    try:
        model = conv1d.build({**conv1d.DEFAULTS, "vocab_size": 500, "seq_len": 30})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probabilities = np.asarray(model.predict(tokens, verbose=0), np.float64)
    # Evaluated in bfloat16; tf2onnx would mix float16 and bfloat16 in its masking.
    reference = Reference(tokens, tokens, np.arange(16) % 2, probabilities, tolerance=2e-3)
    entries = write_exports(model, tmp_path, {Format.ONNX, Format.LITERT}, reference)
    for entry in entries.values():
        assert entry["computes_in"] == "float32" and "bfloat16" in entry["float32_copy"]
        # The float32 copy is served as Keras computes it, and near the bfloat16 predictions.
        assert entry["max_abs_difference"] <= 1e-5 and entry["tolerance"] == 1e-5
        assert 0 < entry["float32_max_abs_difference_from_evaluated"] < 2e-2
    assert model.layers[1].compute_dtype == "bfloat16"  # the model itself is left as it was


def test_a_float16_model_goes_to_litert_as_a_float32_copy(tmp_path: Path) -> None:
    """A session's mixed_float16 (hpo.Tuner carries it to the trials): the LiteRT converter
    failed on a plain Dense model's casts, with 17 lines of its errors."""
    import keras

    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(hidden)
        model = keras.Model(inputs, outputs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probabilities = np.asarray(model.predict(x, verbose=0), np.float64)
    reference = Reference(x, None, np.arange(16) % 2, probabilities, tolerance=2e-3)
    entry = write_exports(model, tmp_path, {Format.LITERT}, reference)["litert"]
    assert entry["computes_in"] == "float32" and "float16" in entry["float32_copy"]
    assert entry["max_abs_difference"] <= 1e-5


def test_a_float32_copy_made_in_a_float16_session_computes_sublayers_in_float32() -> None:
    """A custom layer that makes its Dense in `__init__` gives it the global policy, not its
    own: rebuilt in a mixed_float16 session, that Dense came back float16 and the LiteRT
    converter refused its float16 MatMul."""
    import keras

    from hpo.ensemble.serving import float32_copy

    class Residual(keras.layers.Layer):
        def __init__(self, units: int = 3, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.dense = keras.layers.Dense(units, activation="relu")

        def call(self, x: Any) -> Any:
            return keras.ops.concatenate([x, self.dense(x)], axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with keras.saving.custom_object_scope({"Residual": Residual}):
            inputs = keras.Input((4,))
            hidden = Residual(name="residual")(inputs)
            outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(hidden)
            model = keras.Model(inputs, outputs)
            probabilities = np.asarray(model.predict(x, verbose=0), np.float64)
            reference = Reference(x, None, np.arange(8) % 2, probabilities, tolerance=2e-3)
            copy, _, note = float32_copy(model, reference, frozenset({"mixed_float16"}))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert note["computes_in"] == "float32"
    assert copy.get_layer("residual").dense.compute_dtype == "float32"


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
def test_served_formats_are_written_on_tensorflow_or_refused_without_it(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from hpo.backend import Backend

    made_on = Backend(backend)
    # A .keras file loads on any backend: TensorFlow writes the served formats.
    assert serving_backend(made_on, ["keras"]) is made_on
    for fmt in ("savedmodel", "onnx", "litert"):
        assert serving_backend(made_on, ["keras", fmt]) is Backend.TENSORFLOW
    # Without TensorFlow they stay on the models' backend, which refuses before any work.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "tensorflow" else real(name)
    )
    assert serving_backend(made_on, ["onnx"]) is made_on
    check_formats([Format.KERAS], backend)
    for fmt in (Format.SAVEDMODEL, Format.ONNX, Format.LITERT):
        with pytest.raises(
            ConfigError, match=rf"--format {fmt.value} is written by TensorFlow.*pip install"
        ):
            check_formats([fmt], backend)


@pytest.mark.parametrize("what", ["ensemble", "trial"])
def test_hpo_export_refuses_a_format_it_cannot_write_before_loading_keras(
    what: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Loading Keras on JAX or PyTorch takes seconds: the refusal comes first."""
    import importlib.util
    import json

    from hpo.ensemble import export_command

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "tensorflow" else real(name)
    )

    def load_keras(backend: object) -> None:
        raise AssertionError(f"Keras loaded on {backend} before the refusal")

    monkeypatch.setattr(export_command, "use_backend", load_keras)
    if what == "ensemble":
        folder = tmp_path / "ensemble"
        folder.mkdir()
        report = {"backend": "jax", "study": "tiny", "test_data": {"sha256": "0" * 64}}
        (folder / "report.json").write_text(json.dumps(report))
        args = ["--ensemble", str(folder), "--study", str(tmp_path / "unread.toml")]
    else:
        import optuna

        from hpo.config import load_study_config

        study = tmp_path / "study.toml"
        study.write_text('name = "tiny"\n\n[data]\npath = "data"\n')
        url = load_study_config(study).storage_url
        (tmp_path / "tiny").mkdir()
        searched = optuna.create_study(study_name="tiny", storage=url)
        searched.set_user_attr("hpo_config", {"training": {"backend": "jax"}})
        args = ["--trial", "0", "--study", str(study)]
    assert export_command.main([*args, "--format", "onnx"]) == 2
    refused = capsys.readouterr().err
    assert "--format onnx is written by TensorFlow, which is not installed" in refused


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


def test_an_export_that_disagrees_across_backends_says_where_the_models_were_made() -> None:
    """A study trained on PyTorch with a bicubic Resizing: its SavedModel, checked on
    TensorFlow, disagreed "on test example 58" (a validation row) and named no cause."""
    import keras

    from hpo.ensemble.export import across_backends

    here = keras.config.backend()
    other = "torch" if here != "torch" else "jax"
    disagrees = "the SavedModel disagrees with the evaluated one by 7.0e-02 on example 58"
    with pytest.raises(HpoError) as raised, across_backends(other):
        raise HpoError(disagrees + " of those checked (tolerance 1e-05)")
    assert str(raised.value).startswith(disagrees)
    assert f"trained and evaluated on {other}, and the exports are checked here on {here}" in (
        str(raised.value)
    )
    assert f"--format keras, or formats=('keras',)), which stays on {other}" in str(raised.value)
    for made_on, message in ((here, disagrees), (other, "tf2onnx could not convert")):
        with pytest.raises(HpoError, match=f"^{message}$"), across_backends(made_on):
            raise HpoError(message)


def test_a_converters_own_errors_go_into_the_message_not_onto_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The LiteRT converter's C++ code writes its errors to the process's stderr: dozens of
    lines around hpo's message, which said "it printed: ''"."""
    import keras

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 50, (8, 6)).astype(np.int32)
    inputs = keras.Input((6,), dtype="int32")
    hidden = keras.layers.LSTM(4)(keras.layers.Embedding(50, 4, mask_zero=True)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    probabilities = np.asarray(model.predict(tokens, verbose=0), np.float64)
    reference = Reference(tokens, tokens, np.arange(8) % 2, probabilities, tolerance=1e-5)
    capfd.readouterr()
    with pytest.raises(HpoError, match=r"it printed: '.*Lowering tensor list ops is failed"):
        write_exports(model, tmp_path, {Format.LITERT}, reference)
    assert "TensorListReserve" not in capfd.readouterr().err
    assert not (tmp_path / LITERT_NAME).exists()


def test_inputs_sent_to_a_serving_check_keep_any_name() -> None:
    # np.savez(path, **arrays) refused an input named "file" and dropped one named "allow_pickle".
    import tempfile
    from pathlib import Path as FolderPath

    from hpo.ensemble.serving import _save_npz

    arrays = {"file": np.arange(3), "allow_pickle": np.ones((2, 2)), "tokens": np.zeros(1, "S4")}
    with tempfile.TemporaryDirectory() as folder:
        path = FolderPath(folder) / "inputs.npz"
        _save_npz(path, arrays)
        with np.load(path, allow_pickle=False) as loaded:
            assert sorted(loaded) == sorted(arrays)
            for name, array in arrays.items():
                np.testing.assert_array_equal(loaded[name], array)
