"""The trial contract: what a trial records and stores, and how it is written and verified.

A trial records user attributes named in `Attr` and stores two artifacts, its best checkpoint
(without optimizer state) and its validation predictions, each with its SHA-256
(`store_trial_artifacts`). The ensemble, `hpo status` and the tests read them back through the
same names; `fetch_checkpoint` and `fetch_predictions` refuse anything that does not verify, and
every `.keras` file is loaded in safe mode with hpo's own layers registered.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
from optuna.artifacts import upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from hpo import metrics
from hpo._json import parse_json
from hpo._stop import raise_if_asked
from hpo.disk import writing_temporary
from hpo.errors import HpoError
from hpo.store import artifact_address, sha256_file
from hpo.training.interface import Labels

if TYPE_CHECKING:
    from collections.abc import Iterator

    import keras
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

__all__ = [
    "Attr",
    "CheckpointError",
    "OwnLoss",
    "fetch_checkpoint",
    "fetch_predictions",
    "keras_cause",
    "load_checkpoint",
    "load_keras_file",
    "own_class_hint",
    "store_trial_artifacts",
]

_UNSAFE_LAYERS = {"Lambda"}
# Packages whose modules Keras imports, even in safe mode, when a file names one as an object's
# `module` and no registered object answers to its name (`_retrieve_class_or_fn` in
# keras/src/saving/serialization_lib.py); it imports no other module a file names but its own.
_IMPORTED_BY_KERAS = frozenset({"keras_hub", "keras_cv", "keras_nlp"})


class Attr:
    """Names of the user attributes a trial records.

    Plain strings, not an Enum: they are storage keys that Optuna, pandas column names
    (`user_attrs_<name>`) and the dashboard use as they are.
    """

    FAMILY: Final = "family"
    PRECISION: Final = "precision"
    PARAMS_COUNT: Final = "params_count"
    GFLOP_PER_EPOCH: Final = "gflop_per_epoch"
    PRIOR_EPOCH_SECONDS: Final = "prior_epoch_seconds"
    # What the prior was computed from (`hpo.cost.CostFeatures`), so a later prior can be replayed.
    COST_FEATURES: Final = "cost_features"
    ESTIMATED_EPOCH_SECONDS: Final = "estimated_epoch_seconds"
    EPOCH_SECONDS: Final = "epoch_seconds"
    # Each epoch's seconds in order: the first also traces the model's functions.
    EPOCH_DURATIONS: Final = "epoch_durations"
    EPOCHS: Final = "epochs"
    # The batch size a trial trained with where the search did not sample it: the hypermodel's
    # own `fit`, `hpo.Tuner.search(batch_size=)` or the batches of the dataset it was given.
    BATCH_SIZE: Final = "batch_size"
    TRAIN_SECONDS: Final = "train_seconds"
    TRIAL_SECONDS: Final = "trial_seconds"
    PEAK_MEMORY_MB: Final = "peak_memory_mb"
    CHECKPOINT_ID: Final = "checkpoint_artifact_id"
    # The ids of the artifacts the trial began to store, each recorded before its upload: one
    # whose trial was killed before recording it under CHECKPOINT_ID or PREDICTIONS_ID is a
    # file no record names, which `hpo gc` finds by this (`hpo.leftovers`).
    UPLOADS: Final = "artifact_uploads"
    CHECKPOINT_SHA256: Final = "checkpoint_sha256"
    PREDICTIONS_ID: Final = "val_predictions_artifact_id"
    PREDICTIONS_SHA256: Final = "val_predictions_sha256"
    VAL_ACCURACY: Final = "val_accuracy"
    # hpo's own loss of the stored model's validation predictions (`OwnLoss` says which), not
    # the loss Keras logs as `val_loss`: that one is in `METRICS`.
    VAL_LOSS: Final = "val_loss"
    # The best epoch's Keras logs: the model's own loss and metrics (`val_auc`, say), by name.
    METRICS: Final = "metrics"
    # Every epoch's Keras logs, by name: one value an epoch (None where not finite).
    HISTORY: Final = "history"
    # Every value a hypermodel's build and fit read, by the name it declared: sampled ones,
    # fixed ones, and the defaults of those not searched (`tune_new_entries=False`), which
    # the trial's params lack (`hpo.oracle.trial_hyperparameters`).
    HYPERPARAMETERS: Final = "hyperparameters"
    PRUNE_REASON: Final = "prune_reason"
    FAIL_REASON: Final = "fail_reason"
    STOP_REASON: Final = "stop_reason"
    # The number of the earlier trial whose parameters a trial drew again: it was pruned
    # without training (`hpo.repeats`).
    DUPLICATE_OF: Final = "duplicate_of"
    # What scheduled the learning rate instead of hpo's cut on a plateau, where the user's code
    # does (`hpo.training.callbacks.user_schedules_learning_rate`).
    LR_SCHEDULE: Final = "lr_schedule"
    WORKER: Final = "worker"
    WORKER_IDENTITY: Final = "worker_identity"
    SEEDED: Final = "seeded"
    # What the trial's model takes and gives (`hpo.training.interface`), and how it was costed.
    OUTPUT: Final = "output"
    LABELS: Final = "labels"
    PADDING: Final = "padding"
    PADDING_REASON: Final = "padding_reason"
    COST_ESTIMATE: Final = "cost_estimate"
    BACKEND: Final = "backend"
    DEVICE: Final = "device"
    CONFIG_ERROR: Final = "config_error"
    # Set on a trial whose user code raised KerasTuner's FatalError (its class's name).
    FATAL: Final = "fatal"
    # Set on a trial that failed on a full disk that still had no room after it: stops the search.
    DISK_FULL: Final = "disk_full"


class OwnLoss(enum.Enum):
    """What a trial's `Attr.VAL_LOSS` measures, by the name it is shown under.

    Keras's `val_loss` is the model's compiled loss (an MAE, a user's own, with the weights'
    penalties) and is the trial's value where it is the objective; hpo's is measured the same
    way for every model, so it keeps a name of its own beside it.
    """

    LOG_LOSS = "val_log_loss"  # a classifier's probabilities
    MSE = "val_mse"  # a model of targets: regression values or multi-label rows

    @classmethod
    def of(cls, labels: object) -> OwnLoss:
        """The loss a trial of these recorded labels (`Attr.LABELS`) measures; a trial that
        recorded none was a classifier's, from before hpo recorded them."""
        return cls.MSE if labels == Labels.TARGETS.value else cls.LOG_LOSS


