"""How to combine, for serving: an export in the formats servers load, each checked as they load it.

`write_exports` writes one model (an ensemble, or one trial as a one-member ensemble) in the
formats asked for and checks each against the predictions it must reproduce, on rows of every
class: `.keras` loaded back by Keras (hpo's layers registered); the TensorFlow SavedModel
(`Model.export`, a `serve` endpoint and a `serving_default` signature: raw text or images in,
probabilities out), ONNX (`hpo.ensemble.onnx_export`) and LiteRT (`hpo.ensemble.litert_export`)
each in a fresh Python process that imports its runtime and NumPy only, as a server would, and
must import neither hpo nor Keras (nor TensorFlow, for LiteRT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.data.inputs import describe, has_text, model_inputs, packed, tensors
from hpo.ensemble.export import (
    EXPORT_CHECK_EXAMPLES,
    EXPORT_NAME,
    EXPORT_TOLERANCE,
    check_export,
    check_rows,
    compare_rows,
    takes_text,
)
from hpo.errors import ConfigError, HpoError
from hpo.precision import global_policy
from hpo.scratch import scratch_folder

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import keras

    from hpo.backend import Backend

__all__ = [
    "FORBIDDEN",
    "FORMATS",
    "IMPORTED",
    "LITERT_PACKAGES",
    "SAVED_MODEL_NAME",
    "Format",
    "Reference",
    "as_formats",
    "check_formats",
    "check_served",
    "describe_exports",
    "export_saved_model",
    "inference_model",
    "serving_backend",
    "tree_sha256",
    "write_exports",
]


class Format(str, Enum):  # noqa: UP042 (a StrEnum's str() and format() differ)
    """The formats an export can be written in."""

    KERAS = "keras"
    SAVEDMODEL = "savedmodel"
    ONNX = "onnx"
    LITERT = "litert"


FORMATS = tuple(f.value for f in Format)
FORMATS_ALL = tuple(Format)


def as_formats(formats: Iterable[str | Format]) -> tuple[Format, ...]:
    """The formats asked for, once each, in order.

    Raises:
        ConfigError: A name that is no format, naming those there are.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"no export format {unknown[0]!r}; the formats are {list(FORMATS)}.")
    return tuple(dict.fromkeys(Format(f) for f in formats))


SAVED_MODEL_NAME = "saved_model"
# What `--format onnx` needs besides TensorFlow: the `onnx` extra (pyproject.toml).
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
# What `--format litert` needs besides TensorFlow (which converts): the `litert` extra.
LITERT_PACKAGES = ("ai_edge_litert",)
# Modules a serving process must not import: a server has neither.
FORBIDDEN = ("hpo", "keras")

# The last line of a serving script: which of the named packages loading and serving imported
# (modules new since `runtime` was taken; for `hpo`, any).
IMPORTED = """
new = {m.split(".")[0] for m in set(sys.modules) - runtime} | {"hpo"} & set(sys.modules)
print(json.dumps({"input": name, "imported": sorted(new & set(sys.argv[4:]))}))
"""

# Run as `python -c` in a fresh process: TensorFlow's loader and the serving signature only.
# `import tensorflow` itself loads parts of Keras 3's API; loading the model may add none.
_SERVE_SAVED_MODEL = (
    """
import json, sys
import numpy as np
import tensorflow as tf

runtime = set(sys.modules)
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
names = sorted(serve.structured_input_signature[1])
given = np.load(sys.argv[2], allow_pickle=False)
if sys.argv[2].endswith(".npz"):  # a model of several inputs: one array an input, by name
    feed = {name: tf.constant(given[name]) for name in names}
else:
    feed = {names[0]: tf.constant(given)}
outputs = serve(**feed)
np.save(sys.argv[3], next(iter(outputs.values())).numpy())
name = ", ".join(names)
"""
    + IMPORTED
)


