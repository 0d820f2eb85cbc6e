"""How to combine, last step: one Keras model from raw inputs to the weighted, calibrated
prediction."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.contract import load_keras_file
from hpo.data.in_memory import is_targets
from hpo.data.inputs import tensors
from hpo.errors import ConfigError, HpoError
from hpo.precision import global_policy
from hpo.store import sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

    import keras

    from hpo.ensemble.selection import Member
    from hpo.tasks import Task

__all__ = [
    "EXPORT_NAME",
    "TOKENIZER_NAME",
    "ExportedMember",
    "check_export",
    "check_rows",
    "compare_rows",
    "export_ensemble",
    "export_model",
    "exported_members",
    "input_names",
    "takes_text",
    "write_tokenizer",
]

EXPORT_NAME = "ensemble.keras"
# Layer names of an export, which `exported_members` reads back.
MEMBER_LAYER = "trial_{}"
WEIGHT_LAYER = "weight_trial_{}"
TEMPERATURE_LAYER = "temperature"
# Beside a text export: raw text to the study's token ids, for exports that take ids.
TOKENIZER_NAME = "tokenizer.json"
EXPORT_CHECK_EXAMPLES = 512
EXPORT_TOLERANCE = 1e-5
# The names Keras gives an input that its code did not name.
_AUTOMATIC_NAME = re.compile(r"(keras_tensor|input_layer|input)(_\d+)?")


def export_ensemble(
    task: Task,
    data_folder: Path,
    members: Sequence[Member],
    models: Sequence[keras.Model],
    weights: np.ndarray,
    temperature: float | None = None,
    *,
    made_for: str | None = None,
) -> keras.Model:
    """One functional model: raw inputs -> shared preprocessing -> each member -> weighted average
    (-> the fitted temperature).

    Members with zero weight are left out; members whose preprocessing is equal share it.

    Args:
        temperature: Divides the logits of the weighted average (`hpo.models._calibration`);
            None (the default) exports the average as it is.
        made_for: The backend whose inputs the export takes (`Task.raw_input`): a text study
            made on JAX or PyTorch exports token ids even where TensorFlow writes its
            SavedModel. Default: the one Keras runs on here.
    """
    import keras
    from keras import layers

    from hpo.models._calibration import Temperature

    made_for = made_for or keras_config_backend()

    # Its own layers in float32 whatever this process's dtype policy or floatx (a session's
    # mixed bfloat16, a keras.json's float16): the members keep the precision they trained in.
    with global_policy("float32"):
        used = [model for model, weight in zip(models, weights, strict=True) if weight > 0]
        raw = task.raw_input(data_folder, made_for)
        inputs = _declared(_named(raw, input_names(used)), used)
        preprocessed: dict[Any, Any] = {}
        outputs = []
        for member, model, weight in zip(members, models, weights, strict=True):
            if weight <= 0:
                continue
            x = _preprocess(task, data_folder, member.trial.params, inputs, preprocessed, made_for)
            model.name = MEMBER_LAYER.format(member.trial.number)
            x = model(x)
            scale = layers.Rescaling(float(weight), name=WEIGHT_LAYER.format(member.trial.number))
            outputs.append(scale(x))
        output = layers.Add(name="weighted_average")(outputs) if len(outputs) > 1 else outputs[0]
        if temperature is not None:
            output = Temperature(temperature, name=TEMPERATURE_LAYER)(output)
        return keras.Model(inputs, output, name="ensemble")


def export_model(
    task: Task, data_folder: Path, params: Mapping[str, Any], model: keras.Model, name: str
) -> keras.Model:
    """One model as an ensemble is exported: raw inputs -> its preprocessing -> the model.

    `hpo distill` exports its student so, and times the best member so beside the ensemble.

    Args:
        params: The parameters the model was trained with (its vocabulary and length, say).
        name: The exported model's name.
    """
    import keras

    made_for = keras_config_backend()
    with global_policy("float32"):  # as `export_ensemble`'s own layers
        raw = task.raw_input(data_folder, made_for)
        inputs = _declared(_named(raw, input_names([model])), [model])
        x = _preprocess(task, data_folder, params, inputs, {}, made_for)
        return keras.Model(inputs, model(x), name=name)


def input_names(models: Sequence[keras.Model]) -> list[str] | None:
    """The names every one of `models` gives its inputs in its own code (`keras.Input(name=...)`,
    under any layer hpo put on top), where it takes several and all name them alike; else None.

    A search given its inputs as a list names them by position (`input_0`, ...); an export takes
    the models' own names instead, so that a dict keyed by them works, as it does for the model.
    """
    from hpo.training.interface import members_model

    agreed: list[str] | None = None
    for model in models:
        try:
            names = [str(getattr(t, "name", "")) for t in members_model(model).inputs or ()]
        except (AttributeError, ValueError):  # a subclassed model: it keeps no inputs
            return None
        named = len(names) > 1 and not any(_AUTOMATIC_NAME.fullmatch(n) for n in names)
        if not named or len(set(names)) < len(names) or agreed not in (None, names):
            return None
        agreed = names
    return agreed


def _named(inputs: Any, names: list[str] | None) -> Any:
    """`inputs` (a task's raw inputs); a list of them renamed `names`, one name each."""
    if names is None or not isinstance(inputs, list) or len(inputs) != len(names):
        return inputs
    import keras

    return [
        keras.Input(shape=given.shape[1:], dtype=given.dtype, name=name)
        for given, name in zip(inputs, names, strict=True)
    ]


def _declared(inputs: Any, models: Sequence[keras.Model]) -> Any:
    """`inputs` (a task's raw inputs, typed as the training data were) typed as the models'
    own `keras.Input`s declare them, where both are of one kind (floats, or whole numbers): a
    float32 model trained on a float64 DataFrame serves float32, as a client of the model
    expects. Where the models declare different types of that kind for an input, it takes the
    widest of them (each model casts what it gets to its own). Another kind stays as the task
    gives it: an image task's uint8 pixels, which a model of keras.io's (a float32
    `keras.Input`, then `Rescaling`) casts itself, and which the serving docs promise; so do
    text, and an input a model keeps no declaration of (a subclassed model).
    """
    import keras

    from hpo.training.interface import members_model

    declared: list[dict[Any, str]] = []
    for model in models:
        try:
            own = list(members_model(model).inputs or ())
        except (AttributeError, ValueError):  # a subclassed model: it keeps no inputs
            return inputs
        by_position = dict(enumerate(str(t.dtype) for t in own))
        declared.append(by_position | {str(t.name): str(t.dtype) for t in own})

    def typed(given: Any, key: Any) -> Any:
        found = [d.get(key) for d in declared]
        kinds = {kind for kind in found if kind is not None}
        if not declared or None in found or len({_kind(k) for k in kinds | {given.dtype}}) > 1:
            return given
        try:
            widest = kinds.pop() if len(kinds) == 1 else str(np.result_type(*sorted(kinds)))
        except TypeError:  # a type numpy does not know (bfloat16) beside another
            return given
        if widest == str(given.dtype):
            return given
        return keras.Input(shape=given.shape[1:], dtype=widest, name=given.name)

    if isinstance(inputs, dict):
        return {name: typed(given, name) for name, given in inputs.items()}
    if isinstance(inputs, list):
        return [typed(given, position) for position, given in enumerate(inputs)]
    return typed(inputs, 0)


def _kind(dtype: Any) -> str:
    """Whether a type holds floats ("f"), whole numbers ("i") or something else (its name)."""
    try:
        kind = np.dtype(str(dtype)).kind
    except TypeError:  # a type numpy does not know: bfloat16 is a float, "string" is not
        return "f" if "float" in str(dtype) else str(dtype)
    return {"f": "f", "i": "i", "u": "i"}.get(kind, str(dtype))


def _preprocess(
    task: Task,
    data_folder: Path,
    params: Mapping[str, Any],
    inputs: Any,
    preprocessed: dict[Any, Any],
    made_for: str,
) -> Any:
    """The export's inputs as a model of `params` takes them, for backend `made_for`; models
    with equal preprocessing share it (`preprocessed` holds what is already built)."""
    key, layer = task.export_preprocessing(data_folder, params, made_for)
    if key not in preprocessed:
        layer.name = f"preprocess_{len(preprocessed)}"
        preprocessed[key] = layer(inputs)
    return preprocessed[key]


@dataclass(frozen=True)
class ExportedMember:
    """A member of an exported ensemble, read back from it: its trial, model and weight."""

    trial: int
    model: keras.Model
    weight: float


def exported_members(export: keras.Model) -> tuple[list[ExportedMember], float | None]:
    """What `export_ensemble` put together, read back by its layer names: each member with its
    weight, and the temperature (None without calibration).

    Raises:
        ConfigError: The model is not an ensemble export (no member layers).
    """
    names = {layer.name for layer in export.layers}
    members = []
    for layer in export.layers:
        match = re.fullmatch(MEMBER_LAYER.format(r"(\d+)"), layer.name)
        weight = WEIGHT_LAYER.format(match.group(1)) if match else None
        if match and weight in names:
            scale = export.get_layer(weight).scale
            members.append(ExportedMember(int(match.group(1)), layer, float(scale)))
    if not members:
        raise ConfigError(
            f"model {export.name!r} holds no member layers ({MEMBER_LAYER.format('N')}), so it "
            f"is not an ensemble exported by hpo ensemble; build one with hpo ensemble --top 5."
        )
    temperature = None
    if TEMPERATURE_LAYER in names:
        temperature = float(export.get_layer(TEMPERATURE_LAYER).temperature)
    return members, temperature


def takes_text(model: keras.Model) -> bool:
    """Whether an export reads raw strings (else token ids or images)."""
    return "string" in str(model.inputs[0].dtype)


def write_tokenizer(task: Task, data_folder: Path, folder: Path) -> dict[str, str]:
    """Text tasks: writes the study's `tokenizer.json` in `folder`; returns the report's keys
    for it (none for other tasks)."""
    if task.tokenizer is None:
        return {}
    path = folder / TOKENIZER_NAME
    path.write_text(task.tokenizer(data_folder).to_json(), encoding="utf-8")
    return {"tokenizer": TOKENIZER_NAME, "tokenizer_sha256": sha256_file(path)}


def keras_config_backend() -> str:
    """The Keras backend this process runs (the export's)."""
    import keras

    return str(keras.config.backend())


def check_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` row indices drawn evenly from every class (test files are sorted by class);
    for regression targets, `n` rows drawn at random."""
    rng = np.random.default_rng(seed)
    if is_targets(labels):
        return np.sort(rng.permutation(len(labels))[:n])
    classes = np.unique(labels)
    per_class = max(1, n // max(1, len(classes)))
    rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=int)


def check_export(
    path: Path,
    raw: np.ndarray,
    labels: np.ndarray,
    expected: np.ndarray,
    tolerance: float = EXPORT_TOLERANCE,
    slope: np.ndarray | None = None,
) -> dict[str, Any]:
    """Loads the export back and checks it reproduces `expected` on rows of every class.

    Args:
        tolerance: The largest difference allowed: float32 rounding, or more for members that
            compute in 16 bits (see `hpo.training.interface.tolerance`).
        slope: Per example, how much the export's last step magnifies a difference in its
            input (`hpo.ensemble.calibration.temperature_slope`); the tolerance is multiplied
            by it. None: 1 everywhere.
    """
    model = load_keras_file(path)
    rows = check_rows(labels, EXPORT_CHECK_EXAMPLES)
    got = np.asarray(model.predict(tensors(raw[rows]), batch_size=256, verbose=0), dtype=np.float64)
    return {
        "path": EXPORT_NAME,
        "sha256": sha256_file(path),
        **compare_rows(got, rows, labels, expected, tolerance, slope, "the exported ensemble"),
    }


def compare_rows(
    got: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    expected: np.ndarray,
    tolerance: float,
    slope: np.ndarray | None,
    what: str,
) -> dict[str, Any]:
    """Checks an export's outputs `got` on test `rows` against the evaluated predictions.

    Raises:
        HpoError: One differs by more than `tolerance` (times its `slope`).
    """
    got = metrics.as_probabilities(np.asarray(got, np.float64)).reshape(expected[rows].shape)
    gaps = np.abs(got - expected[rows]).reshape(len(rows), -1).max(axis=1, initial=0.0)
    allowed = tolerance * (np.ones(len(rows)) if slope is None else slope[rows])
    worst = int(np.argmax(gaps / allowed)) if len(rows) else 0
    if len(rows) and gaps[worst] > allowed[worst]:
        raise HpoError(
            f"{what} disagrees with the evaluated one by {gaps[worst]:.2e} on "
            f"example {rows[worst]} of those checked (tolerance {allowed[worst]:g})"
        )
    return {
        "checked_examples": len(rows),
        "checked_classes": 0 if is_targets(labels) else len(np.unique(labels[rows])),
        "max_abs_difference": float(gaps.max(initial=0.0)),
        "tolerance": tolerance,
        "max_tolerance": float(allowed.max(initial=tolerance)),
    }


@contextlib.contextmanager
def across_backends(made_on: str) -> Iterator[None]:
    """Where an export disagrees with the predictions its models made on another backend than
    the one it is checked on here (TensorFlow writes a SavedModel, ONNX and LiteRT), says so:
    a layer that computes otherwise there (a bicubic `Resizing`, say), not a broken export."""
    from hpo.backend import keras_backend

    try:
        yield
    except HpoError as exc:
        here = keras_backend()
        if here is None or here == made_on or " disagrees with the evaluated one " not in str(exc):
            raise
        raise HpoError(
            f"{exc}. Its models were trained and evaluated on {made_on}, and the exports are "
            f"checked here on {here}, which writes these formats: a layer that computes "
            f"otherwise on {here} (a bicubic Resizing, say) makes them disagree. Export .keras "
            f"on its own (--format keras, or formats=('keras',)), which stays on {made_on}."
        ) from exc
