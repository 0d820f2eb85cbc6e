"""What hpo reads from a model it did not write: output, labels, padding; compile and export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pytest
from keras import layers

from hpo.contract import load_keras_file
from hpo.errors import ConfigError
from hpo.training.interface import (
    Labels,
    ModelInterface,
    Output,
    Padding,
    check_padding,
    compile_model,
    member_model,
    read_interface,
    read_labels,
    read_output,
    read_regression_output,
    to_probabilities,
)

if TYPE_CHECKING:
    from pathlib import Path


def _tokens(n: int = 12, width: int = 20, seed: int = 0) -> np.ndarray:
    """Token ids padded at the end, of lengths 3 to width."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, width), dtype=np.int32)
    for i, length in enumerate(rng.integers(3, width + 1, n)):
        x[i, :length] = rng.integers(2, 50, length)
    return x


def _text_model(head: Any, *, mask: bool = True, outputs: int = 1) -> keras.Model:
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=mask)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(outputs, activation=head)(x))


def _optimizer() -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(1e-2)


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = layers.Embedding(50, 8, mask_zero=True)
        self.pool = layers.GlobalAveragePooling1D()
        self.out = layers.Dense(1, activation="sigmoid")

    def call(self, x: Any) -> Any:
        return self.out(self.pool(self.embedding(x)))


def test_outputs_are_read_from_the_layer_or_from_the_values() -> None:
    x = _tokens()
    assert read_output(_text_model("sigmoid"), x, 2, "f") == Output(1, from_logits=False)
    assert read_output(_text_model(None), x, 2, "f") == Output(1, from_logits=True)
    assert read_output(_text_model("softmax", outputs=2), x, 2, "f") == Output(2, False)
    assert read_output(_text_model(None, outputs=3), x, 3, "f") == Output(3, True)
    # A subclassed model has no output layer to read: its values are probabilities.
    assert read_output(_Subclassed(), x, 2, "f") == Output(1, from_logits=False)


