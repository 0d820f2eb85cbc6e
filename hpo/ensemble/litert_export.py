"""How to combine, for devices: an export as LiteRT (TensorFlow Lite), run by the LiteRT
interpreter without hpo, Keras or TensorFlow.

Keras writes it (`Model.export(format="litert")`: a SavedModel, then TensorFlow's converter),
with LiteRT's built-in operators only: the `ai-edge-litert` interpreter that phones and servers
run has no TensorFlow ("select", or Flex) operators. An image export goes whole: uint8 images
in, probabilities out. A raw-text export does not, for the reason ONNX does not take it
(`hpo.ensemble.onnx_export`): its `.tflite` file takes the study's token ids, and
`tokenizer.json` beside it makes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo._exception_text import exception_text
from hpo.ensemble.export import TOKENIZER_NAME
from hpo.ensemble.onnx_export import quiet_converter, traced
from hpo.ensemble.serving import FORBIDDEN, IMPORTED, check_served
from hpo.errors import HpoError
from hpo.store import sha256_file

if TYPE_CHECKING:
    from pathlib import Path

    import keras

    from hpo.ensemble.serving import Reference

__all__ = ["LITERT_NAME", "NOT_LITERT_TEXT", "SERVE_LITERT", "export_litert"]

LITERT_NAME = "ensemble.tflite"
NOT_LITERT_TEXT = (
    "raw-text tokenizing is not LiteRT-able with built-in operators: TextVectorization's "
    "string standardization, split and vocabulary lookup are TensorFlow string ops. The "
    f".tflite file takes the study's token ids (int32 [batch, length]); {TOKENIZER_NAME} "
    "beside it makes them from text."
)

# Run as `python -c` in a fresh process: the LiteRT interpreter and NumPy only. The batch
# dimension is resized to the inputs', as an app does for a batch of its own size.
SERVE_LITERT = (
    """
import json, sys
import numpy as np

runtime = set()
from ai_edge_litert.interpreter import Interpreter

interpreter = Interpreter(model_path=sys.argv[1])
(given,) = interpreter.get_input_details()
x = np.load(sys.argv[2], allow_pickle=False)
interpreter.resize_tensor_input(given["index"], x.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(given["index"], x.astype(given["dtype"]))
interpreter.invoke()
np.save(sys.argv[3], interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
name = given["name"]
"""
    + IMPORTED
)


def export_litert(model: keras.Model, folder: Path, reference: Reference) -> dict[str, Any]:
    """Writes `model` (its token-id part, for raw text) as `ensemble.tflite` and checks it.

    Returns:
        The report's entry: path, SHA-256, the input's kind, what was left out and why (text),
        and how closely the LiteRT interpreter reproduced the predictions.

    Raises:
        HpoError: The converter needs an operator LiteRT does not build in, or the interpreter
            cannot run it, or it disagrees.
    """
    import tensorflow as tf

    model, inputs, signature, text = traced(model, reference, "LiteRT")
    left_out = NOT_LITERT_TEXT if text else None
    path = folder / LITERT_NAME
    with quiet_converter(("tensorflow", "absl")) as printed:
        try:
            model.export(
                str(path),
                format="litert",
                verbose=False,
                input_signature=signature,
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
            )
        except Exception as exc:
            raise HpoError(
                f"the LiteRT converter could not convert this model with built-in operators "
                f"({type(exc).__name__}: {exception_text(exc, 400)}; it printed: "
                f"{printed.getvalue()[-500:]!r}). Export it as savedmodel or keras "
                "instead (or onnx, where tf2onnx converts it)."
            ) from exc
    checked = check_served(
        SERVE_LITERT,
        path,
        inputs,
        reference,
        "the LiteRT export",
        (*FORBIDDEN, "tensorflow"),
        declared=[str(given.dtype) for given in model.inputs],
    )
    entry = {
        "path": LITERT_NAME,
        "sha256": sha256_file(path),
        # Text: token ids, its text part left out, or as an ensemble made off TensorFlow takes.
        "input_kind": "token ids" if left_out or reference.tokens is not None else "raw",
        "loaded_with": "ai_edge_litert.interpreter.Interpreter, without hpo, keras or tensorflow",
        **checked,
    }
    if left_out:
        entry.update(tokenizer=TOKENIZER_NAME, not_litert=left_out)
    return entry