def store_trial_artifacts(
    trial: optuna.Trial, store: ArtifactStore, checkpoint: Path, predictions: Path
) -> None:
    """Uploads a trial's checkpoint and validation predictions and records their ids and SHA-256.

    The checksums are computed from the local files before upload, so a file changed in the
    store later fails `fetch_checkpoint` / `fetch_predictions`. If an upload fails (a full disk:
    `DiskFull`), what this trial already stored is removed again. Each artifact's id is recorded
    (`Attr.UPLOADS`) before its upload, so that what a killed process stored is found too.
    """
    written = _Written(store, trial)
    try:
        for path, id_attr, sha_attr in (
            (checkpoint, Attr.CHECKPOINT_ID, Attr.CHECKPOINT_SHA256),
            (predictions, Attr.PREDICTIONS_ID, Attr.PREDICTIONS_SHA256),
        ):
            trial.set_user_attr(sha_attr, sha256_file(path))
            artifact_id = upload_artifact(
                artifact_store=written, file_path=str(path), study_or_trial=trial
            )
            trial.set_user_attr(id_attr, artifact_id)
    except BaseException:
        # The trial fails: a checkpoint stored before its predictions could not be would only
        # take space (on a disk that is likely full); so would a file whose record the study's
        # database could not take (Optuna writes the file first).
        for artifact_id in written.ids:
            with contextlib.suppress(Exception):
                store.remove(artifact_id)
        raise