def test_an_output_that_does_not_fit_the_task_names_the_shape_and_the_fix() -> None:
    x = _tokens()
    with pytest.raises(ConfigError, match=r"family 'mine'.*shape \[12, 3\].*2 classes") as error:
        read_output(_text_model("softmax", outputs=3), x, 2, "mine")
    assert "Dense(1, activation='sigmoid')" in str(error.value)
    inputs = keras.Input(shape=(None,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(50, 4)(inputs))
    two = keras.Model(inputs, [layers.Dense(1)(pooled), layers.Dense(1)(pooled)])
    with pytest.raises(ConfigError, match="has 2 outputs; hpo tunes models with one output"):
        read_output(two, x, 2, "mine")
    # A prediction a position: a tag a token (or a CNN's Dense before any pooling).
    tags = keras.Sequential([keras.Input((None,), dtype="int32"), layers.Embedding(50, 4)])
    tags.add(layers.Dense(5, activation="softmax"))
    for check in (
        lambda: read_output(tags, x, 5, "mine"),
        lambda: read_regression_output(tags, x, x.shape[1], "mine"),
    ):
        with pytest.raises(ConfigError, match=rf"shape \[12, {x.shape[1]}, 5\].*each of "):
            check()
    images = keras.Sequential([keras.Input((8, 8, 3)), layers.Flatten(), layers.Dense(1)])
    with pytest.raises(ConfigError, match=r"fails on a batch of the task's inputs"):
        read_output(images, x, 2, "mine")
    # Keras's message for a model of a fixed input size reads whole, without colour codes.
    fixed = keras.Sequential([keras.Input((32, 32, 3)), layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ConfigError) as caught:
        read_output(fixed, np.zeros((12, 24, 24, 3), "float32"), 2, "mine")
    message = str(caught.value)
    assert "\x1b" not in message and "Arguments received" not in message, message
    assert "received input with shape (12, 1728). Take inputs of shape (24, 24, 3)" in message
    # A build that forgot `return model`, or returned more than the model.
    for built, kind in ((None, "NoneType"), ((images, "extra"), "tuple")):
        with pytest.raises(ConfigError, match=rf"returned a {kind}, not a Keras model.*return"):
            read_output(built, x, 2, "mine")  # type: ignore[arg-type]


def test_one_output_for_three_classes_may_be_targets_unless_the_model_is_a_classifier() -> None:
    from hpo.errors import OneValueOutput

    x = _tokens()
    # One linear value an example: no classifier of 3 classes, maybe regression targets.
    with pytest.raises(OneValueOutput):
        read_output(_text_model(None), x, 3, "mine")
    # One sigmoid unit, or a binary loss: a classifier of two, given labels of three.
    binary_loss = _text_model(None)
    binary_loss.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    for model in (_text_model("sigmoid"), binary_loss):
        with pytest.raises(ConfigError, match=r"two classes.*hold 3 classes \(0 to 2\)") as error:
            read_output(model, x, 3, "mine")
        assert not isinstance(error.value, OneValueOutput)
        assert "Dense(3, activation='softmax')" in str(error.value)


def test_a_linear_output_compiled_with_a_regression_loss_gives_no_logits() -> None:
    from hpo.errors import OneValueOutput

    x = _tokens()
    # Dense(1) and "mse" on labels 0 and 1: targets (hpo.Tuner reads them so), not logits, a
    # sigmoid of which was scored at 0 instead of 0.5.
    for loss in ("mse", keras.losses.Huber(), keras.losses.mean_absolute_error):
        model = _text_model(None)
        model.compile(loss=loss)
        with pytest.raises(OneValueOutput, match=r"compiled with \w+, a regression loss"):
            read_output(model, x, 2, "mine")
    several = _text_model(None, outputs=3)
    several.compile(loss="mse")
    with pytest.raises(ConfigError, match=r"neither class probabilities nor logits") as error:
        read_output(several, x, 3, "mine")
    assert not isinstance(error.value, OneValueOutput)
    # A sigmoid fitted with "mse" still gives probabilities; logits still need no compile.
    probabilities = _text_model("sigmoid")
    probabilities.compile(loss="mse")
    assert read_output(probabilities, x, 2, "mine") == Output(1, from_logits=False)
    assert read_output(_text_model(None), x, 2, "mine") == Output(1, from_logits=True)


def test_labels_follow_the_model_s_own_loss() -> None:
    x, y = _tokens(), np.arange(12) % 2
    model = _text_model("softmax", outputs=2)
    output = read_output(model, x, 2, "f")
    assert read_labels(model, output, y, 2, "f") is Labels.SPARSE  # uncompiled: hpo's loss
    model.compile(loss="categorical_crossentropy")
    assert read_labels(model, output, y, 2, "f") is Labels.ONE_HOT
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy())
    assert read_labels(model, output, y, 2, "f") is Labels.SPARSE

    def own_loss(y_true: Any, y_pred: Any) -> Any:  # takes one-hot rows only
        return keras.ops.sum(-y_true * keras.ops.log(y_pred + 1e-7), axis=-1)

    model.compile(loss=own_loss)
    assert read_labels(model, output, y, 2, "f") is Labels.ONE_HOT
    interface = ModelInterface(output, Labels.ONE_HOT, None)
    assert interface.encode_labels(np.array([1, 0]), 2).tolist() == [[0, 1], [1, 0]]
    # Its metrics take the same labels, or the loss's labels would fail (or fool) them.
    model.compile(loss="mse", metrics=["accuracy", "sparse_categorical_crossentropy"])
    with pytest.raises(ConfigError, match=r"loss 'mse' takes one-hot rows and its metric "):
        read_labels(model, output, y, 2, "f")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["categorical_accuracy"])
    with pytest.raises(ConfigError, match=r"metric 'categorical_accuracy' takes one-hot rows"):
        read_labels(model, output, y, 2, "f")
    model.compile(loss="categorical_crossentropy", metrics=[keras.metrics.AUC(), "accuracy"])
    assert read_labels(model, output, y, 2, "f") is Labels.ONE_HOT


