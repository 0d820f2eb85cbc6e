"""A layer from the study's token ids to one trial's: its vocabulary and length.

Exports on backends without TensorFlow take token ids (`hpo.data.tokenizer` makes them from
raw text, with the `tokenizer.json` beside the export). Each member reads them through this
layer, which gives exactly `hpo.data.text_cache.derive`: ids past the member's vocabulary become
the out-of-vocabulary id 1, and texts keep their first `seq_len` tokens.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["RestrictTokens", "standardize_text"]

# The punctuation TextVectorization's "lower_and_strip_punctuation" strips.
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@keras.saving.register_keras_serializable(package="hpo")
def standardize_text(texts: Any) -> Any:
    """TextVectorization's "lower_and_strip_punctuation", and NUL as a space: the exported
    vectorizer's standardization, equal to `hpo.data.tokenizer.standardize`. A token ending in
    NUL cannot be in its vocabulary (NumPy strings drop trailing NULs: "film\\x00" would be
    "film" twice), so NUL splits tokens. TensorFlow string tensors only, as text exports are."""
    import tensorflow as tf

    texts = tf.strings.lower(texts)
    texts = tf.strings.regex_replace(texts, _PUNCTUATION, "")
    return tf.strings.regex_replace(texts, r"\x00", " ")


@keras.saving.register_keras_serializable(package="hpo")
class RestrictTokens(keras.layers.Layer):
    """Token ids [batch, time] -> [batch, min(time, seq_len)] below `vocab_size`.

    Args:
        vocab_size: The member's vocabulary; larger ids become 1 (out of vocabulary).
        seq_len: The member's length; later tokens are cut.
    """

    def __init__(self, vocab_size: int, seq_len: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.seq_len = vocab_size, seq_len

    def call(self, tokens: Any) -> Any:
        tokens = ops.cast(tokens[:, : self.seq_len], "int32")
        return ops.where(ops.greater_equal(tokens, self.vocab_size), 1, tokens)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        time = input_shape[1]
        return (input_shape[0], None if time is None else min(time, self.seq_len))

    def compute_output_spec(self, tokens: Any) -> Any:
        return keras.KerasTensor(self.compute_output_shape(tokens.shape), dtype="int32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "seq_len": self.seq_len}
