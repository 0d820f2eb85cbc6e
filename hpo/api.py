"""hpo from Python: run a study's search, build its ensemble, distil it, read a study, load a
model.

The `hpo search`, `hpo ensemble` and `hpo distill` commands parse their flags and call
`search`, `ensemble` and `distill` here; `hpo.Tuner` (`hpo.tuner`) is the KerasTuner-shaped
way to search and ensemble on arrays in memory. Importing this module loads neither Keras nor
TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpo._stop import stoppable
from hpo.backend import callers_environment
from hpo.config import DEFAULT_STUDY, StudyConfig, load_study_config
from hpo.errors import ConfigError
from hpo.scratch import scratch_folder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import keras
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.distill.build import DistillResult
    from hpo.ensemble.build import EnsembleResult
    from hpo.search.workers import SearchSummary

__all__ = [
    "DEFAULT_STUDY",
    "Study",
    "StudyRef",
    "distill",
    "ensemble",
    "load_model",
    "load_study",
    "search",
]

# A study as the functions here take it: its study file, or its configuration.
StudyRef = str | Path | StudyConfig


@dataclass(frozen=True)
class Study:
    """An existing study: its configuration and its Optuna study.

    Attributes:
        config: The study's configuration (from its study file, or as its search recorded it).
        optuna_study: The Optuna study, for Optuna's own API (`trials_dataframe()`, plots).
    """

    config: StudyConfig
    optuna_study: optuna.Study

    def __repr__(self) -> str:
        # A notebook prints it: the study, where it is stored (password masked) and its
        # trials, not the whole configuration (`study.config` shows that).
        from hpo.store import redact_url

        counts = Counter(t.state.name for t in self.optuna_study.get_trials(deepcopy=False))
        trials = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
        return (
            f"Study(name={self.name!r}, storage={redact_url(self.config.storage_url)!r}, "
            f"trials: {trials})"
        )

    @property
    def name(self) -> str:
        """The study's name."""
        return self.config.name

    def best_trials(self, n: int = 1) -> list[FrozenTrial]:
        """The `n` best COMPLETE trials with a checkpoint, best first by the objective.

        Raises:
            StoreError: The study has no COMPLETE trial.
        """
        from hpo.ensemble.selection import ranked_trials

        return ranked_trials(self.optuna_study)[:n]

    @stoppable
    def load_model(self, trial: int | str | None = None) -> keras.Model:
        """A trial's best model, as stored: uncompiled, giving class probabilities.

        Args:
            trial: The trial's number (or KerasTuner's id of it, "01"); default: the best.

        Raises:
            ConfigError: `trial` is no trial number.
            StoreError: No such COMPLETE trial, or its checkpoint is missing or changed.
        """

        from hpo.artifacts import holding
        from hpo.contract import fetch_checkpoint, load_checkpoint
        from hpo.ensemble.selection import ranked_trials
        from hpo.errors import StoreError
        from hpo.store import open_artifact_store

        if isinstance(trial, str) and trial.strip().isdigit():
            trial = int(trial)  # a KerasTuner trial id, "01"
        if not (trial is None or isinstance(trial, int)):
            raise ConfigError(f"trial must be a trial's number, got {trial!r}.")
        ranked = ranked_trials(self.optuna_study)
        chosen = (
            ranked[0] if trial is None else next((t for t in ranked if t.number == trial), None)
        )
        if chosen is None:
            raise StoreError(
                f"study {self.name!r} has no COMPLETE trial {trial} with a checkpoint; its "
                f"best trials: {[t.number for t in ranked[:10]]}."
            )
        store = open_artifact_store(self.config.artifact_location, create=False)
        with (
            holding(self.optuna_study, [chosen.number], "load_model") as removed,
            scratch_folder("model") as scratch,
        ):
            if chosen.number in removed:
                raise StoreError(
                    f"trial {chosen.number}'s checkpoint was removed by hpo gc just now "
                    f"({removed[chosen.number]}); ask for another trial, or none for the best."
                )
            path = fetch_checkpoint(store, chosen, Path(scratch))
            return load_checkpoint(path, chosen.number)


def load_study(
    study: StudyRef | Study | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
) -> Study:
    """Opens an existing study (never creates one).

    Args:
        study: Its study file (default `studies/imdb.toml`) or configuration; a `Study`, already
            open, is returned as it is.
        storage: With `study_name` and no `study`: the storage URL of a study to read with the
            settings its search recorded (its own model code is never imported from there).
            With a configuration: the storage to read it from instead of its own.
        study_name: The study's name in `storage`.

    Raises:
        ConfigError: Both ways, or only one of `storage` and `study_name`, were given; or
            `study_name` with a configuration, or either with a `Study`.
        StoreError: No such database or study, or the study was not made by hpo.
    """
    from hpo.command_options import open_study
    from hpo.store import load_existing_study, open_storage

    _refuse_two_ways(study, storage, study_name)
    if isinstance(study, Study):
        return study
    if isinstance(study, StudyConfig):
        config = study.with_overrides(storage=storage)
        opened = open_storage(config.storage_url, create=False, heartbeat=False)
        return Study(config, load_existing_study(opened, config.name))
    config, optuna_study = open_study(study, storage, study_name)
    return Study(config, optuna_study)