@pytest.mark.parametrize(
    "loss",
    [
        "binary_crossentropy",
        keras.losses.BinaryCrossentropy(),
        keras.losses.BinaryFocalCrossentropy(),
    ],
)
def test_a_binary_loss_on_several_sigmoid_units_takes_one_hot_rows(loss: Any) -> None:
    x, y = _tokens(), np.arange(12) % 3
    model = _text_model("sigmoid", outputs=3)
    model.compile(loss=loss, metrics=["accuracy"])
    output = read_output(model, x, 3, "f")

    assert read_labels(model, output, y, 3, "f") is Labels.ONE_HOT


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="counts TensorFlow's traces; JAX compiles a program a width, eager or not",
)
def test_the_padding_probe_predicts_compiled_not_with_an_eager_call_a_width() -> None:
    # Called eagerly, a recurrent layer runs a Python loop over each width's time steps: on a
    # BiLSTM the probe took 30 times model.predict's time, and killed a healthy trial as hung.
    calls: list[int] = []

    class Counted(layers.Layer):
        def call(self, t: Any) -> Any:
            calls.append(1)
            return t

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(50, 8, mask_zero=True)(Counted()(inputs))
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    x = _tokens(n=32, width=200)
    calls.clear()
    padding, reason = check_padding(model, x)
    assert padding is Padding.BUCKETED, reason
    # The full width and 19 cut ones, traced once or twice instead of called one by one.
    assert len(calls) <= 3, f"the model ran {len(calls)} times in Python"


def test_the_padding_probe_tells_masked_from_unmasked_and_fixed_length_models() -> None:
    x = _tokens()
    padding, reason = check_padding(_text_model("sigmoid", mask=True), x)
    assert padding is Padding.BUCKETED, reason
    padding, reason = check_padding(_text_model("sigmoid", mask=False), x)
    assert padding is Padding.FIXED and "does not mask padding" in reason
    inputs = keras.Input(shape=(20,), dtype="int32")
    flat = layers.Flatten()(layers.Embedding(50, 4)(inputs))
    fixed = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(flat))
    padding, reason = check_padding(fixed, x)
    assert padding is Padding.FIXED and "only full-length texts" in reason
    interface = read_interface(fixed, x, np.arange(12) % 2, 2, family="f", text=True)
    assert interface.padding is Padding.FIXED and not interface.bucketed
    # Images are never padded.
    images = keras.Sequential([keras.Input((4, 4, 3)), layers.Flatten(), layers.Dense(3)])
    pixels = np.zeros((6, 4, 4, 3), dtype=np.uint8)
    assert read_interface(images, pixels, np.arange(6) % 3, 3, family="f", text=False).bucketed


def test_compile_keeps_the_model_s_own_loss_and_metrics_and_adds_accuracy() -> None:
    x, y = _tokens(), np.arange(12) % 2
    model = _text_model("sigmoid")
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), "accuracy"],
    )
    interface = read_interface(model, x, y, 2, family="f", text=True)
    compile_model(model, interface, _optimizer)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    logs = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y)).history
    assert {"auc", "accuracy", "val_auc", "val_accuracy"} <= set(logs)


def test_logits_are_trained_with_from_logits_and_accuracy_at_zero() -> None:
    x, y = _tokens(), np.arange(12) % 2
    model = _text_model(None)
    interface = read_interface(model, x, y, 2, family="f", text=True)
    assert interface.output == Output(1, from_logits=True)
    compile_model(model, interface, _optimizer)
    assert model.loss.get_config()["from_logits"] is True
    model.fit(x, y, epochs=1, verbose=0)
    logits = np.asarray(model.predict(x, verbose=0))[:, 0]
    accuracy = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(float(np.mean((logits > 0) == y)))


def test_a_member_gives_hpo_s_probabilities_and_loads_back(tmp_path: Path) -> None:
    x = _tokens()
    model = _text_model(None, outputs=2)
    output = read_output(model, x, 2, "f")
    member = member_model(model, output, x)
    raw = np.asarray(model.predict(x, verbose=0))
    expected = np.exp(raw[:, 1]) / np.exp(raw).sum(axis=1)
    got = np.asarray(member.predict(x, verbose=0))
    assert got.shape == (12, 1)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(to_probabilities(raw, output), expected, rtol=1e-5)
    member.save(tmp_path / "member.keras")
    loaded = load_keras_file(tmp_path / "member.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), got, rtol=1e-6)
    # A model that already gives hpo's probabilities is stored as it is.
    plain = _text_model("sigmoid")
    assert member_model(plain, read_output(plain, x, 2, "f"), x) is plain
