"""How to combine, for serving: an export as ONNX, run by ONNX Runtime without hpo or Keras.

Keras writes it (`Model.export(format="onnx")`, through tf2onnx on TensorFlow). An image export
goes to ONNX whole: uint8 images in, probabilities out. A raw-text export does not: it tokenizes
with TensorFlow string ops (`TextVectorization`: regex standardization, a string split and a
vocabulary hash table) that ONNX has no operators for. Its ONNX file is the rest of the model,
from the study's token ids to probabilities, with `tokenizer.json` beside it to make the ids:
the same contract as text exports on the backends without TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from typing import IO, TYPE_CHECKING, Any

from hpo._exception_text import exception_text
from hpo.data.inputs import packed
from hpo.ensemble.export import TOKENIZER_NAME, takes_text
from hpo.ensemble.serving import IMPORTED, check_served, inference_model
from hpo.errors import HpoError
from hpo.store import sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import keras
    import numpy as np

    from hpo.ensemble.serving import Reference

__all__ = [
    "NOT_ONNX_TEXT",
    "ONNX_NAME",
    "SERVE_ONNX",
    "export_onnx",
    "quiet_converter",
    "token_model",
    "traced",
]

ONNX_NAME = "ensemble.onnx"
NOT_ONNX_TEXT = (
    "raw-text tokenizing is not ONNX-able: TextVectorization's string standardization, split "
    "and vocabulary lookup are TensorFlow string ops with no ONNX operators. The ONNX file "
    f"takes the study's token ids (int32 [batch, length]); {TOKENIZER_NAME} beside it makes "
    "them from text."
)

# Run as `python -c` in a fresh process: ONNX Runtime and NumPy only, and nothing of Keras's.
SERVE_ONNX = (
    """
import json, sys
import numpy as np

runtime = set()
import onnxruntime


def cannot_run(exc):
    reason = " ".join(str(exc).split())
    sys.exit(
        f"ONNX Runtime cannot run the graph tf2onnx wrote ({reason[-300:]}): an operation in it "
        "has no ONNX Runtime kernel (a keras.layers.Discretization's Bucketize, say). Export it "
        "as savedmodel or keras instead."
    )


try:
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
except Exception as exc:
    cannot_run(exc)
inputs = session.get_inputs()
given = np.load(sys.argv[2], allow_pickle=False)
# A model of several inputs: one array an input, by the model's input names (an .npz).
arrays = dict(given) if sys.argv[2].endswith(".npz") else None
wanted = sorted(arrays) if arrays is not None else ["one input"]
if len(inputs) != len(wanted) or (arrays is not None and set(arrays) != {i.name for i in inputs}):
    sys.exit(
        f"the ONNX graph takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}) "
        f"where the model takes {', '.join(wanted)}: tf2onnx made tensors the model holds "
        "besides its weights into inputs (a keras.layers.Normalization's mean and variance do "
        "this). Export it as savedmodel or keras instead."
    )
feed = arrays if arrays is not None else {inputs[0].name: given}
try:
    outputs = session.run(None, feed)
except Exception as exc:
    cannot_run(exc)