@dataclass(frozen=True)
class Reference:
    """What an export must reproduce.

    Attributes:
        raw: The inputs as a raw-input export takes them (texts or uint8 images).
        tokens: The same inputs as the study's token ids (text tasks), else None.
        labels: Their labels (the check takes rows of every class).
        expected: The predictions the export must give: the evaluated ensemble's on test, or a
            trial's recorded ones on validation.
        tolerance, slope: As `hpo.ensemble.export.check_export` allows.
    """

    raw: np.ndarray
    tokens: np.ndarray | None
    labels: np.ndarray
    expected: np.ndarray
    tolerance: float
    slope: np.ndarray | None = None

    def inputs_for(self, model: keras.Model) -> np.ndarray:
        """The inputs in the form `model` takes: raw, or token ids."""
        return self.raw if takes_text(model) or self.tokens is None else self.tokens


def serving_backend(made_on: Backend, formats: Iterable[Format | str]) -> Backend:
    """The backend to export on: TensorFlow for a SavedModel, ONNX or LiteRT (which
    TensorFlow writes) wherever it is installed, since a `.keras` file loads on any backend;
    else `made_on`, the backend the models were made on (`check_formats` then names what is
    missing)."""
    from hpo.backend import Backend

    served = {Format.SAVEDMODEL, Format.ONNX, Format.LITERT}
    if {Format(f) for f in formats} & served and importlib.util.find_spec("tensorflow"):
        return Backend.TENSORFLOW
    return made_on


def check_formats(formats: Iterable[Format], backend: str) -> None:
    """Refuses, before any work, an export format this process cannot write.

    Raises:
        ConfigError: A SavedModel, ONNX or LiteRT was asked for off the TensorFlow backend
            (TensorFlow is not installed: `serving_backend`), or without its packages.
    """
    for served in (Format.SAVEDMODEL, Format.ONNX, Format.LITERT):
        if served in formats and backend != "tensorflow":
            raise ConfigError(
                f"--format {served.value} is written by TensorFlow, which is not installed "
                f"here, and these models run on {backend}. Install it (pip install "
                f"tensorflow) and export again (hpo export loads the models on it), or "
                f"export --format keras."
            )
    for fmt, packages in ((Format.ONNX, ONNX_PACKAGES), (Format.LITERT, LITERT_PACKAGES)):
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if fmt in formats and missing:
            raise ConfigError(
                f"--format {fmt.value} needs {', '.join(packages)}; {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed. Install "
                f"{'it' if len(missing) == 1 else 'them'} with pip install 'hpo[{fmt.value}]'."
            )


def check_servable(model: keras.Model, formats: Iterable[Format], reference: Reference) -> None:
    """Refuses, before anything is written, a format that cannot take the model's inputs.

    Raises:
        ConfigError: LiteRT of a model of several inputs, or ONNX or LiteRT (which have no
            string operators) of one that takes text: of several inputs, or raw text that the
            study holds no token ids of (the model vectorizes it itself).
    """
    from hpo.ensemble.export import takes_text

    converted = sorted(f.value for f in set(formats) & {Format.ONNX, Format.LITERT})
    if not converted:
        return
    if packed(reference.raw):
        # Several inputs: LiteRT not at all, ONNX numbers only.
        refused = [f for f in converted if f == Format.LITERT.value or has_text(reference.raw)]
        if refused:
            raise ConfigError(
                f"--format {' '.join(refused)}: the models take {describe(reference.raw)}, and "
                f"hpo exports a model of several inputs as keras, savedmodel and (numbers only) "
                f"onnx; load it with hpo.load_model and convert it yourself."
            )
    elif takes_text(model) and reference.tokens is None:
        raise ConfigError(
            f"--format {' '.join(converted)}: ONNX and LiteRT have no string operators, and "
            f"this model takes text that the study holds no token ids of (the model vectorizes "
            f"it itself); export it as keras or savedmodel, which take text."
        )


def write_exports(
    model: keras.Model,
    folder: Path,
    formats: Iterable[Format],
    reference: Reference,
    published: Path | None = None,
) -> dict[str, Any]:
    """Writes `model` in `folder` in each format and checks each export against `reference`.

    Args:
        published: Where the caller moves what `folder` holds once written (default None:
            `folder` is that place); errors name it, not the staging `folder`.

    Returns:
        The report's `export` entry: the `.keras` file's path, SHA-256 and check at its top
        level (as `hpo predict` reads them), and `saved_model`, `onnx` and `litert` entries.

    Raises:
        ConfigError: A format that cannot take the model's inputs (`check_servable`).
        HpoError: An export does not load, imports hpo or Keras, or disagrees.
    """
    with _named_as(folder, published):
        return _write_exports(model, folder, set(formats), reference)


