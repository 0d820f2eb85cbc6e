from __future__ import annotations

from hpo._exception_text import exception_text

# As Keras 3 words a layer's failing call (its colour codes, its closing list of arguments).
KERAS = (
    "Exception encountered when calling Sequential.call().\n\n"
    "\x1b[1mInput 0 with name 'None' of layer 'dense' is incompatible with the layer: expected "
    "axis -1 of input shape to have value 3072, but received input with shape (12, 1728)\x1b[0m"
    "\n\nArguments received by Sequential.call():\n"
    "  • inputs=tf.Tensor(shape=(12, 24, 24, 3), dtype=float32)\n  • training=False"
)


def test_keras_text_loses_colour_codes_and_arguments_and_keeps_its_point() -> None:
    assert exception_text(ValueError(KERAS)) == (
        "Exception encountered when calling Sequential.call(): Input 0 with name 'None' of "
        "layer 'dense' is incompatible with the layer: expected axis -1 of input shape to have "
        "value 3072, but received input with shape (12, 1728)"
    )


def test_a_long_text_is_cut_after_a_sentence_or_a_word_and_marked() -> None:
    sentences = "The first one is short. " + "word " * 100
    assert exception_text(sentences, 40) == "The first one is short. ..."
    cut = exception_text("word " * 100, 40)
    assert cut.endswith("word...") and len(cut) <= 40
    assert exception_text("short\ntext") == "short text"
