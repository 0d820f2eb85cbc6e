"""What to try: the image classifier that the Conv2D and SeparableConv2D families share.

After the small Xception-like convnet of "Deep Learning with Python" (2nd ed., section 9.3):
a stem convolution, then blocks of two convolutions with max pooling, each block optionally
pre-activated by batch normalization and wrapped in a strided 1x1 residual projection; global
average pooling, dropout and a softmax head. The separable family uses depthwise-separable
convolutions inside the blocks; the plain family uses ordinary ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras

    from hpo.space import Space

# Ranges for CIFAR-10 at 32 px on a 2-core CPU: five blocks take a 32 px image down to 1 px.
SPACE: Space = {
    "blocks": IntDistribution(2, 5),
    "filters": CategoricalDistribution([16, 32, 64]),
    "kernel_size": CategoricalDistribution([3, 5]),
    "batch_norm": CategoricalDistribution([False, True]),
    "residual": CategoricalDistribution([False, True]),
    "dropout": FloatDistribution(0.0, 0.6),
}
MAX_FILTERS = 512
POOL_SIZE = 3
AUGMENT_CHOICES = ("none", "flip", "flip_translate")
TRANSLATION = 0.1
# Trials are short and pruned early: at Keras's default momentum of 0.99 the moving statistics
# keep half their initial values after 70 steps, and validation sits at chance for the first few
# hundred steps (measured: 0.10 against 0.30 after 79 steps on 5,000 CIFAR-10 images).
BN_MOMENTUM = 0.9


def block_widths(params: Mapping[str, Any]) -> list[int]:
    """Filters of each block: `filters`, doubling per block, capped at MAX_FILTERS."""
    return [min(params["filters"] * 2**block, MAX_FILTERS) for block in range(params["blocks"])]


def build(params: Mapping[str, Any], separable: bool, name: str) -> keras.Model:
    """Builds the image classifier, channels last (as hpo's images are) whatever Keras's
    `image_data_format` is in this process (a `keras.json`, or a user's module that set it).

    Args:
        params: The trial's parameters: this module's SPACE plus the task's `classes` (at
            least 2), `image_shape` ((height, width, channels) of the uint8 images), `upscale`
            (1 or 2: the model resizes its input by this factor) and `augment` (one of
            AUGMENT_CHOICES; active only in training). Other keys are ignored.
        separable: Depthwise-separable convolutions inside the blocks if True, plain ones if
            False. The stem and the residual projections are plain in both.
        name: Model name.

    Returns:
        An uncompiled functional model mapping uint8 images [batch, *image_shape] to class
        probabilities [batch, classes] in float32, under any dtype policy.

    Raises:
        ValueError: `augment` or `upscale` is not one of the values above.
    """
    import keras

    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_last")
    try:
        return _build(params, separable, name)
    finally:
        keras.config.set_image_data_format(previous)


def _build(params: Mapping[str, Any], separable: bool, name: str) -> keras.Model:
    import keras
    from keras import layers

    augment = params["augment"]
    if augment not in AUGMENT_CHOICES:
        raise ValueError(
            f"augment must be one of {list(AUGMENT_CHOICES)}, got {augment!r}. "
            "Use 'none' to train on the images as they are."
        )
    upscale = params["upscale"]
    if upscale not in (1, 2):
        raise ValueError(f"upscale must be 1 or 2, got {upscale!r}. Use 1 for native size.")
    height, width, _ = params["image_shape"]
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    batch_norm = params["batch_norm"]
    # A bias right before batch normalization is cancelled by it.
    bias = not batch_norm
    kernel = params["kernel_size"]

    inputs = keras.Input(shape=tuple(params["image_shape"]), dtype="uint8", name="image")
    # Rescaling is the cast from uint8: Keras has no cast layer, and a Lambda would break
    # safe-mode loading. Resizing and augmentation are linear in the pixel values, so scaling
    # first gives the same images. Preprocessing stays float32 under a mixed policy so pixels
    # are not rounded to bfloat16 before the first convolution.
    x = layers.Rescaling(1.0 / 255, dtype="float32", name="rescale")(inputs)
    if upscale != 1:
        x = layers.Resizing(height * upscale, width * upscale, dtype="float32", name="upscale")(x)
    if augment != "none":
        x = layers.RandomFlip("horizontal", dtype="float32", name="augment_flip")(x)
    if augment == "flip_translate":
        x = layers.RandomTranslation(
            TRANSLATION, TRANSLATION, dtype="float32", name="augment_translate"
        )(x)
    # "same" padding, unlike the book's valid 5x5 stem (fed 180 px images): at 32 px a valid
    # stem drops 2 px at every border, an eighth of the image where CIFAR objects often reach,
    # and "same" keeps the sizes halving 32, 16, ..., 1 through the blocks.
    x = layers.Conv2D(params["filters"], kernel, padding="same", use_bias=bias, name="stem")(x)
    for block, size in enumerate(block_widths(params)):
        shortcut = x
        for i in (1, 2):
            if batch_norm:
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{i}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{i}")(x)
            x = conv(size, kernel, padding="same", use_bias=bias, name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D(POOL_SIZE, strides=2, padding="same", name=f"block{block}_pool")(x)
        if params["residual"]:
            shortcut = layers.Conv2D(
                size, 1, strides=2, padding="same", use_bias=bias, name=f"block{block}_project"
            )(shortcut)
            x = layers.Add(name=f"block{block}_residual")([x, shortcut])
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(params["dropout"], name="dropout")(x)
    # float32 even under a mixed-precision policy: the probabilities feed the loss and the ensemble.
    outputs = layers.Dense(
        params["classes"], activation="softmax", dtype="float32", name="probabilities"
    )(x)
    return keras.Model(inputs, outputs, name=name)