def _write_exports(
    model: keras.Model, folder: Path, formats: set[Format], reference: Reference
) -> dict[str, Any]:
    """`write_exports`'s work."""
    from hpo.ensemble.litert_export import LITERT_NAME, export_litert
    from hpo.ensemble.onnx_export import ONNX_NAME, export_onnx

    check_servable(model, formats, reference)
    entry: dict[str, Any] = {}
    if Format.KERAS in formats:
        with _removed_on_failure(folder / EXPORT_NAME):
            model.save(folder / EXPORT_NAME)
            inputs = reference.inputs_for(model)
            entry.update(
                check_export(
                    folder / EXPORT_NAME,
                    inputs,
                    reference.labels,
                    reference.expected,
                    reference.tolerance,
                    reference.slope,
                )
            )
    if Format.SAVEDMODEL in formats:
        with _removed_on_failure(folder / SAVED_MODEL_NAME):
            entry["saved_model"] = export_saved_model(model, folder / SAVED_MODEL_NAME, reference)
    if Format.ONNX in formats:
        with _removed_on_failure(folder / ONNX_NAME):
            portable, checked_against, note = float32_copy(model, reference, _NOT_ONNX)
            entry["onnx"] = {**export_onnx(portable, folder, checked_against), **note}
    if Format.LITERT in formats:
        with _removed_on_failure(folder / LITERT_NAME):
            portable, checked_against, note = float32_copy(model, reference, _NOT_LITERT)
            entry["litert"] = {**export_litert(portable, folder, checked_against), **note}
    return entry


@contextlib.contextmanager
def _named_as(folder: Path, published: Path | None) -> Iterator[None]:
    """Errors raised inside name `published` where they name `folder`: the staging folder the
    exports are written in before they are published there, which is removed by then."""
    try:
        yield
    except HpoError as exc:
        if published is not None and exc.args and isinstance(exc.args[0], str):
            message = exc.args[0]
            for staged in (str(folder.resolve()), str(folder)):
                message = message.replace(staged, str(published))
            exc.args = (message, *exc.args[1:])
        raise


# The mixed precisions each converter does not take: tf2onnx mixes float16 and bfloat16 in one
# operation of a bfloat16 model; the LiteRT converter has no bfloat16 kernels and fails on a
# mixed float16 model's casts (a Dense model of a mixed_float16 session).
_NOT_ONNX = frozenset({"mixed_bfloat16"})
_NOT_LITERT = frozenset({"mixed_bfloat16", "mixed_float16"})


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Removes what an export that fails wrote at `path` (a file that did not load or serve, a
    half-written folder), so that none is taken for a checked export; what was there before
    and left as it was stays."""
    before = _stamp(path)
    try:
        yield
    except BaseException:
        if path.exists() and _stamp(path) != before:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _stamp(path: Path) -> tuple[int, int] | None:
    """`path`'s modification time and size, or None where there is nothing."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def float32_copy(
    model: keras.Model, reference: Reference, precisions: frozenset[str] = _NOT_ONNX
) -> tuple[keras.Model, Reference, dict[str, Any]]:
    """For a converter that does not take some mixed precisions (`precisions`: ONNX's and
    LiteRT's, above): a model computing in one of them (`precision = "auto"` picks bfloat16 for
    a family where it was measured faster; a session's policy, float16) as a copy that computes
    in float32 with the same weights (mixed precision keeps them in float32), else the model
    itself.

    Returns:
        The model to convert; the reference its export must reproduce (for the copy: its own
        predictions in Keras, on the rows the check serves); and the report's note for the
        copy: what it computes in and how far its predictions lie from the evaluated ones.
    """
    from hpo.training.interface import model_precision

    precision = model_precision(model)
    if precision not in precisions:
        return model, reference, {}
    import keras

    config = _in_float32(keras.saving.serialize_keras_object(model))
    # A layer that makes a sublayer in its `__init__` does not pass its own policy on to it:
    # the sublayer takes the global one, which a mixed_float16 session leaves mixed.
    with global_policy("float32"):
        copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    rows = check_rows(reference.labels, EXPORT_CHECK_EXAMPLES)
    inputs = reference.inputs_for(copy)[rows]
    predicted = copy.predict(tensors(inputs), batch_size=256, verbose=0)
    expected = np.array(reference.expected, dtype=np.float64)
    got = metrics.as_probabilities(np.asarray(predicted)).reshape(expected[rows].shape)
    gap = float(np.abs(got - expected[rows]).max(initial=0.0))
    expected[rows] = got
    note = {
        "computes_in": "float32",
        "float32_copy": f"the members compute in {precision.removeprefix('mixed_')}, which "
        "the converter does not take: this export is a float32 copy of them (same weights), "
        "checked against that copy",
        "float32_max_abs_difference_from_evaluated": gap,
    }
    return copy, dataclasses.replace(reference, expected=expected, tolerance=EXPORT_TOLERANCE), note


