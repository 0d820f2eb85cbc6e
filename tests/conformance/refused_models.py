"""Models hpo cannot train as they are: each must be refused with the reason and the fix."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

BUILDS = Path(__file__).with_name("builds.txt")


def three_units(hp):
    """Three softmax units for a two-class task."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), 8)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def changing_choice(hp):
    """A Choice whose values depend on how many times the model was built before."""
    builds = int(BUILDS.read_text()) if BUILDS.exists() else 0
    BUILDS.write_text(str(builds + 1))
    units = hp.Choice("units", [8, 16] if builds % 2 else [4, 32])
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), units, mask_zero=True)(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
