"""The convolutional text classifier that the Conv1D and SeparableConv1D families share.

After the classic IMDB 1D convnet (Embedding -> Conv1D blocks -> pooling -> dense head), widened
with parallel branches of different kernel widths (the inception-style module), optional batch
normalization and residual connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import keras

    from hpo.space import Space

SPACE: Space = {
    "embedding_dim": IntDistribution(32, 256, log=True),
    "blocks": IntDistribution(1, 3),
    "filters": CategoricalDistribution([32, 64, 128, 256]),
    "kernel_size": IntDistribution(3, 9, step=2),
    "branches": IntDistribution(1, 3),
    "block_pool": CategoricalDistribution(["max", "average"]),
    "global_pool": CategoricalDistribution(["max", "average"]),
    "dropout": FloatDistribution(0.0, 0.6),
    "batch_norm": CategoricalDistribution([False, True]),
    "residual": CategoricalDistribution([False, True]),
    "dense_units": CategoricalDistribution([0, 32, 64, 128, 256]),
}
POOL_SIZE = 3


def kernel_sizes(params: Mapping[str, Any]) -> list[int]:
    """Kernel widths of the parallel branches: kernel_size, kernel_size + 2, ..."""
    return [params["kernel_size"] + 2 * i for i in range(params["branches"])]


def build(params: Mapping[str, Any], conv: Callable[..., Any], name: str) -> keras.Model:
    """Builds the classifier with `conv(filters, kernel_size, padding=, name=)` as its conv layer.

    Args:
        params: The trial's parameters: this module's SPACE plus vocab_size and seq_len, and
            `classes` (default 2).
        conv: Factory of the convolution layer (Conv1D, SeparableConv1D, ...).
        name: Model name.

    Returns:
        An uncompiled functional model mapping token ids [batch, any length] to P(class 1)
        (two classes) or to class probabilities (more).
        Trailing padding (id 0) does not change the output.
    """
    import keras
    from keras import layers

    from hpo.models._masking import (
        MaskedGlobalPooling1D,
        MaskedPooling1D,
        PaddingMask,
        ZeroPadded,
    )

    # Any length: batches are cut to their longest review, and padding never changes a score.
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    mask = PaddingMask(name="padding_mask")(inputs)
    x = layers.Embedding(params["vocab_size"], params["embedding_dim"], name="embedding")(inputs)
    x = ZeroPadded(name="embedding_masked")(x, mask)
    for block in range(params["blocks"]):
        shortcut = x
        branches = [
            conv(params["filters"], k, padding="same", name=f"block{block}_conv{k}")(x)
            for k in kernel_sizes(params)
        ]
        x = (
            layers.Concatenate(name=f"block{block}_concat")(branches)
            if len(branches) > 1
            else branches[0]
        )
        if params["batch_norm"]:
            # Statistics over real tokens only: a batch's padding changes neither what a step
            # learns nor the moving statistics inference uses.
            tokens = layers.Reshape((-1,), name=f"block{block}_tokens")(mask)
            x = layers.BatchNormalization(name=f"block{block}_bn")(x, mask=tokens)
        x = layers.Activation("relu", name=f"block{block}_relu")(x)
        if params["residual"]:
            if shortcut.shape[-1] != x.shape[-1]:
                shortcut = layers.Dense(x.shape[-1], name=f"block{block}_project")(shortcut)
            x = layers.Add(name=f"block{block}_residual")([x, shortcut])
        x = ZeroPadded(name=f"block{block}_masked")(x, mask)
        if block < params["blocks"] - 1:
            x, mask = MaskedPooling1D(params["block_pool"], POOL_SIZE, name=f"block{block}_pool")(
                x, mask
            )
    x = MaskedGlobalPooling1D(params["global_pool"], name="global_pool")(x, mask)
    x = layers.Dropout(params["dropout"], name="dropout")(x)
    if params["dense_units"]:
        x = layers.Dense(params["dense_units"], activation="relu", name="head")(x)
        x = layers.Dropout(params["dropout"], name="head_dropout")(x)
    return keras.Model(inputs, probability_head(x, params.get("classes", 2)), name=name)


def probability_head(x: Any, classes: int) -> Any:
    """One sigmoid unit for two classes, else a softmax over them: the text families' output.

    float32 even under a mixed-precision policy: the probability feeds the loss and the ensemble.
    """
    from keras import layers

    if classes > 2:
        return layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