class _Written:
    """An artifact store that notes the ids of the files it was given to write (all
    `upload_artifact` calls on it), here and on the trial (`Attr.UPLOADS`), before each write."""

    def __init__(self, store: ArtifactStore, trial: optuna.Trial) -> None:
        self._store = store
        self._trial = trial
        self.ids: list[str] = []

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        # Before: a write that fails may leave part of a file, and a process killed after the
        # write, before Optuna returns the id, leaves a whole one that only this record names.
        self.ids.append(artifact_id)
        self._trial.set_user_attr(Attr.UPLOADS, list(self.ids))
        self._store.write(artifact_id, content_body)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(artifact_id)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(artifact_id)


class CheckpointError(HpoError):
    """A trial's checkpoint is missing, corrupt or unsafe; callers skip that trial."""


# What a user does about a trial's stored file that is missing or damaged.
_FIX = (
    "Restore it from a backup of the artifact folder; it cannot be rebuilt, but searching on "
    "(hpo search with a larger --n-trials, or tuner.search with a larger max_trials) gives "
    "trials to take this one's place."
)


def fetch_checkpoint(store: ArtifactStore, trial: FrozenTrial, folder: Path) -> Path:
    """Downloads a trial's checkpoint into `folder` and verifies it against its recorded checksum.

    Raises:
        CheckpointError: No checkpoint recorded, missing from the store, checksum mismatch
            (torn or tampered file), or it holds a layer that runs arbitrary Python code.
    """
    path = _download(store, trial, Attr.CHECKPOINT_ID, folder / f"trial-{trial.number:05d}.keras")
    _verify(store, trial, path, Attr.CHECKPOINT_ID, Attr.CHECKPOINT_SHA256, "checkpoint")
    refuse_unsafe_layers(path, f"trial {trial.number}")
    return path


def _verify(
    store: ArtifactStore, trial: FrozenTrial, path: Path, id_attr: str, sha_attr: str, what: str
) -> None:
    expected = trial.user_attrs.get(sha_attr)
    # Trials from before predictions were checksummed record none; their files are used as is.
    if expected is None and sha_attr == Attr.PREDICTIONS_SHA256:
        return
    actual = sha256_file(path)
    if actual != expected:
        where = artifact_address(store, str(trial.user_attrs[id_attr]))
        raise CheckpointError(
            f"trial {trial.number}: its {what} {where} has SHA-256 {actual[:12]}..., not the "
            f"{str(expected)[:12]}... recorded when the trial stored it; it is truncated or was "
            f"changed since. {_FIX}"
        )


def refuse_unsafe_layers(path: Path, what: str | None = None) -> None:
    """Raises CheckpointError if a `.keras` file holds a `Lambda` layer (arbitrary Python code),
    or names a module that Keras would import to load it from outside installed packages.

    Args:
        path: The `.keras` file.
        what: What the file is (`trial 3`), which the message names before the file's name;
            default: the message names the file's whole path.
    """
    where = f"{what}: {path.name}" if what else str(path)
    config = _config(path, where)
    found = sorted(_class_names(config) & _UNSAFE_LAYERS)
    if found:
        raise CheckpointError(
            f"{where} contains a {found[0]} layer, which runs arbitrary "
            f"Python code when loaded; refusing to load it. Only built-in, serialisable layers "
            f"are allowed."
        )
    _refuse_imports(config, where)