def _in_float32(config: Any) -> Any:
    """A serialized model's configuration with every mixed dtype policy made float32."""
    if isinstance(config, list):
        return [_in_float32(item) for item in config]
    if not isinstance(config, dict):
        return config
    if "DTypePolicy" in str(config.get("class_name", "")):
        name = str(config.get("config", {}).get("name", ""))
        if name.startswith("mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
    return {
        key: "float32"
        if key == "dtype" and isinstance(value, str) and value.startswith("mixed_")
        else _in_float32(value)
        for key, value in config.items()
    }


def export_saved_model(model: keras.Model, folder: Path, reference: Reference) -> dict[str, Any]:
    """Writes `model` as a SavedModel in `folder` (created; must not exist) and checks it.

    Returns:
        The report's entry: path, SHA-256 over the folder's files, the serving input's name and
        how closely it reproduced the predictions.

    Raises:
        HpoError: Loading or serving it failed, it imported hpo or Keras, or it disagrees.
    """
    model = inference_model(model)
    model.export(str(folder), format="tf_saved_model", verbose=False)
    checked = check_served(
        _SERVE_SAVED_MODEL,
        folder,
        reference.inputs_for(model),
        reference,
        "the SavedModel",
        names=[given.name for given in model.inputs],
        declared=[str(given.dtype) for given in model.inputs],
    )
    tokens = reference.tokens is not None and not takes_text(model)
    entry = {
        "path": folder.name,
        "sha256": tree_sha256(folder),
        "signature": "serving_default",
        "loaded_with": "tensorflow.saved_model.load; imports no hpo, and no Keras module "
        "beyond those import tensorflow loads",
        "input_kind": "token ids" if tokens else "raw",
        **checked,
    }
    if tokens:
        # A text ensemble made on JAX or PyTorch holds no TensorFlow string operations.
        entry["not_raw"] = (
            "the ensemble was made off TensorFlow, so it takes the token ids of tokenizer.json "
            "(beside it); an ensemble searched on TensorFlow takes raw text"
        )
    return entry


def inference_model(model: keras.Model) -> keras.Model:
    """`model` called with `training=False`, for the formats that trace it.

    `Model.export` traces `model(x)` with no training flag, and Keras's random augmentation
    layers default to training there: a SavedModel would augment what it serves, and the random
    ops it keeps have no ONNX operators.
    """
    import keras

    inputs = keras.tree.map_structure(
        lambda given: keras.Input(shape=given.shape[1:], dtype=given.dtype, name=given.name),
        model.input,  # one input, or the list or dict of several
    )
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def check_served(
    script: str,
    artifact: Path,
    inputs: np.ndarray,
    reference: Reference,
    what: str,
    forbidden: tuple[str, ...] = FORBIDDEN,
    names: list[str] | None = None,
    declared: list[str] | None = None,
) -> dict[str, Any]:
    """Serves rows of every class with `script` in a fresh Python process and compares.

    `script` runs as `python -c script ARTIFACT INPUTS.npy OUTPUTS.npy PACKAGE...`: it loads
    the artifact, writes its outputs for the inputs, and ends with `IMPORTED`, which prints
    the input's name and which of the named packages it imported. Several inputs (`inputs`
    packed) go as `INPUTS.npz`, one array each, named `names`: the model's input names, in
    its order (a list's inputs are given in that order; a dict's by name). Numbers go as
    `declared` types them (the model's input types, in its order), as a client sends them.

    Returns:
        The input's name and `compare_rows`'s summary.

    Raises:
        HpoError: It failed, imported one of `forbidden` (hpo, Keras), or disagrees.
    """
    rows = check_rows(reference.labels, EXPORT_CHECK_EXAMPLES)
    batch = inputs[rows]
    if batch.dtype == object:
        batch = np.asarray([str(text) for text in batch])  # unicode, saved without pickle
    with scratch_folder("serve") as scratch:
        given, served = Path(scratch) / "inputs.npy", Path(scratch) / "outputs.npy"
        if packed(batch):
            given = given.with_suffix(".npz")
            arrays = _by_input_name(batch, names)
            for name, kind in zip(names or (), declared or (), strict=False):
                arrays[name] = _as_declared(arrays[name], kind)
            _save_npz(given, arrays)
        else:
            one = _as_declared(batch, declared[0]) if declared else batch
            np.save(given, one, allow_pickle=False)
        # A fresh process in an empty folder, as a server starts.
        command = [sys.executable, "-c", script, str(artifact.resolve()), str(given), str(served)]
        run = subprocess.run(
            [*command, *forbidden], cwd=scratch, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
            raise HpoError(
                f"{what} in {artifact} did not load and serve in a fresh process: {last}"
            )
        info = json.loads(run.stdout.strip().splitlines()[-1])
        got = np.load(served)
    if info["imported"]:
        raise HpoError(
            f"serving {what} in {artifact} imported {', '.join(info['imported'])}; where it is "
            f"served there is none of {', '.join(forbidden)}, so it must not need them."
        )
    summary = compare_rows(
        got,
        rows,
        reference.labels,
        reference.expected,
        reference.tolerance,
        reference.slope,
        what,
    )
    return {"input": info["input"], **summary}


def _as_declared(array: np.ndarray, kind: str | None) -> np.ndarray:
    """`array` as a model input typed `kind` takes it; text, or no type known, as it is."""
    if kind is None or kind == "string" or array.dtype.kind in "OSU":
        return array
    return array.astype(kind)


def _by_input_name(batch: np.ndarray, names: list[str] | None) -> dict[str, np.ndarray]:
    """Rows of several inputs (`packed`) as one array an input, keyed by the model's input
    names: a list's in their order, a dict's by its own names."""
    arrays = model_inputs(batch)
    if isinstance(arrays, dict):
        return arrays
    if names is None or len(names) != len(arrays):
        raise HpoError(f"the export takes inputs {names}, and the rows hold {len(arrays)}")
    return dict(zip(names, arrays, strict=True))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez(path, **arrays)`, for any names (an input named `file` or `allow_pickle` is an
    argument of `savez`), without pickles: `np.load` reads it back by name."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def describe_exports(entry: dict[str, Any], formats: Iterable[Format] = FORMATS_ALL) -> list[str]:
    """One line per export of `formats` in a report's `export` entry: its path, checksum and
    check; for ONNX, what it leaves out and why."""
    formats = set(formats)
    parts = [
        (Format.KERAS, entry if "path" in entry else None, "Keras"),
        (Format.SAVEDMODEL, entry.get("saved_model"), "TensorFlow, no hpo"),
        (Format.ONNX, entry.get("onnx"), "ONNX Runtime, no hpo or Keras"),
        (Format.LITERT, entry.get("litert"), "LiteRT, no hpo, Keras or TensorFlow"),
    ]
    lines = []
    for fmt, part, runtime in parts:
        if part is None or fmt not in formats:
            continue
        lines.append(
            f"  {part['path']:<15} sha256 {part['sha256'][:16]}  loaded by {runtime}: "
            f"{part['checked_examples']} examples within {part['max_abs_difference']:.1e}"
        )
        for left_out in ("not_raw", "not_onnx", "not_litert"):
            if left_out in part:
                lines.append(f"    takes token ids, not text: {part[left_out]}")
        if "float32_copy" in part:
            lines.append(
                f"    computes in float32: {part['float32_copy']} (it differs from the evaluated "
                f"predictions by up to {part['float32_max_abs_difference_from_evaluated']:.1e})"
            )
    return lines


def tree_sha256(folder: Path) -> str:
    """One SHA-256 over a folder's files: each relative path, then its bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
