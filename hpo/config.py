"""Study configuration: one typed dataclass tree, resolved as CLI flag > study TOML > default."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from hpo._paths import expand_user
from hpo.backend import Backend  # noqa: TC001 (typing.get_type_hints reads it at run time)
from hpo.budget import parse_duration
from hpo.data.holdout import TEST_FRACTION
from hpo.directions import Direction, known_direction, settled_direction
from hpo.errors import ConfigError
from hpo.precision import Precision

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "STUDY_NAME",
    "STUDY_NAME_LENGTH",
    "UNLIMITED_TRIALS",
    "DataConfig",
    "Direction",
    "Diversity",
    "PrunerConfig",
    "PrunerKind",
    "SamplerConfig",
    "StudyConfig",
    "TrainingConfig",
    "config_from_dict",
    "config_to_dict",
    "load_study_config",
]

_log = logging.getLogger(__name__)


S3_SCHEME = "s3://"
# The `n_trials` of a search that its budget alone ends (`hpo.Tuner(budget=...)` without
# `max_trials`): more trials than any budget runs, and never shown as a count
# (`StudyConfig.trial_limit`).
UNLIMITED_TRIALS = 1_000_000
# StudyConfig fields that no study file may set.
_DERIVED = ("study_dir", "import_families", "hypermodel")
# A study's name (a folder's, and an hpo.Tuner's project_name), of at most STUDY_NAME_LENGTH
# characters: Optuna's and a file system's limits are far above it.
STUDY_NAME_LENGTH = 100
STUDY_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{STUDY_NAME_LENGTH - 1}}}")


class Diversity(enum.Enum):
    """How each trial's model family is chosen (the other parameters are TPE's either way)."""

    NONE = "none"
    BALANCED = "balanced"
    TOP = "top"


# Objectives Keras logs whatever the model's metrics: the loss, and the accuracy hpo measures.
_META_OBJECTIVES = ("val_loss", "loss", "val_accuracy", "accuracy")
_RENAME = (
    " For a metric of your own that Keras logs as {name!r}, give it a name of its own (its "
    "`name=`) where the model is compiled."
)


class PrunerKind(enum.Enum):
    """Which Optuna pruner stops unpromising trials."""

    MEDIAN = "median"
    HYPERBAND = "hyperband"
    NONE = "none"


# The seeds Optuna's samplers and NumPy take: 0 to 2**32 - 1.
SEEDS = 2**32


@dataclass(frozen=True)
class SamplerConfig:
    """Seeded TPE sampler settings.

    Args:
        seed: Random seed of the sampler; the same seed replays the same search.
        startup_trials: Random trials before TPE starts modelling the space.
        diversity: How the family is chosen: "balanced" (the default: the family with the
            fewest trials so far), "top" (every other trial, the family with the fewest trials
            among the study's best; TPE's choice otherwise) or "none" (TPE, like every other
            parameter). See `hpo.diversity`; benchmarks/RESULTS.md has the measurements behind
            the default (both beat "none", and "balanced" beat "top" side by side).
    """

    seed: int = 0
    startup_trials: int = 10
    diversity: Diversity = Diversity.BALANCED

    def __post_init__(self) -> None:
        _require(self.startup_trials >= 0, "sampler.startup_trials", self.startup_trials, ">= 0")
        _require(0 <= self.seed < SEEDS, "sampler.seed", self.seed, f"from 0 to {SEEDS - 1}")

    def trial_seed(self, number: int) -> int:
        """The seed of trial `number`'s training: the study's seed plus its number, within
        the seeds NumPy takes (Keras's `set_random_seed`)."""
        return (self.seed + number) % SEEDS


@dataclass(frozen=True)
class PrunerConfig:
    """Pruner settings.

    Args:
        kind: "median" (default), "hyperband" or "none" (no trial pruned, by the chance-level
            check neither: `TrainingConfig.chance_epochs`).
        startup_trials: Median pruner: trials that finish before any pruning.
        warmup_epochs: Median pruner: epochs of each trial that are never pruned.
        by_family: Median pruner: judge a trial against the finished trials of its own family
            only (and count `startup_trials` per family), so that a family that learns fast
            does not prune every trial of the others at their first judged epoch.
    """

    kind: PrunerKind = PrunerKind.MEDIAN
    startup_trials: int = 5
    warmup_epochs: int = 1
    by_family: bool = False

    def __post_init__(self) -> None:
        _require(self.startup_trials >= 0, "pruner.startup_trials", self.startup_trials, ">= 0")
        _require(self.warmup_epochs >= 0, "pruner.warmup_epochs", self.warmup_epochs, ">= 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split.

    Args:
        path: The data set (folder or archive); relative paths are read from the study file's
            folder. `--data` and the task's environment variable take precedence.
        val_size: Validation examples held out of the training set (balanced; IMDB's are
            grouped by movie, images' stratified by class). Unused where a folder or archive
            holds a validation split of its own (`val/`), which is then the validation set.
        train_size: Training examples used after the split; 0 uses all of them.
        seed: Seed of the validation split and of the training subset.
        image_size: Image tasks: [height, width] every image is resized to; needed only when a
            folder's images differ in size.
        test_path: Text tables: the test split's own table (relative paths are read from the
            study file's folder).
        test_fraction: A folder of class folders without train/ and test/ splits: the share of
            each class held out as its test split (chosen by file name, never read by the
            search).
        text_column, label_column: Text tables: the columns holding the text and its class.
        group_column: Text tables: a column whose groups (an author, a product) stay on one
            side of the validation split; none by default.
        encoding: Own text data (tables and .txt files): the files' text encoding, a Python
            codec name ("cp1252" for a table Excel saved on Windows); UTF-8 by default, with
            a UTF-16 file told by its byte-order mark.
    """

    path: str | None = None
    val_size: int = 5000
    train_size: int = 0
    seed: int = 0
    image_size: list[int] | None = None
    test_path: str | None = None
    test_fraction: float = TEST_FRACTION
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        _require_path(self.path, "data.path")
        _require_path(self.test_path, "data.test_path")
        _require(self.val_size >= 2, "data.val_size", self.val_size, ">= 2")
        _require(self.seed >= 0, "data.seed", self.seed, ">= 0")
        _require(
            _is_text_codec(self.encoding),
            "data.encoding",
            self.encoding,
            "a text encoding Python knows, such as 'utf-8', 'cp1252' or 'latin-1'",
        )
        _require(self.train_size >= 0, "data.train_size", self.train_size, ">= 0 (0 means all)")
        _require(
            isinstance(self.test_fraction, (int, float)) and 0.05 <= self.test_fraction <= 0.5,
            "data.test_fraction",
            self.test_fraction,
            "a share of each class from 0.05 to 0.5",
        )
        _require(
            self.image_size is None
            or (
                len(self.image_size) == 2
                and all(type(v) is int and 8 <= v <= 4096 for v in self.image_size)
            ),
            "data.image_size",
            self.image_size,
            "[height, width] in pixels, each from 8 to 4096",
        )


@dataclass(frozen=True)
class TrainingConfig:
    """How one trial trains.

    Args:
        max_epochs: Upper bound on epochs per trial.
        patience: Epochs without validation improvement before early stopping.
        lr_patience: Epochs without improvement before the learning rate is reduced.
        lr_factor: Factor applied to the learning rate on a plateau.
        chance_epochs: A trial whose validation accuracy is still at chance level after
            this many epochs is pruned (0 disables the check); only where the objective is
            "val_accuracy" and the study has a pruner (`PrunerKind.NONE` prunes no trial).
        chance_margin: How far above chance level (the most frequent class's share of the
            validation examples) counts as learning; where twice this share of the error
            chance leaves (1 - chance) is less, that, so a class of 98% leaves it reachable.
        precision: "auto" (default: bfloat16 where it was measured faster, see
            `hpo.precision`), "float32", "mixed_bfloat16" or "mixed_float16".
        backend: The Keras backend trials train on: "tensorflow", "jax" or "torch"; default
            `$KERAS_BACKEND`, else TensorFlow. A search records the one it used.
        objective: What ranks trials, as Keras logs it (default "val_accuracy", which hpo
            measures itself on the validation data; "val_loss", or "val_auc" of a model
            compiled with an `AUC` metric): early stopping, the best epoch's checkpoint,
            pruning, the study's best trial and the ensemble's candidates all follow it.
        direction: "max" or "min": needed for an objective that is not a metric or loss Keras
            builds in, by the name Keras logs it ("val_auc", "val_r2_score", "val_mae", ...:
            `hpo.directions`), whose directions are known.
    """

    max_epochs: int = 20
    patience: int = 3
    lr_patience: int = 1
    lr_factor: float = 0.5
    chance_epochs: int = 2
    chance_margin: float = 0.02
    precision: Precision = Precision.AUTO
    backend: Backend | None = None
    objective: str = "val_accuracy"
    direction: Direction | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.objective, str) and self.objective.strip() == self.objective != "",
            "training.objective",
            self.objective,
            "a metric's name as Keras logs it, such as 'val_accuracy' or 'val_auc'",
        )
        known = known_direction(self.objective)
        _require(
            self.direction is not None or known is not None,
            "training.direction",
            self.direction,
            f"'max' or 'min' for objective {self.objective!r}, which is no metric Keras builds "
            f"in, so hpo cannot tell from its name whether it is better higher or lower",
        )
        settled = settled_direction(self.objective)
        if settled is not None and self.direction not in (None, settled):
            raise ConfigError(
                f"objective {self.objective!r} is better {settled.value}imized: its direction "
                f"must be {settled.value!r} (or left out), got {self.direction.value!r}."
                + _RENAME.format(name=self.objective.removeprefix("val_"))
                * (self.objective not in _META_OBJECTIVES)
            )
        _require(self.max_epochs >= 1, "training.max_epochs", self.max_epochs, ">= 1")
        _require(self.patience >= 1, "training.patience", self.patience, ">= 1")
        _require(self.lr_patience >= 1, "training.lr_patience", self.lr_patience, ">= 1")
        _require(0 < self.lr_factor < 1, "training.lr_factor", self.lr_factor, "in (0, 1)")
        _require(self.chance_epochs >= 0, "training.chance_epochs", self.chance_epochs, ">= 0")
        _require(
            0 <= self.chance_margin < 0.5, "training.chance_margin", self.chance_margin, "[0, 0.5)"
        )

    @property
    def mode(self) -> str:
        """The objective's direction as Keras's callbacks take it: "max" or "min"."""
        direction = self.direction or known_direction(self.objective)
        assert direction is not None  # __post_init__ requires one or the other
        return direction.value

    @property
    def maximize(self) -> bool:
        """Whether a higher objective is better."""
        return self.mode == Direction.MAX.value


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study, as read from its TOML file.

    Args:
        name: Study name; also the name of its folder beside the study file.
        task: The task (data, model families, metric), by name.
        storage: Optuna storage URL; default: SQLite in the study's folder.
        artifacts: Where trials store checkpoints and predictions: a folder (default:
            `artifacts/` in the study's folder; shared by every machine of a study), or an S3
            bucket as `s3://bucket` (Optuna's Boto3ArtifactStore; credentials and endpoint from
            the usual AWS environment).
        n_trials: Finished (complete or pruned) trials the study should hold.
        timeout: Seconds after which each worker stops starting new trials.
        budget: Wall-clock seconds for the whole study, across resumed runs, data preparation
            included (the study file may say "2h" or "90m"). No trial starts that its estimate
            says cannot finish, and a running trial stops at the epoch that would overrun it.
        max_trial_minutes: Cap on one trial's training; default: an eighth of the budget.
        workers: Worker processes sharing the storage; default one, or on a machine with GPUs
            `trials_per_gpu` per GPU.
        trials_per_gpu: Trials that share one GPU at once (each worker's trials see one GPU).
        enqueue_defaults: Start a new study with each family's hand-made default settings.
        max_failures: Consecutive failed trials that stop the search.
        keep_checkpoints: After each trial, delete the checkpoints of all but the best N
            complete trials and the members of recorded ensembles (`hpo gc`); default: keep all.
        tensorboard: Write a TensorBoard log per trial.
        sampler: Sampler settings.
        pruner: Pruner settings.
        data: Data settings.
        training: Per-trial training settings.
        space: Narrowing of the search space: parameter name -> list of choices or [low, high].
        families: Extra model families, name -> import path `module:attribute` (a KerasTuner
            `HyperModel` class or instance, a `build(hp)` function, or a family module); the
            module is imported from the study file's folder or the Python path. They join the
            task's own families in the `family` choice.
        study_dir: The study's own folder, where everything it generates lives.
        import_families: Whether `families` may be imported. True for a study file the user
            gives; False for a configuration read from a study store, whose module names are
            data that must never choose code to run (derived, never read from a file or store).
        hypermodel: A hypermodel given in memory by `hpo.Tuner` (a `PortableHypermodel`), which
            reaches trial processes by value and is never stored: a study store holds its name
            only, as data (derived, never read from a file or store).
    """

    name: str
    task: str = "imdb"
    storage: str | None = None
    artifacts: str | None = None
    n_trials: int = 50
    timeout: float | None = None
    budget: float | None = None
    max_trial_minutes: float | None = None
    workers: int | None = None
    trials_per_gpu: int = 1
    enqueue_defaults: bool = True
    max_failures: int = 5
    keep_checkpoints: int | None = None
    tensorboard: bool = False
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    space: dict[str, list[Any]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    study_dir: Path = Path("studies")
    import_families: bool = True
    hypermodel: Any = None

    def __post_init__(self) -> None:
        _require(
            len(self.name) <= STUDY_NAME_LENGTH,
            "name",
            self.name,
            f"at most {STUDY_NAME_LENGTH} characters (it names the study's folder), not "
            f"{len(self.name)}",
        )
        _require(
            STUDY_NAME.fullmatch(self.name) is not None,
            "name",
            self.name,
            "a name of ASCII letters, digits, '-', '_' or '.' that starts with a letter or "
            "digit (it names the study's folder)",
        )
        _require_path(self.storage, "storage")
        _require_path(self.artifacts, "artifacts")
        _require(self.n_trials >= 1, "n_trials", self.n_trials, ">= 1")
        # inf passed `> 0`, and every trial then failed on a limit it could not state.
        for key, value, unit in (
            ("timeout", self.timeout, " seconds"),
            ("budget", self.budget, " seconds"),
            ("max_trial_minutes", self.max_trial_minutes, ""),
        ):
            _require(
                value is None or (0 < value < math.inf),
                key,
                value,
                f"a finite number > 0{unit} (leave it out for no limit)",
            )
        _require(self.workers is None or self.workers >= 1, "workers", self.workers, ">= 1")
        _require(self.trials_per_gpu >= 1, "trials_per_gpu", self.trials_per_gpu, ">= 1")
        _require(self.max_failures >= 1, "max_failures", self.max_failures, ">= 1")
        _require(
            self.keep_checkpoints is None or self.keep_checkpoints >= 1,
            "keep_checkpoints",
            self.keep_checkpoints,
            ">= 1 (the best trials' checkpoints to keep; leave it out to keep all)",
        )

    @property
    def storage_url(self) -> str:
        """The storage URL, defaulting to a SQLite file in the study's folder."""
        return self.storage or sqlite_url((self.study_dir / "study.db").resolve())

    @property
    def trial_limit(self) -> int | None:
        """The finished trials that end the search (`n_trials`), or None where its budget alone
        ends it (`UNLIMITED_TRIALS` with a budget)."""
        if self.budget is not None and self.n_trials >= UNLIMITED_TRIALS:
            return None
        return self.n_trials

    @property
    def trial_cap_seconds(self) -> float | None:
        """The per-trial cap: `max_trial_minutes`, else an eighth of the budget, else none."""
        if self.max_trial_minutes is not None:
            return self.max_trial_minutes * 60
        return None if self.budget is None else self.budget / 8

    def __repr__(self) -> str:
        from hpo.store import redacted_repr

        return redacted_repr(self)

    @property
    def artifact_dir(self) -> Path:
        """The file-system artifact store's folder."""
        if self.artifacts is None:
            return self.study_dir / "artifacts"
        return Path(self.artifacts)

    @property
    def artifact_location(self) -> str:
        """The artifact store: `s3://bucket`, or the folder's absolute path."""
        if self.artifacts is not None and self.artifacts.startswith(S3_SCHEME):
            return self.artifacts
        return str(self.artifact_dir.resolve())

    @property
    def cache_dir(self) -> Path:
        """Where tokenized data is cached."""
        return self.study_dir / "cache"

    def with_overrides(self, **overrides: Any) -> StudyConfig:
        """Returns a copy with the given fields replaced; `None` values are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return dataclasses.replace(self, **given)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (given as a flag or argument, over the study file)") from exc


# The study file a command reads without --study, from the folder it runs in.
DEFAULT_STUDY = "studies/imdb.toml"


def load_study_config(path: str | Path) -> StudyConfig:
    """Reads and validates a study file.

    Args:
        path: The study's TOML file. Its folder holds the study's own folder, named after it.

    Returns:
        The validated configuration, with `study_dir` set.

    Raises:
        ConfigError: The file is missing, is not TOML, has unknown keys or invalid values.
    """
    path = Path(path)
    try:
        # utf-8-sig: Windows editors (Notepad) save UTF-8 with a byte-order mark, which TOML
        # does not allow.
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        if path == Path(DEFAULT_STUDY):
            raise ConfigError(
                f"no study file was given, and the default one, {DEFAULT_STUDY}, is not in "
                f"{Path.cwd()}, where it is read from. Run this from the project's root "
                f"folder, which holds it, or pass your study file: --study FILE."
            ) from exc
        where = (
            f" (a path relative to {Path.cwd()}, where this runs)" if not path.is_absolute() else ""
        )
        raise ConfigError(
            f"study file {path} does not exist{where}. Pass an existing file: a study file "
            f"of the project's studies/ folder, run from the project's root folder, or its "
            f"full path."
        ) from exc
    except IsADirectoryError as exc:
        files = sorted(p.name for p in path.glob("*.toml"))[:5]
        raise ConfigError(
            f"study file {path} is a folder; give a study file (TOML) in it"
            + (f", such as {path / files[0]} (it holds {', '.join(files)})." if files else ".")
        ) from exc
    except PermissionError as exc:
        raise ConfigError(f"study file {path} cannot be read: {exc.strerror}.") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"study file {path} is not valid TOML: {exc}") from exc
    for derived in _DERIVED:
        if derived in raw:
            raise ConfigError(f"{path}: '{derived}' is not a study-file key; remove it.")
    name = raw.get("name", path.stem)
    if "name" not in raw and STUDY_NAME.fullmatch(name) is None:
        fit = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-_.") or "my-study"
        raise ConfigError(
            f"{path} has no 'name' key, so the study is named after the file, {name!r}, which "
            f"is not a study name: ASCII letters, digits, '-', '_' or '.', starting with a "
            f'letter or digit (it names the study\'s folder). Add name = "{fit}" to the '
            f"study file, or rename the file."
        )
    if not isinstance(name, str):
        raise ConfigError(f"{path}: 'name' must be a string, got {name!r}.")
    raw = {**raw, "name": name, "study_dir": path.parent / name}
    if "budget" in raw:
        try:
            raw["budget"] = parse_duration(raw["budget"], "budget")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("path", "test_path"):
            if isinstance(data.get(key), str) and data[key].strip():
                # Absolute, as the study records them: a command run from another folder, or
                # on the study's database alone, reads the same files.
                expanded = expand_user(data[key], f"the study file's data.{key}")
                data = {**data, key: str((path.parent / expanded).resolve())}
        raw["data"] = data
    # A relative SQLite file and artifact folder are the study file's too, as its data are:
    # from another folder, the same study file must find the same study.
    storage = raw.get("storage")
    if isinstance(storage, str) and storage.startswith(_SQLITE_FILE):
        file, query, rest = storage.removeprefix(_SQLITE_FILE).partition("?")
        if file and file != ":memory:" and not file.startswith("/"):
            folder = _beside(path, Path(file), "storage").parent
            raw["storage"] = f"{sqlite_url(folder)}/{Path(file).name}{query}{rest}"
    artifacts = raw.get("artifacts")
    if isinstance(artifacts, str) and artifacts and not artifacts.startswith(S3_SCHEME):
        folder = expand_user(artifacts, "the study file's artifacts")
        raw["artifacts"] = str(
            folder if folder.is_absolute() else _beside(path, folder, "artifacts")
        )
    try:
        return _build(StudyConfig, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _beside(study_file: Path, relative: Path, key: str) -> Path:
    """A relative `storage` file or `artifacts` folder, read from the study file's folder; or,
    where nothing is there but something is where hpo read it before a64489b (from the folder
    it runs in), from there, with a warning, so that an upgrade finds the study's files."""
    here = study_file.parent.resolve() / relative
    before = Path.cwd() / relative
    if here.exists() or not before.exists() or before.resolve() == here:
        return here
    _log.warning(
        "%s: %s %r is read from the study file's folder (%s), where there is nothing; it is "
        "read from %s, where hpo read it from before. Move it beside the study file, or give "
        "%s as an absolute path.",
        study_file,
        key,
        str(relative),
        here,
        before,
        key,
    )
    return before.resolve()


def config_to_dict(config: StudyConfig) -> dict[str, Any]:
    """The configuration as JSON-serialisable data, for storing in the study."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Path):
            return str(value.resolve())
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        return value

    # The in-memory hypermodel is code: it is never stored (nor deep-copied by `asdict`).
    data = plain(dataclasses.asdict(dataclasses.replace(config, hypermodel=None)))
    for key in ("path", "test_path"):
        # A relative path names a file in the folder the search runs in, which a reader of
        # the study elsewhere does not know.
        if isinstance(value := data["data"].get(key), str):
            data["data"][key] = str(expand_user(value, f"data.{key}").resolve())
    data.pop("import_families", None)
    data.pop("hypermodel", None)
    if data.get("storage"):
        # Stored in the study, where the dashboard shows it: never with a password.
        from hpo.store import redact_url

        data["storage"] = redact_url(data["storage"])
    return data


def config_from_dict(data: dict[str, Any]) -> StudyConfig:
    """Rebuilds a configuration stored with `config_to_dict`.

    Its families are never imported (`import_families` is False): a study store is data.
    """
    stored = {k: v for k, v in data.items() if k not in ("import_families", "hypermodel")}
    return dataclasses.replace(_build(StudyConfig, stored, ""), import_families=False)


_SQLITE_FILE = "sqlite:///"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file at `path`, whose `%` and `?` are escaped: a URL reads
    them as an escape and as its query's start (a folder "runs?" put the database in "runs")."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def _is_text_codec(name: object) -> bool:
    try:
        "a".encode(str(name))  # LookupError for an unknown codec or a bytes one ("base64")
    except UnicodeError:
        pass  # a text codec that has no "a"
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        return False
    return isinstance(name, str)


def _require(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"'{key}' must be {expected}, got {value!r}.")


def _require_path(value: str | None, key: str) -> None:
    # Path("") is ".": an empty path named the folder a command ran in, not a default.
    if isinstance(value, str) and not value.strip():
        raise ConfigError(
            f"'{key}' must name a file or folder, got {value!r}. Leave '{key}' out for its "
            f"default, or give the path."
        )


def _build(cls: type[Any], table: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - fields)
    if unknown:
        key = prefix + unknown[0]
        known = sorted(fields - set(_DERIVED))
        if home := _tables_with(unknown[0]):
            # In TOML a key belongs to the table whose header is above it.
            hint = (
                f" It is a key of the {' or the '.join(f'[{t}]' for t in home)} table: move it "
                f"under that header (a key belongs to the [table] header above it)."
            )
        elif prefix and unknown[0] in _top_level():
            hint = " It is a top-level key: move it above the file's first [table] header."
        else:
            hint = did_you_mean(unknown[0], known, prefix)
        raise ConfigError(
            f"unknown key '{key}'.{hint} Expected one of: "
            + ", ".join(prefix + name for name in known)
            + "."
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in table
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        # A study file always has its name (its file's, unless it sets one); a study store's
        # record may have lost it.
        raise ConfigError(f"the key '{prefix + missing[0]}' is missing; it has no default.")
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in table.items()}
    return cls(**kwargs)


def _top_level() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(StudyConfig)) - set(_DERIVED)


def _tables_with(name: str) -> list[str]:
    """The study file's tables ([training], ...) that have a key `name`."""
    hints = typing.get_type_hints(StudyConfig)
    return [
        table
        for table, hint in hints.items()
        if dataclasses.is_dataclass(hint) and name in {f.name for f in dataclasses.fields(hint)}
    ]


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """A hint naming the known name closest to a mistyped one (Did you mean 'x'?), or ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ""


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(options[0], value, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a table ([{key}]), got {value!r}.")
        return _build(hint, value, key + ".")  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError as exc:
            choices = ", ".join(repr(m.value) for m in hint)
            raise ConfigError(f"'{key}' must be one of {choices}, got {value!r}.") from exc
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a table ([{key}]), got {value!r}.")
        if typing.get_args(hint)[1] is str:
            for sub, entry in value.items():
                if not isinstance(entry, str):
                    raise ConfigError(f"'{key}.{sub}' must be a string, got {entry!r}.")
            return dict(value)
        for sub, entry in value.items():
            if not isinstance(entry, list) or not entry:
                raise ConfigError(
                    f"'{key}.{sub}' must be a non-empty list (choices, or [low, high]), "
                    f"got {entry!r}."
                )
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list, got {value!r}.")
        return list(value)
    if hint is Path:
        _require(isinstance(value, (str, Path)), key, value, "a path (a string)")
        return Path(value)
    expected: tuple[type, ...] = (int, float) if hint is float else (hint,)
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, expected):
        if hint is int and isinstance(value, float):
            share = key.endswith("_size") and 0 < value < 1
            counted = " (a count of examples, not a share of them)" if share else ""
            raise ConfigError(f"'{key}' must be a whole number{counted}, got {value!r}.")
        raise ConfigError(f"'{key}' must be of type {hint.__name__}, got {value!r}.")
    return float(value) if hint is float else value  # type: ignore[arg-type]