def _config(path: Path, where: str) -> Any:
    """A `.keras` file's `config.json`, parsed."""
    try:
        with zipfile.ZipFile(path) as archive:
            return parse_json(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CheckpointError(f"{where} is not a readable .keras file ({exc}).") from exc


def _refuse_imports(config: Any, where: str) -> None:
    """Raises CheckpointError if loading `config` would make Keras import a module of a package
    that is neither loaded here nor installed: Python would find it on the import path first
    (`python -m hpo` puts the working directory there, a notebook its folder), and run it."""
    from hpo.models.external import installed_package

    for node in _objects(config):
        module = node.get("module")
        if not isinstance(module, str):
            continue
        package = module.partition(".")[0]
        if package not in _IMPORTED_BY_KERAS or _registered(node) or installed_package(package):
            continue
        inner = node.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
        named = f" {name!r}" if isinstance(name, str) else ""
        raise CheckpointError(
            f"{where} names module {module!r} for its {node.get('class_name')!r} "
            f"object{named}, which Keras would import to load it, and {package} is not "
            f"installed here (a {package} elsewhere on the import path, such as the working "
            f"directory, is not imported: a file never makes hpo import a module); refusing to "
            f"load it. If the model was made with {package}, install it (pip install "
            f"{package}) and run this again; else the file was changed: restore it from a backup."
        )


def _registered(node: dict[str, Any]) -> bool:
    """Whether Keras finds the object `node` describes among the registered ones, by the name it
    looks up before importing the node's module (a function's own name, else a class's
    registered name)."""
    keras = sys.modules.get("keras")
    if keras is None:  # nothing can be registered before Keras is loaded
        return False
    if node.get("class_name") == "function":
        name = node.get("config")
    else:
        name = node.get("registered_name", node.get("class_name"))
    return isinstance(name, str) and keras.saving.get_registered_object(name) is not None


def load_keras_file(path: Path | str) -> keras.Model:
    """Loads a `.keras` file with Keras safe mode on, uncompiled, hpo's own layers and the
    classes of the user's code this process has loaded registered (`register_user_objects`)."""
    import keras

    from hpo._layers import register_layers
    from hpo.models.external import register_user_objects, user_objects_for

    register_layers()
    register_user_objects()
    # Checked here, for every file hpo loads (a `.h5` file, which Keras would read another way,
    # is refused as no `.keras` file). Keras's safe mode refuses a Lambda's code itself.
    config = _config(Path(path), str(path))
    # A class the search script defined is saved as `__main__>Name`; a later script imports it.
    stand_ins = user_objects_for(_registered_names(config))
    with warnings.catch_warnings(), keras.saving.custom_object_scope(stand_ins):
        # After the registrations Keras's lookup sees, the stand-ins included.
        _refuse_imports(config, str(path))
        # Keras's warning for a layer that makes its sublayers in __init__ and has no build()
        # (keras.io's examples): they are built as the model is, and their weights load.
        warnings.filterwarnings("ignore", message=r"`build\(\)` was called on layer")
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    # h5py, reading the weights, swallows a KeyboardInterrupt raised inside it: the stop asked
    # meanwhile would be lost, and the command would go on to replace its output.
    raise_if_asked()
    return model


def load_checkpoint(path: Path, number: int) -> keras.Model:
    """Loads a verified checkpoint with Keras safe mode on."""
    try:
        return load_keras_file(path)
    except Exception as exc:
        raise CheckpointError(
            f"trial {number}: cannot load checkpoint {path.name}: {keras_cause(exc)}"
            f"{own_class_hint(exc)}"
        ) from exc


def keras_cause(exc: Exception, limit: int = 400) -> str:
    """The innermost of the errors Keras nests in one message when it cannot load a model
    ("... Exception encountered: ..."), without the object's whole configuration, nor Keras's
    advice to pass `safe_mode=False`, which no hpo command or function takes."""
    text = str(exc).rpartition("Exception encountered:")[2].strip() or str(exc)
    for tail in (" Full object config:", "\n\nconfig=", "\n\nExample:", " If you trust the source"):
        text = text.partition(tail)[0]
    return text[:limit]


def own_class_hint(exc: Exception) -> str:
    """What to do when a `.keras` file holds a class of the user's own that Keras cannot find:
    an `hpo` command imports a study file's family module; Python loads what its caller has
    defined or imported (a Tuner's project has no study file)."""
    if "Could not locate class" not in str(exc):
        return ""
    from hpo.cli import in_command

    if in_command():
        return (
            "; it holds a class of your own: pass the study file that names its module (--study "
            "FILE), which hpo imports. A class that a Python script or notebook defines loads "
            "from Python only, with the class defined or imported first"
        )
    return (
        "; it holds a class of your own: define or import the class before loading, as the "
        "search's script did (hpo finds the Keras classes your script or notebook defines or "
        "imports, under any module name)"
    )


def fetch_predictions(store: ArtifactStore, trial: FrozenTrial, folder: Path) -> np.ndarray:
    """A trial's validation predictions: float32 `[n]` (binary) or `[n, classes]`."""
    path = _download(
        store, trial, Attr.PREDICTIONS_ID, folder / f"trial-{trial.number:05d}-val.npy"
    )
    _verify(
        store,
        trial,
        path,
        Attr.PREDICTIONS_ID,
        Attr.PREDICTIONS_SHA256,
        "validation predictions file",
    )
    try:
        return metrics.as_probabilities(np.load(path)).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"trial {trial.number}: unreadable validation predictions ({exc})."
        ) from exc


