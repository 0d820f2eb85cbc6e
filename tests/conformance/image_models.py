"""Image models as users bring them: their own preprocessing, and KerasTuner's ready-made ones.

A test copies this file beside a study file that names them in `[families]`.
"""

from __future__ import annotations

import keras
from keras import layers
from keras_tuner.applications import HyperXception

# KerasTuner's HyperXception as its docs build it, for this data's images and classes.
xception = HyperXception(input_shape=(32, 32, 3), classes=3)


def own_preprocessing(hp):
    """Rescaling, flips and resizing inside the model, as keras.io's examples do."""
    inputs = keras.Input(shape=hp.get("image_shape"))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.RandomFlip("horizontal")(x)
    x = layers.Resizing(24, 24)(x)
    x = layers.Conv2D(hp.Choice("filters", [8, 16]), 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(hp.get("classes"), activation="softmax")(x)
    return keras.Model(inputs, outputs)