np.save(sys.argv[3], outputs[0])
name = ", ".join(sorted(feed))
"""
    + IMPORTED
)


def export_onnx(model: keras.Model, folder: Path, reference: Reference) -> dict[str, Any]:
    """Writes `model` (its token-id part, for raw text) as `ensemble.onnx` and checks it.

    Returns:
        The report's entry: path, SHA-256, the input's name and kind, what was left out and
        why (text), and how closely ONNX Runtime reproduced the predictions.

    Raises:
        HpoError: tf2onnx cannot convert it, or ONNX Runtime cannot run it, or it disagrees.
    """
    model, inputs, signature, text = traced(model, reference, "ONNX")
    left_out = NOT_ONNX_TEXT if text else None
    path = folder / ONNX_NAME
    with quiet_converter() as printed:
        try:
            model.export(str(path), format="onnx", verbose=False, input_signature=signature)
        except Exception as exc:
            raise HpoError(
                f"tf2onnx could not convert this model to ONNX ({type(exc).__name__}: "
                f"{exception_text(exc)}; it printed: {printed.getvalue()[-500:]!r}). Export it as "
                "savedmodel or keras instead."
            ) from exc
    names = [given.name for given in model.inputs]
    declared = [str(given.dtype) for given in model.inputs]
    checked = check_served(
        SERVE_ONNX, path, inputs, reference, "the ONNX export", names=names, declared=declared
    )
    entry = {
        "path": ONNX_NAME,
        "sha256": sha256_file(path),
        # Text: token ids, its text part left out, or as an ensemble made off TensorFlow takes.
        "input_kind": "token ids" if left_out or reference.tokens is not None else "raw",
        "loaded_with": "onnxruntime.InferenceSession, without hpo or keras",
        **checked,
    }
    if left_out:
        entry.update(tokenizer=TOKENIZER_NAME, not_onnx=left_out)
    return entry


def traced(
    model: keras.Model, reference: Reference, runtime: str
) -> tuple[keras.Model, np.ndarray, list[Any], bool]:
    """What a converter traces for `runtime` (ONNX, LiteRT), which has no string operators:
    the model from token ids for raw text (`token_model`), else the model itself, called with
    `training=False`; with the check inputs in that form, their input signature (any batch),
    and whether the tokenizing was left out.

    Raises:
        HpoError: A raw-text model whose reference has no token ids.
    """
    import tensorflow as tf

    text = takes_text(model)
    if text:
        if reference.tokens is None:
            raise HpoError(
                f"{runtime} has no string operators, and this model takes text that the study "
                f"holds no token ids of (the model vectorizes it itself): export it as keras or "
                f"savedmodel, which take text."
            )
        model = token_model(model, reference.tokens.shape[1])
    model = inference_model(model)
    inputs = reference.inputs_for(model)
    if packed(inputs):  # several inputs: the model's own structure (a list or a dict) of specs
        import keras

        def spec(given: Any) -> Any:
            return tf.TensorSpec((None, *given.shape[1:]), given.dtype, given.name)

        return model, inputs, [keras.tree.map_structure(spec, model.input)], text
    # The model's own input type, which a client sends, not the check rows' (float64 data).
    given = model.inputs[0]
    signature = [tf.TensorSpec((None, *inputs.shape[1:]), given.dtype, given.name)]
    return model, inputs, signature, text


def token_model(model: keras.Model, length: int) -> keras.Model:
    """The same model from the study's token ids: each `TextVectorization` is replaced by a
    `RestrictTokens` of its vocabulary and length, and every other layer (weights included) is
    shared.

    Args:
        length: The token ids' length (the study's longest sequence).
    """
    import keras

    from hpo.models._tokens import RestrictTokens

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.TextVectorization):
            sequence = layer.get_config()["output_sequence_length"]
            return RestrictTokens(layer.vocabulary_size(), sequence, name=layer.name)
        return layer

    tokens = keras.Input(shape=(length,), dtype="int32", name="tokens")
    return keras.models.clone_model(model, input_tensors=tokens, clone_function=swap)


class _Printed(io.StringIO):
    """What a converter printed: Python's output, and the process's own while it is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.native: IO[bytes] | None = None

    def getvalue(self) -> str:
        value = super().getvalue()
        if self.native is not None:  # read where the process writes, its position kept
            position = self.native.tell()
            self.native.seek(0)
            value += self.native.read().decode("utf-8", errors="replace")
            self.native.seek(position)
        return value


@contextlib.contextmanager
def _process_output_kept(printed: _Printed) -> Iterator[None]:
    """The process's standard output and error (file descriptors 1 and 2, which native code
    writes to) go to `printed` inside; one that is closed is left as it is."""
    from hpo._output import descriptors_to

    with tempfile.TemporaryFile() as sink:
        try:
            with descriptors_to(sink.fileno(), (1, 2)):
                printed.native = sink
                yield
        finally:
            printed.native = None
            sink.seek(0)
            printed.write(sink.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def quiet_converter(names: tuple[str, ...] = ("tf2onnx", "tensorflow")) -> Iterator[io.StringIO]:
    """Converters' chatter silenced inside; what was printed is kept for an error message.

    tf2onnx logs each graph rewrite and prints what it skips, TensorFlow warns about the graph
    it freezes, Keras's patch for NumPy 2 warns: none of it is news once the export checks out.
    Their loggers' records, Python's streams and the process's own output (the LiteRT
    converter's C++ code writes its errors there) all go to what is kept.
    """
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.handlers, logger.propagate) for logger in loggers]
    printed = _Printed()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
        logger.handlers = [logging.StreamHandler(printed)]
        logger.propagate = False
    try:
        with (
            warnings.catch_warnings(),
            _process_output_kept(printed),
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
        ):
            warnings.simplefilter("ignore")
            yield printed
    finally:
        for logger, (level, handlers, propagate) in zip(loggers, saved, strict=True):
            logger.setLevel(level)
            logger.handlers = handlers
            logger.propagate = propagate