def _refuse_two_ways(
    study: StudyRef | Study | None, storage: str | None, study_name: str | None
) -> None:
    """Refuses a study named twice: `study_name` beside a configuration of another study, or
    either storage argument beside an open `Study` (`load_study` refuses the other mixes)."""
    if isinstance(study, Study) and (storage is not None or study_name is not None):
        raise ConfigError(
            f"storage and study_name name a study to open, but the Study {study.config.name!r} "
            f"is open already: give the Study alone, or storage= and study_name= without it."
        )
    if isinstance(study, StudyConfig) and study_name not in (None, study.name):
        raise ConfigError(
            f"study_name={study_name!r} with a configuration of the study {study.name!r}, "
            f"which names its own: give the configuration alone (storage= may say where it "
            f"is), or storage= and study_name= without it."
        )


def search(
    study: StudyRef | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    budget: str | float | None = None,
    timeout: float | None = None,
    workers: int | None = None,
    trials_per_gpu: int | None = None,
    tensorboard: bool | None = None,
    data: str | None = None,
    progress: bool = False,
) -> SearchSummary:
    """Runs or resumes a study's search, as `hpo search` does; each trial in its own process.

    Arguments left None keep the study file's settings.

    Args:
        study: The study file (default `studies/imdb.toml`) or its configuration.
        storage: The storage URL (default: SQLite in the study's folder). With `study_name`
            and no `study`: join that study with the settings its search recorded.
        study_name: The study to join in `storage`.
        n_trials: Finished trials the study should hold.
        budget: Wall-clock budget of the whole study across resumed runs ("2h", "90m", or
            seconds).
        timeout: Seconds after which no new trial starts.
        workers: Worker processes sharing the storage.
        trials_per_gpu: Trials that share one GPU at once.
        tensorboard: Write a TensorBoard log per trial.
        data: The data set's folder or archive (else the task's variable, the study file's
            `data.path`, or a download).
        progress: Show a progress bar (on stderr, where the process has one).

    Returns:
        Counts and the best trial after the run.

    Raises:
        HpoError: Invalid configuration, data or storage, before any trial runs.
    """
    from hpo._output import optuna_logs
    from hpo._script import check_not_starting_child
    from hpo.budget import parse_duration
    from hpo.command_options import joining_config
    from hpo.search.workers import run_search

    check_not_starting_child("hpo.search")

    if study_name:
        if study is not None or not storage:
            raise ConfigError(
                "study_name joins a study by its storage: give storage=URL and study_name=NAME, "
                "without a study file (--storage URL --study-name NAME)."
            )
        base = joining_config(storage, study_name, Path("studies"))
    elif isinstance(study, StudyConfig):
        base = study
    else:
        base = load_study_config(study or DEFAULT_STUDY)
    if isinstance(budget, str):
        budget = parse_duration(budget, "budget")
    config = base.with_overrides(
        storage=storage,
        n_trials=n_trials,
        budget=budget,
        timeout=timeout,
        workers=workers,
        trials_per_gpu=trials_per_gpu,
        tensorboard=tensorboard,
    )
    # Optuna's own INFO lines are the CLI's --verbose; hpo prints a line for each trial.
    with optuna_logs(shown=False):
        return run_search(config, data=data, progress=progress)


