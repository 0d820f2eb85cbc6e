"""Two KerasTuner hypermodels for IMDB reviews, written as a KerasTuner user writes them.

hpo searches them on Optuna beside its own families: see `imdb-kerastuner.toml`. What hpo gives
a text model: token ids `[batch, length]` (0 is padding, 1 out of vocabulary), with ids below
`hp.get("vocab_size")`; batches are cut to their longest review, so the length varies. A binary
task expects one sigmoid unit.
"""

from __future__ import annotations

import keras
import keras_tuner
from keras import layers


class BiLSTMHyperModel(keras_tuner.HyperModel):
    """A bidirectional LSTM over word embeddings; the embedding masks the padding."""

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
        x = layers.Embedding(
            hp.get("vocab_size"), hp.Int("embedding_dim", 32, 128, step=32), mask_zero=True
        )(inputs)
        x = layers.Bidirectional(layers.LSTM(hp.Int("units", 16, 64, step=16)))(x)
        x = layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
        model = keras.Model(inputs, outputs, name="bilstm")
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64]), **kwargs)


def build_pooled(hp: keras_tuner.HyperParameters) -> keras.Model:
    """A KerasTuner `build(hp)` function: embeddings, a dense layer, then global pooling."""
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    embedding_dim = hp.Choice("embedding_dim", [16, 32, 64])
    x = layers.Embedding(hp.get("vocab_size"), embedding_dim, mask_zero=True)(inputs)
    hidden = hp.Boolean("hidden")
    with hp.conditional_scope("hidden", [True]):
        units = hp.Int("hidden_units", 16, 64, sampling="log")  # None unless hidden
    if hidden:
        x = layers.Dense(units, activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="pooled")
