"""Text models written the way users write them (KerasTuner's docs, keras.io examples).

Not hpo's code and not written for hpo: each is what a Keras user would bring. A test copies this
file (and `keras_io_layers.py`, which it imports) beside a study file that names its models in
`[families]`; the test never imports it, as hpo's commands are what must.
"""

from __future__ import annotations

import keras
import keras_tuner
from keras import layers
from keras_io_layers import TokenAndPositionEmbedding, TransformerBlock, scaled_relu


def functional_masked(hp):
    """Embedding with `mask_zero` and a GRU: padding is masked, so batches may be cut."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 16, mask_zero=True)(inputs)
    x = layers.GRU(hp.Int("units", 8, 16, step=8))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def functional_unmasked(hp):
    """The model of the issue: Embedding without `mask_zero`, then GlobalAveragePooling1D."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), hp.Int("dim", 8, 32, step=8))(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def sequential_unbuilt(hp):
    """A `Sequential` without an Input, a two-unit softmax, compiled by the user."""
    model = keras.Sequential(
        [
            layers.Embedding(hp.get("vocab_size"), hp.Choice("dim", [8, 16])),
            layers.GlobalAveragePooling1D(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def sequential_built(hp):
    """A `Sequential` with an Input, Conv1D and global max pooling (padding matters)."""
    return keras.Sequential(
        [
            keras.Input(shape=(None,), dtype="int32"),
            layers.Embedding(hp.get("vocab_size"), 16),
            layers.Conv1D(hp.Choice("filters", [8, 16]), 3, activation=scaled_tanh),
            layers.GlobalMaxPooling1D(),
            layers.Dense(1, activation="sigmoid"),
        ]
    )


def scaled_tanh(x):
    """An activation of the user's own (LeCun's scaled tanh), a plain function."""
    return 1.7159 * keras.ops.tanh(2.0 / 3.0 * x)


class TextClassifier(keras.Model):
    """A subclassed model that gives a logit (no activation), left uncompiled."""

    def __init__(self, vocab_size, units, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.units = vocab_size, units
        self.embedding = layers.Embedding(vocab_size, units, mask_zero=True)
        self.pool = layers.GlobalAveragePooling1D()
        self.logit = layers.Dense(1)

    def call(self, tokens):
        return self.logit(self.pool(self.embedding(tokens)))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "units": self.units}


def subclassed_unbuilt(hp):
    return TextClassifier(hp.get("vocab_size"), hp.Int("units", 8, 16, step=8))


def subclassed_built(hp):
    model = TextClassifier(hp.get("vocab_size"), hp.Choice("units", [8, 12]))
    model.build((None, None))
    return model


def declarations(hp):
    """Every KerasTuner declaration; raises if a value reaches `build` with the wrong type."""
    values = {
        "int": hp.Int("int", 4, 8),
        "int_step": hp.Int("int_step", 4, 16, step=4),
        "int_log": hp.Int("int_log", 4, 64, sampling="log"),
        "int_log_step": hp.Int("int_log_step", 4, 64, step=2, sampling="log"),
        "float": hp.Float("float", 0.0, 0.3),
        "float_step": hp.Float("float_step", 0.0, 0.3, step=0.1),
        "float_log": hp.Float("float_log", 1e-3, 1e-2, sampling="log"),
        "float_reverse": hp.Float("float_reverse", 0.5, 0.9, sampling="reverse_log"),
        "choice_int": hp.Choice("choice_int", [8, 16]),
        "choice_float": hp.Choice("choice_float", [0.1, 0.2]),
        "choice_str": hp.Choice("choice_str", ["relu", "tanh"]),
        "choice_bool": hp.Choice("choice_bool", [True, False]),
        "boolean": hp.Boolean("boolean"),
        "fixed": hp.Fixed("fixed", 3),
    }
    types = {
        **dict.fromkeys(("int", "int_step", "int_log", "int_log_step", "choice_int"), int),
        **dict.fromkeys(("float", "float_step", "float_log", "float_reverse"), float),
        "choice_float": float,
        "choice_str": str,
        "choice_bool": int,  # KerasTuner's own Choice turns [True, False] into [1, 0]
        "boolean": bool,
        "fixed": int,
    }
    for name, value in values.items():
        if type(value) is not types[name]:
            raise TypeError(f"{name}={value!r} reached build as {type(value).__name__}")
    if not hp.get("vocab_size") or hp.get("seq_len") is None or hp.get("classes") != 2:
        raise ValueError("hp.get gives the task's vocab_size, seq_len and classes")
    kind = hp.Choice("kind", ["pool", "dense"])
    with hp.conditional_scope("kind", ["pool"]):
        width = hp.Int("width", 4, 8)  # one name, declared in two scopes with two ranges
        pooling = hp.Choice("pooling", ["average", "max"])
        with hp.conditional_scope("pooling", ["max"]):  # nested
            scaled = hp.Boolean("scaled")
    with hp.conditional_scope("kind", ["dense"]):
        dense_width = hp.Int("width", 16, 32, step=16)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), values["choice_int"], mask_zero=True)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    if kind == "pool" and pooling == "max" and scaled:
        x = layers.Rescaling(0.5)(x)
    x = layers.Dense(width if kind == "pool" else dense_width, activation=values["choice_str"])(x)
    x = layers.Dropout(values["float_step"])(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def own_loss(hp):
    """Compiled with its own one-hot loss and metrics, as KerasTuner's HyperResNet is."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 16, mask_zero=True)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [3e-3, 1e-2])),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.05),
        metrics=[keras.metrics.AUC(name="auc"), "accuracy"],
    )
    return model


class Marker(keras.callbacks.Callback):
    """Counts the epochs it sees: the hypermodel's own callbacks reach `model.fit`."""

    epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        Marker.epochs += 1
        if "val_accuracy" not in (logs or {}):
            raise RuntimeError("hpo's monitored metric is missing from the logs")


class FitOverride(keras_tuner.HyperModel):
    """A HyperModel whose `fit` picks the batch size and epochs and adds a callback."""

    def build(self, hp):
        inputs = keras.Input(shape=(None,), dtype="int32")
        x = layers.Embedding(hp.get("vocab_size"), 16, mask_zero=True)(inputs)
        x = layers.GlobalAveragePooling1D()(x)
        outputs = layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, x, y, **kwargs):
        # As KerasTuner's "tune model training" guide writes it: x and y named, and an argument
        # (shuffle) that hpo does not take over.
        callbacks = [*kwargs.pop("callbacks", []), Marker()]
        return model.fit(
            x,
            y,
            batch_size=hp.Choice("batch_size", [16, 32]),
            shuffle=hp.Boolean("shuffle"),
            epochs=1,
            callbacks=callbacks,
            **kwargs,
        )


def fixed_length(hp):
    """Takes exactly `seq_len` tokens (Flatten over the whole sequence)."""
    inputs = keras.Input(shape=(hp.get("seq_len"),), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 4)(inputs)
    x = layers.Flatten()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def transformer(hp):
    """keras.io's Transformer classifier, its layers (and an activation) imported from the user's
    own module."""
    maxlen, embed_dim = hp.get("seq_len"), hp.Choice("embed_dim", [16, 32])
    inputs = layers.Input(shape=(maxlen,))
    x = TokenAndPositionEmbedding(maxlen, hp.get("vocab_size"), embed_dim)(inputs)
    x = TransformerBlock(embed_dim, 2, 32)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation=scaled_relu)(x)  # the helper module's own activation
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