@callers_environment()
@stoppable
def ensemble(
    study: StudyRef | Study | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    top: int = 5,
    pool: int | None = None,
    method: str = "caruana",
    calibrate: bool = True,
    formats: Sequence[str] = (),
    out_dir: str | Path | None = None,
    data: str | None = None,
    refit: bool = False,
) -> EnsembleResult:
    """Builds a study's ensemble, as `hpo ensemble` does: members and weights chosen on
    validation, evaluated once on the task's test set, exported as `ensemble.keras`.

    (For a study searched by `hpo.Tuner`, whose test set is yours, use `Tuner.ensemble`.)

    Args:
        study: The study file (default `studies/imdb.toml`), its configuration, or a `Study`.
        storage, study_name: Instead of `study`: the study's storage URL and name.
        top: The most members, and the plain ensemble's size (default 5).
        pool: Choose members among this many of the best trials (default 100, at least `top`).
        method: How the plain top ensemble is weighted: "caruana" (default), "score" or
            "uniform".
        calibrate: Fit a temperature on validation and export it (default True).
        formats: Exports besides `ensemble.keras` (always written; "keras" adds nothing):
            "savedmodel", "onnx" and/or "litert".
        out_dir: The output folder (default `ensembles/<study>-top<top>`).
        data: The data set's folder or archive, if not the one the search recorded.
        refit: Train each weighted member again on training + validation data for its best
            epoch count, then evaluate and export those (default False; `hpo.ensemble.refit`).

    Returns:
        The output folder and the report (`report["test"]["ensemble"]["accuracy"]`, ...).

    Raises:
        HpoError: No such study, no usable trial, other data than the search's, or a bad
            argument.
    """
    from hpo.backend import Backend, recorded_backend, use_backend
    from hpo.ensemble.build import DEFAULT_POOL, build_ensemble
    from hpo.ensemble.serving import Format, as_formats, check_formats, serving_backend
    from hpo.ensemble.weighting import ensemble_arguments
    from hpo.store import refuse_read_only

    weighting = ensemble_arguments(top, method)
    opened = load_study(study, storage=storage, study_name=study_name)
    config = opened.config
    refuse_read_only(
        config.storage_url,
        "hpo ensemble",
        "records each ensemble in its study (hpo gc keeps its members; the test data's hash is "
        "checked against it)",
    )
    # The members load and predict on the backend the search trained them on.
    made_on = recorded_backend(
        opened.optuna_study.user_attrs.get("hpo_config"), config.training.backend
    )
    asked = list(as_formats(formats))
    # TensorFlow writes a SavedModel, ONNX and LiteRT: for members made on JAX or PyTorch, a
    # process of its own exports the built ensemble on it (its packages checked first).
    later: tuple[str, ...] = ()
    if serving_backend(made_on, asked) is not made_on:
        later = tuple(f.value for f in asked if f is not Format.KERAS)
        check_formats(asked, Backend.TENSORFLOW.value)
    use_backend(made_on)
    result = build_ensemble(
        config,
        opened.optuna_study,
        top=top,
        pool=DEFAULT_POOL if pool is None else pool,
        method=weighting,
        calibrate=calibrate,
        formats=[f.value for f in asked if f.value not in later],
        out_dir=None if out_dir is None else Path(out_dir),
        data=data,
        refit=refit,
    )
    if later:
        from hpo.backend import backend_environment
        from hpo.disk import check_log_file
        from hpo.ensemble.exporter import export_on_tensorflow
        from hpo.training.isolation import call_isolated

        job = (config, opened.optuna_study.study_name, result.out_dir, later, data)
        log_path = config.study_dir / "logs" / "export.log"
        check_log_file(log_path)
        exported = call_isolated(
            export_on_tensorflow,
            job,
            log_path=log_path,
            env=backend_environment(Backend.TENSORFLOW),
            relay_warnings=True,
        )
        result = dataclasses.replace(result, report=exported.report)
    return result