def _download(store: ArtifactStore, trial: FrozenTrial, key: str, target: Path) -> Path:
    artifact_id = trial.user_attrs.get(key)
    if not artifact_id:
        raise CheckpointError(
            f"trial {trial.number} records no {key}; it finished before checkpoints existed?"
        )
    if not isinstance(artifact_id, str):  # the store's records are data; a path is refused below
        raise CheckpointError(
            f"trial {trial.number}'s {key} is {artifact_id!r}, not an artifact id. {_FIX}"
        )
    target.unlink(missing_ok=True)
    where = artifact_address(store, str(artifact_id))
    unreadable = f"trial {trial.number}: cannot read {where} ({key}) from the artifact store"
    try:
        # The copy goes to a temporary folder (TMPDIR, often a small tmpfs): one that is full
        # is that folder's error, not the artifact's, which is intact.
        with (
            store.open_reader(artifact_id) as reader,
            writing_temporary(target, _artifact_size(store, artifact_id)),
            open(target, "xb") as copy,
        ):
            for chunk in _chunks(reader, unreadable):
                copy.write(chunk)
    except ArtifactNotFound as exc:
        raise CheckpointError(
            f"trial {trial.number}: {where} ({key}) is missing from the artifact store. If "
            f"`hpo gc` (or keep_checkpoints) ran meanwhile, it removed it: run this again, and "
            f"the trial is no candidate. Else: {_FIX}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{unreadable}: {exc}. {_FIX}") from exc
    return target


def _chunks(reader: BinaryIO, unreadable: str) -> Iterator[bytes]:
    """An artifact's bytes, a failed read a CheckpointError (`unreadable`, the message's start)
    rather than an OSError, which `writing_temporary` would take for the copy's."""
    while True:
        try:
            chunk = reader.read(1 << 20)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{unreadable}: {exc}. {_FIX}") from exc
        if not chunk:
            return
        yield chunk


def _artifact_size(store: ArtifactStore, artifact_id: str) -> int:
    """An artifact's size in bytes where the store tells it (a folder's), else 0."""
    size = getattr(store, "size", None)
    return size(artifact_id) if callable(size) else 0


def _class_names(config: Any) -> set[str]:
    return {
        node["class_name"] for node in _objects(config) if isinstance(node.get("class_name"), str)
    }


def _objects(config: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in `config`, however deep (without recursion: JSON's parser goes deeper
    than Python's stack would)."""
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            yield node
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _registered_names(config: Any) -> set[str]:
    """The names Keras looks up in its registry: a class's `registered_name`, a function's
    `config` (`_retrieve_class_or_fn`)."""
    names: set[str] = set()
    for node in _objects(config):
        name = node.get("config") if node.get("class_name") == "function" else None
        for found in (name, node.get("registered_name")):
            if isinstance(found, str) and ">" in found:
                names.add(found)
    return names