@callers_environment()
@stoppable
def distill(
    ensemble_dir: str | Path,
    study: StudyRef | Study | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    family: str | None = None,
    max_latency: float = 1 / 3,  # hpo.distill.build.MAX_LATENCY: hpo.distill imports this module
    augment: int = 0,
    cross_fit: int = 0,
    label_weight: float = 0.0,
    warm_start: bool = False,
    refit: bool = False,
    max_epochs: int | None = None,
    out_dir: str | Path | None = None,
    data: str | None = None,
    latency_examples: int = 1000,
    repeats: int = 5,
    progress: Callable[[str], None] | None = print,
) -> DistillResult:
    """Distils an ensemble into one model of its study, as `hpo distill` does: trained on the
    ensemble's soft labels for the training inputs, stopped on validation, evaluated once on the
    task's test set beside the ensemble and its best member, timed side by side, exported.

    Args:
        ensemble_dir: A folder `hpo.ensemble` wrote from the study's trials, as searched (not
            refitted).
        study: The study file, its configuration, or a `Study`; default the study the
            ensemble's report names.
        storage, study_name: Instead of `study`: the study's storage URL and name.
        family: The student's family (default the ensemble's fastest member's).
        max_latency: The student takes the parameters of its family's best member by
            validation among those whose latency is at most this share of the ensemble's
            (its members' sum; default 1/3), else of the family's fastest member.
        augment: Altered copies of the training inputs the student also learns, labelled by
            the ensemble (text tasks; default 0).
        cross_fit: Soft labels the members did not fit, from K trainings per member (K >= 2;
            default 0: the members' own predictions).
        label_weight: The true labels' share of the targets, 0 (default) to 1.
        warm_start: Start from the weights of the trial whose parameters the student takes.
        refit: Once early stopping has chosen the student's epoch count, train it again on the
            training and validation inputs for that many epochs; that model is tested and
            exported (its validation scores are the early-stopped student's).
        max_epochs: The most epochs the student trains (default the study's `max_epochs`).
        out_dir: The output folder (default `<ensemble_dir>/distilled`).
        data: The data set's folder or archive, if not the one the search recorded.
        latency_examples, repeats: Test inputs per timed call, and timed rounds.
        progress: Called with a line as each step ends (default `print`; None: quiet).

    Returns:
        The output folder and the report (`report["goal"]["gain_kept_accuracy"]`, ...).

    Raises:
        HpoError: An argument out of its range (before any work), no ensemble in
            `ensemble_dir`, one of another study or refitted, a family the study does not
            search, or other data than the search's.
    """
    from types import SimpleNamespace

    from hpo.backend import recorded_backend, use_backend
    from hpo.command_options import open_ensemble_study
    from hpo.distill.build import check_arguments, distill_ensemble, read_ensemble_report

    # Refused out of their range before any work (`distill_ensemble` checks them again).
    ranged = {
        "max_latency": max_latency,
        "augment": augment,
        "cross_fit": cross_fit,
        "label_weight": label_weight,
        "max_epochs": max_epochs,
        "latency_examples": latency_examples,
        "repeats": repeats,
    }
    check_arguments(**ranged)
    _refuse_two_ways(study, storage, study_name)
    ensemble_dir = Path(ensemble_dir)
    read_ensemble_report(ensemble_dir)  # a missing ensemble is named before the study opens
    if isinstance(study, (Study, StudyConfig)):
        opened = load_study(study, storage=storage, study_name=study_name)
    else:
        given = SimpleNamespace(study=study, storage=storage, study_name=study_name)
        opened = Study(*open_ensemble_study(given, ensemble_dir))  # type: ignore[arg-type]
    config = opened.config
    use_backend(
        recorded_backend(opened.optuna_study.user_attrs.get("hpo_config"), config.training.backend)
    )
    return distill_ensemble(
        config,
        opened.optuna_study,
        ensemble_dir,
        family=family,
        out_dir=None if out_dir is None else Path(out_dir),
        data=data,
        warm_start=warm_start,
        refit=refit,
        progress=progress or (lambda line: None),
        **ranged,  # type: ignore[arg-type]
    )


@stoppable
def load_model(path: str | Path) -> keras.Model:
    """Loads a model hpo wrote: an exported `ensemble.keras` (or its folder), or a trial's
    checkpoint, in Keras's safe mode and uncompiled; it gives class probabilities.

    Args:
        path: A `.keras` file, or an ensemble's output folder (holding `ensemble.keras`).

    Raises:
        ConfigError: There is no such file, or it cannot be loaded: it is not a `.keras` file,
            holds a layer that runs code (`Lambda`, `TFSMLayer`), or a class that is not loaded.
    """
    from hpo.backend import keras_backend
    from hpo.contract import (
        CheckpointError,
        keras_cause,
        load_keras_file,
        own_class_hint,
        refuse_unsafe_layers,
    )
    from hpo.ensemble.export import EXPORT_NAME
    from hpo.ensemble.predict import exported_without_keras

    file = Path(path)
    if file.is_dir():
        file = file / EXPORT_NAME
    if not file.is_file():
        raise ConfigError(
            exported_without_keras(file.parent)
            or f"no model at {file}. Give a .keras file, or the folder `hpo ensemble` wrote "
            f"(it holds {EXPORT_NAME})."
        )
    try:
        # The checks hpo's commands make before loading a file (hpo predict, hpo ensemble).
        refuse_unsafe_layers(file, f"cannot load {file}")
        model = load_keras_file(file)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from exc
    except Exception as exc:
        cause = keras_cause(exc).rstrip(". ")
        hint = own_class_hint(exc) or (
            "; hpo loads models in Keras's safe mode only, as its commands do. If the file was "
            "changed since hpo wrote it, restore it, or write it again (hpo ensemble or hpo "
            "export)"
        )
        raise ConfigError(f"cannot load {file}: {cause}{hint}.") from exc
    backend = keras_backend()
    if backend != "tensorflow" and _takes_text(model):
        # It would load and then fail in predict with the backend's own dtype error.
        raise ConfigError(
            f"{file} takes raw text, which Keras reads with TensorFlow's string operations only, "
            f"and Keras runs on {backend} in this process. Load it in a process started with "
            f"KERAS_BACKEND=tensorflow, or score texts with hpo predict, which does."
        )
    return model


def _takes_text(model: keras.Model) -> bool:
    """Whether `model` reads raw strings; False for one without inputs to read (subclassed)."""
    from hpo.ensemble.export import takes_text

    try:
        return takes_text(model)
    except (AttributeError, IndexError, TypeError, ValueError):
        return False
