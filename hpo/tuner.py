"""hpo as KerasTuner: `Tuner(build_model, objective="val_accuracy", ...)` on arrays in memory.

A `Tuner` is an ordinary hpo study (SQLite under `directory/project_name`, seen by `hpo status`
and the dashboard) of the `arrays` task (`hpo.tasks.arrays`), whose one family is the
hypermodel given here (`hpo.models.portable`). `search` writes the arrays into the study once,
then runs the search as `hpo search` does: each trial in its own process, sampled by Optuna,
pruned, within budget. Running the same code again continues the study; `overwrite=True`
starts it anew.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import json
import logging
import numbers
import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo._output import optuna_logs
from hpo._script import check_not_starting_child, child_starting
from hpo._stop import stoppable
from hpo.budget import format_duration, parse_duration
from hpo.config import (
    UNLIMITED_TRIALS,
    DataConfig,
    PrunerConfig,
    PrunerKind,
    SamplerConfig,
    StudyConfig,
    TrainingConfig,
)
from hpo.directions import DEFAULT_OBJECTIVE, Direction, known_direction
from hpo.errors import (
    ConfigError,
    DataError,
    HpoError,
    OtherData,
    SearchStopped,
    StoreError,
)
from hpo.precision import Precision
from hpo.scratch import scratch_folder

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    import keras
    import keras_tuner
    import numpy as np
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.api import Study
    from hpo.data.in_memory import SplitArrays
    from hpo.ensemble.in_memory import Ensemble
    from hpo.oracle import StudyOracle
    from hpo.search.workers import SearchSummary
    from hpo.tasks import Task
    from hpo.tasks._base import TrialData

__all__ = ["Tuner"]

OBJECTIVE = "val_accuracy"
# KerasTuner's default when neither a trial count nor a budget is given (its RandomSearch's).
_DEFAULT_TRIALS = 10
# Arguments of `search` that reach `model.fit` (through the hypermodel's `fit`, if it has one).
_FIT_ARGUMENTS = ("batch_size", "class_weight", "shuffle")
# `model.fit` arguments KerasTuner's guides pass to `search` that hpo decides itself: accepted,
# with a warning, so that a script runs as written.
_FIT_DECIDED = {
    "steps_per_epoch": "each epoch trains on every training batch",
    "validation_steps": "each epoch is scored on every validation example",
    "validation_freq": "every epoch is scored, for early stopping and pruning",
}
# KerasTuner constructor arguments hpo has no use for: accepted, so that switching is one line.
_IGNORED = {
    "max_retries_per_trial": "a failed trial is not retried",
    "logger": "trials are recorded in the study's store",
    "tuner_id": "trials are named by the worker that ran them",
    "distribution_strategy": "each trial trains in its own process, on one device",
    "factor": "hpo's pruner (pruner=) stops unpromising trials after each epoch",
    "hyperband_iterations": "hpo's pruner (pruner=) stops unpromising trials after each epoch",
    "alpha": "TPE models the space, not a Gaussian process",
    "beta": "TPE models the space, not a Gaussian process",
}


def _check_no_kerastuner_hooks(cls: type) -> None:
    """Refuses a Tuner subclass that overrides KerasTuner's `run_trial` or its hooks (its
    custom-tuner guide), which hpo never calls: each trial trains in a process of its own, by
    `model.fit` or the hypermodel's own `fit`.

    Raises:
        ConfigError: Naming the methods and the fix.
    """
    hooks = ["run_trial", "on_trial_begin", "on_trial_end", "on_epoch_begin", "on_epoch_end"]
    hooks += ["on_batch_begin", "on_batch_end", "on_search_begin", "on_search_end"]
    mine = [
        f"{c.__name__}.{name}"
        for c in cls.__mro__
        if c is not Tuner and issubclass(c, Tuner)
        for name in hooks
        if name in vars(c)
    ]
    if mine:
        raise ConfigError(
            f"{', '.join(mine)}: hpo.Tuner never calls KerasTuner's run_trial or its hooks "
            f"(each trial trains in a process of its own). Put the training in a "
            f"keras_tuner.HyperModel's fit(hp, model, x, y, validation_data, callbacks, ...), "
            f"which each trial runs, calling callback.on_epoch_end(epoch, logs) with the "
            f"validation metrics each epoch (KerasTuner's custom training loop guide; see "
            f"docs/hypermodels.md), and give that HyperModel to hpo.Tuner."
        )


def _check_text_backend(x: Any, configured: Any) -> None:
    """Refuses text inputs on a backend other than TensorFlow, the only one with strings.

    Raises:
        DataError: Naming the backend and the two ways out.
    """
    from hpo.backend import Backend, resolve_backend
    from hpo.data.inputs import has_text

    backend = resolve_backend(configured)
    if backend is not Backend.TENSORFLOW and has_text(x):
        raise DataError(
            f"the inputs hold text, which Keras models take as TensorFlow strings only, and "
            f"this study trains on {backend.value}: run it with KERAS_BACKEND=tensorflow, or "
            f"turn the text into token ids first (keras.layers.TextVectorization applied to "
            f"the data, outside the model)."
        )


def _remove_project(project_dir: Path) -> None:
    """Deletes a project folder for `overwrite=True`; refuses a link or a file in its place.

    Raises:
        ConfigError: `project_dir` is a symbolic link (whose target hpo never deletes: it may
            hold anything) or not a folder.
    """
    if project_dir.is_symlink():
        raise ConfigError(
            f"overwrite=True deletes the project's folder, but {project_dir} is a symbolic link "
            f"(to {project_dir.readlink()}), and hpo never deletes a link's target. Remove the "
            f"link (or empty its target yourself) and run again, or pass another project_name."
        )
    if project_dir.exists() and not project_dir.is_dir():
        raise ConfigError(
            f"overwrite=True deletes the project's folder, but {project_dir} is a file, not a "
            f"project's folder. Move it aside and run again, or pass another project_name."
        )
    if project_dir.exists():
        _refuse_foreign_files(project_dir)
        _refuse_while_searched(project_dir)
        shutil.rmtree(project_dir)


# What overwrite=True may delete in a project's folder: what hpo writes there (the study's
# database and its SQLite and lock files, its folders, its logs), and what KerasTuner writes in
# a project of the same name, for a notebook that moves from KerasTuner to hpo.
_PROJECT_FOLDERS = frozenset({"artifacts", "cache", "logs", "reports", "tensorboard", "trials"})


def _written_by_a_tuner(name: str) -> bool:
    return (
        name in _PROJECT_FOLDERS
        or name.startswith("study.db")
        or name.endswith((".log", ".lock"))
        or name in {"oracle.json", ".ipynb_checkpoints"}
        or re.fullmatch(r"tuner\d*\.json|trial_\w+", name) is not None
    )


def _refuse_foreign_files(project_dir: Path) -> None:
    """Refuses `overwrite=True` of a folder that holds what no tuner wrote there: a
    `directory` or `project_name` mistyped as the user's own folder deleted all of it.

    Raises:
        ConfigError: Names the first of those files and the ways out.
    """
    foreign = sorted(entry.name for entry in project_dir.iterdir())
    foreign = [name for name in foreign if not _written_by_a_tuner(name)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if foreign[3:] else "")
        raise ConfigError(
            f"overwrite=True deletes the project's folder {project_dir}, but it holds what "
            f"neither hpo nor KerasTuner writes there ({shown}): it does not look like a "
            f"project's folder, and hpo deletes nothing of yours. Check directory= and "
            f"project_name=, or move those files out (or delete the folder yourself) and run "
            f"again."
        )


def _refuse_while_searched(project_dir: Path) -> None:
    """Refuses `overwrite=True` of a project that a search is running in: a worker of this
    machine that is alive, or one elsewhere that this machine cannot look up, holds a RUNNING
    trial. Deleting it under that search failed each of its later trials with "no study
    database", then "damaged" once the new one stood.

    Raises:
        ConfigError: Names the trial and its worker.
    """
    from optuna.trial import TrialState

    from hpo.config import sqlite_url
    from hpo.search.identity import WorkerIdentity
    from hpo.search.turns import RUN_LOCK_NAME, lock_file, searched_here
    from hpo.store import briefly_opened
    from hpo.training.isolation import process_alive

    database = project_dir / "study.db"
    if not database.is_file():
        return
    if searched_here(lock_file(sqlite_url(database), project_dir, RUN_LOCK_NAME)):
        raise ConfigError(
            f"overwrite=True deletes the project's folder {project_dir}, and a search of this "
            f"machine is running in it (preparing its data, or between trials): it would fail "
            f"each trial after. Stop that search first (or let it end), or pass another "
            f"project_name."
        )
    try:
        with briefly_opened(database) as storage:  # its file is about to go
            running = [
                trial
                for study in storage.get_all_studies()
                for trial in storage.get_all_trials(study._study_id, states=(TrialState.RUNNING,))
            ]
    except Exception:  # a damaged or foreign database: nothing known to run there
        return
    me = WorkerIdentity.current()
    for trial in running:
        worker = WorkerIdentity.recorded(trial)
        if worker is None:
            continue  # killed before it recorded its worker
        # This machine's (an older hpo's record: host and pid alone), left RUNNING by a search
        # that was killed.
        here = me.shares_processes_with(worker) or (worker.host, worker.boot_id) == (me.host, None)
        if here and not process_alive((worker.pid, worker.started)):
            continue
        raise ConfigError(
            f"overwrite=True deletes the project's folder {project_dir}, and a search is running "
            f"in it (trial {trial.number}, worker {worker}): it would fail each trial after. "
            f"Stop that search first, or pass another project_name. If no search runs (one "
            f"killed on another machine or in another container), delete the folder yourself."
        )


def _says_how_to_resume(search: Callable[..., Any]) -> Callable[..., Any]:
    """A Ctrl-C (a notebook's Stop) ends `Tuner.search` with a KeyboardInterrupt that says what
    was kept and how to go on, as `hpo search` does, not a traceback through SQLAlchemy and
    multiprocessing."""

    @functools.wraps(search)
    def call(self: Tuner, *args: Any, **kwargs: Any) -> Any:
        try:
            return search(self, *args, **kwargs)
        except KeyboardInterrupt as exc:
            if exc.args:  # another signal's stop (SIGTERM), named
                raise
            raise KeyboardInterrupt(
                f"search interrupted. The finished trials are saved in {self.project_dir}, and "
                f"a trial that was running is queued to run again: call search again to resume."
            ) from None

    return call


class Tuner:
    """KerasTuner's tuner interface on an hpo study: Optuna's sampling and pruning, a budget,
    a resumable SQLite study, trials in processes of their own, and an ensemble of the best.

    Args:
        hypermodel: A KerasTuner `build_model(hp)` function, or a `keras_tuner.HyperModel`
            (instance or class), defined anywhere: in a notebook cell too.
        objective: What ranks the trials, as KerasTuner takes it (default "val_accuracy",
            which hpo measures on your validation data, or for regression targets
            "val_loss"): a metric's name as Keras logs it
            ("val_loss", "val_auc" of a model compiled with `keras.metrics.AUC()`), its
            direction that of the Keras metric or loss of that name (R², F1, IoU, AUC and
            correlations maximized, errors and losses minimized), or for a metric of your own
            a `keras_tuner.Objective(name, direction)`. Early stopping, each trial's best
            epoch, pruning, the best trials and the ensemble's candidates follow it. A
            hypermodel's `fit` that returns a score (KerasTuner's custom objective) gives its
            value: left out, the number it returns is minimized ("default_objective"), as in
            KerasTuner; a dict it returns is ranked by the key the objective names.
        max_trials: Finished trials the study should hold, across runs (default 10 without a
            budget, else as many as the budget allows).
        budget: Wall-clock budget of the whole study across runs, data writing included
            ("30m", "2h", or seconds); no trial starts that cannot finish within it.
        max_trial_minutes: Cap on one trial's training (default: an eighth of the budget).
        directory: The folder holding the study (default the current folder).
        project_name: The study's name, and its folder's name inside `directory`.
        seed: The sampler's seed (default 0); the same seed replays the same search. None
            (KerasTuner's default) is 0: a study's seed is recorded, and a resumed one keeps it.
        pruner: "median" (default), "hyperband" or "none".
        overwrite: Delete an earlier study of the same name first (default False: continue it);
            a project folder that is a symbolic link is refused, its target never deleted.
        max_consecutive_failed_trials: Consecutive failed trials that stop the search
            (default 5; at least 1).
        executions_per_trial: Taken for KerasTuner's sake, with a warning above 1: hpo trains
            each trial once and averages over trials in the ensemble instead.
        max_epochs: As KerasTuner's `Hyperband` takes it: the most epochs of any trial, over
            `search(epochs=)` too.
        num_initial_points: As KerasTuner's `BayesianOptimization` takes it: the random
            trials before TPE models the space (default 10).
        hyperparameters: As KerasTuner's tuners take it: a `keras_tuner.HyperParameters` whose
            parameters take the place of the hypermodel's of the same name
            (`hp.Fixed("learning_rate", 1e-4)` fixes a rate it would search).
        tune_new_entries: False: parameters `hyperparameters` does not name keep their
            defaults (default True: searched).
        allow_new_entries: False: a parameter `hyperparameters` does not name is an error.
        optimizer, loss, metrics: As KerasTuner's tuners take them: each model `build_model`
            compiled is compiled again with these in place of its own (the rest of its compile
            arguments kept; a new optimizer each time).
        max_model_size: As KerasTuner's: a model of more parameters is rejected, and its trial
            pruned.
        **kwargs: KerasTuner's other constructor arguments are accepted and ignored, with a
            warning that says why; any other is an error.

    Raises:
        ConfigError: A bad argument, naming the fix.
    """

    def __init__(
        self,
        hypermodel: Any = None,
        objective: Any = None,
        *,
        max_trials: int | None = None,
        budget: str | float | None = None,
        max_trial_minutes: float | None = None,
        directory: str | Path = ".",
        project_name: str = "untitled_project",
        seed: int | None = 0,
        pruner: str = "median",
        overwrite: bool = False,
        max_consecutive_failed_trials: int | None = None,
        executions_per_trial: int = 1,
        max_epochs: int | None = None,
        num_initial_points: int | None = None,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        optimizer: Any = None,
        loss: Any = None,
        metrics: Any = None,
        max_model_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        from hpo.models.portable import PortableHypermodel

        _check_no_kerastuner_hooks(type(self))
        if hypermodel is None:
            raise ConfigError(
                "hpo.Tuner needs a hypermodel, got none: hpo.Tuner(build_model, ...) with a "
                "build_model(hp) function, or a keras_tuner.HyperModel."
            )
        objective_name, direction = _objective(objective)
        # Regression targets have no accuracy: left out, the objective is then the loss.
        self._objective_given = objective is not None
        unknown = sorted(set(kwargs) - set(_IGNORED))
        if unknown:
            raise TypeError(f"Tuner() got an unexpected keyword argument {unknown[0]!r}")
        for name in kwargs:
            warnings.warn(f"hpo.Tuner ignores {name}= ({_IGNORED[name]}).", stacklevel=2)
        executions_per_trial = _whole_number("executions_per_trial", executions_per_trial, 1)
        if executions_per_trial > 1:
            warnings.warn(
                f"hpo.Tuner trains each trial once (executions_per_trial={executions_per_trial} "
                f"is not used): tuner.ensemble() averages the best trials instead, and a "
                f"search's trials are compared on one validation set.",
                stacklevel=2,
            )
        try:
            pruner_kind = PrunerKind(pruner)
        except ValueError as exc:
            raise ConfigError(
                f"pruner must be one of {[k.value for k in PrunerKind]}, got {pruner!r}."
            ) from exc
        seconds = parse_duration(budget, "budget") if isinstance(budget, str) else budget
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not seconds > 0
        ):
            raise ConfigError(
                f'budget must be a duration ("30m", "2h") or a number of seconds > 0, got '
                f"{budget!r}."
            )
        # Each named as the caller named it, not as the study file names it (n_trials).
        if max_trials is None:
            max_trials = _DEFAULT_TRIALS if seconds is None else UNLIMITED_TRIALS
        else:
            max_trials = _whole_number("max_trials", max_trials, 1)
        if max_epochs is not None:
            max_epochs = _whole_number("max_epochs", max_epochs, 1)
        if num_initial_points is not None:
            num_initial_points = _whole_number("num_initial_points", num_initial_points, 0)
        if max_consecutive_failed_trials is not None:
            # KerasTuner's 0 ends its search with an error once a trial does not fail.
            max_consecutive_failed_trials = _whole_number(
                "max_consecutive_failed_trials", max_consecutive_failed_trials, 1
            )
        if seed is not None:
            seed = _whole_number("seed", seed, 0)
        if max_trial_minutes is not None and (
            isinstance(max_trial_minutes, bool)
            or not isinstance(max_trial_minutes, numbers.Real)
            or not max_trial_minutes > 0
        ):
            raise ConfigError(
                f"max_trial_minutes must be a number of minutes > 0, got {max_trial_minutes!r}."
            )
        if hyperparameters is not None and not hasattr(hyperparameters, "space"):
            raise ConfigError(
                f"hyperparameters must be a keras_tuner.HyperParameters, got "
                f"{type(hyperparameters).__name__}: hp = keras_tuner.HyperParameters(); "
                f"hp.Fixed('learning_rate', 1e-4); hpo.Tuner(..., hyperparameters=hp)."
            )
        self._declared: dict[str, Any] = {
            "declared": hyperparameters,
            "tune_new_entries": bool(tune_new_entries),
            "allow_new_entries": bool(allow_new_entries),
        }
        self._hypermodel = hypermodel
        given = {"optimizer": optimizer, "loss": loss, "metrics": metrics}
        self._overrides = {k: v for k, v in given.items() if v is not None}
        if max_model_size is not None:
            self._overrides["max_model_size"] = _whole_number("max_model_size", max_model_size, 1)
        self._epochs_cap = max_epochs
        _check_project_name(project_name)
        self.directory = Path(directory)
        self.project_dir = self.directory / project_name
        portable = PortableHypermodel(
            hypermodel, declared=self._declared, overrides=self._overrides
        )
        self.config = StudyConfig(
            name=project_name,
            task="arrays",
            n_trials=max_trials,
            budget=seconds,
            max_trial_minutes=max_trial_minutes,
            max_failures=(
                StudyConfig.max_failures
                if max_consecutive_failed_trials is None
                else max_consecutive_failed_trials
            ),
            sampler=SamplerConfig(
                seed=0 if seed is None else seed,
                startup_trials=(
                    SamplerConfig.startup_trials
                    if num_initial_points is None
                    else num_initial_points
                ),
            ),
            pruner=PrunerConfig(kind=pruner_kind),
            training=TrainingConfig(
                backend=_loaded_backend(),
                max_epochs=TrainingConfig.max_epochs if max_epochs is None else max_epochs,
                objective=objective_name,
                direction=direction,
            ),
            families={portable.name: portable.spec},
            study_dir=self.project_dir,
            hypermodel=portable,
        )
        # A trial process starting imports the script again: its Tuner must not delete the
        # study that the search running in this script is writing.
        if overwrite and not child_starting():
            _remove_project(self.project_dir)

    def __repr__(self) -> str:
        # Printed by a notebook: where the project is and what it searches for, not an address.
        training = self.config.training
        limit = self.config.trial_limit
        limits = [] if limit is None else [f"max_trials={limit}"]
        if self.config.budget is not None:
            limits.append(f"budget={format_duration(self.config.budget)!r}")
        return (
            f"Tuner(project_dir={str(self.project_dir)!r}, objective={training.objective!r}, "
            f"direction={training.mode!r}, {', '.join(limits)})"
        ).replace(", )", ")")

    @property
    def hypermodel(self) -> keras_tuner.HyperModel:
        """The hypermodel as KerasTuner holds it (a `build_model` function wrapped in a
        `HyperModel`): `tuner.hypermodel.build(best_hp)` builds a model of the best values, and
        `tuner.hypermodel.fit(best_hp, model, x, y, ...)` trains it as the hypermodel trains.
        A `HyperModel` class is made as the trials made it: with the data's `input_shape` and
        `classes` where its constructor takes them, once a search has given them.

        Raises:
            ConfigError: A `HyperModel` class that cannot be made with those arguments, or
                without any before the first search.
        """
        return self._made("tuner.hypermodel makes the hypermodel")

    def _made(self, why: str, given: Mapping[str, Any] | None = None) -> keras_tuner.HyperModel:
        """The hypermodel as a `keras_tuner.HyperModel`; a class made with the arguments the
        task's values `given` (default the study's, `_given`) give it, as each trial makes it."""
        import keras_tuner

        from hpo.models.hypermodel import task_arguments

        target = self._hypermodel
        if inspect.isclass(target):
            arguments = task_arguments(target, self._given() if given is None else given)
            try:
                target = target(**arguments)
            except (TypeError, ValueError) as exc:
                name = target.__name__
                if arguments:
                    made = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
                    raise ConfigError(
                        f"{why} as the trials made it, and {name}({made}) failed ({exc}); "
                        f"give hpo.Tuner an instance made with the arguments it needs."
                    ) from exc
                raise ConfigError(
                    f"{why}, before the data are known, and {name}() failed ({exc}); "
                    f"give it its input_shape and classes: "
                    f"hpo.Tuner({name}(input_shape=..., classes=...))."
                ) from exc
        if isinstance(target, keras_tuner.HyperModel):
            return target
        hypermodel = keras_tuner.HyperModel(name=getattr(target, "__name__", None))
        hypermodel.build = target  # as KerasTuner wraps a build function
        return hypermodel

    @property
    def oracle(self) -> StudyOracle:
        """The study's trials as KerasTuner's oracle gives them, to read:
        `tuner.oracle.get_best_trials(1)[0].score`, `.trials`, `.get_trial(id)`, `.objective`
        (`hpo.oracle`; Optuna chooses the values)."""
        from hpo.oracle import StudyOracle

        return StudyOracle(self)

    @_says_how_to_resume
    def search(
        self,
        x: Any = None,
        y: Any = None,
        *,
        epochs: int | None = None,
        validation_data: Any = None,
        validation_split: float | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        verbose: int = 1,
        **fit_kwargs: Any,
    ) -> SearchSummary:
        """Runs the search, or continues the study's: trials until it holds `max_trials` or
        its budget is spent.

        The data are written once per study into its folder (`cache/arrays-<fingerprint>/`)
        and memory-mapped by every trial (the same examples reordered, as an unseeded shuffle
        gives them, are that first copy); a `tf.data.Dataset`, `keras.utils.PyDataset` or
        torch `DataLoader` is read once, as one epoch of `fit` would read it, into arrays first.

        Args:
            x: Inputs (a numpy array), or a dataset of `(inputs, labels)` batches (or
                `(inputs, labels, weights)`); its batch size is the trials' unless
                `batch_size=` or the hypermodel's own `fit` sets another.
            y: Labels, as class indices or one-hot rows; or targets: regression values,
                floats `[n]` or `[n, outputs]` that are not all whole numbers or go below 0,
                whole numbers above 1 for a model of one output, rows of counts, or
                multi-label rows of 0s and 1s that are not all one-hot (None with a dataset).
            epochs: The most epochs per trial (default 20); each trial stops early once its
                objective stops improving.
            validation_data: `(x_val, y_val)`, or a dataset of `(inputs, labels)` batches;
                trials are scored, pruned and ensembled on it.
            validation_split: Instead of `validation_data`: this last fraction of `x`, as
                Keras's `fit` takes it.
            callbacks: Keras callbacks for every trial's `fit` (sent to each trial process,
                so they must pickle), beside hpo's own (early stopping, checkpoint, pruning).
            verbose: 0 prints nothing (warnings aside); 1 a progress bar and a line for each
                trial; 2 also Optuna's own log lines, which repeat hpo's line for each trial.
            **fit_kwargs: `batch_size`, `class_weight` and `shuffle` (default True: the
                training examples in a new order each epoch; False keeps their order), passed
                to `fit` as KerasTuner does (through the hypermodel's own `fit`, if it has
                one), and `sample_weight`, one weight per example of `x` in the training loss
                (cut with `validation_split` as `x` is; validation accuracy is not weighted).
                `steps_per_epoch`, `validation_steps` and `validation_freq`, which KerasTuner's
                guides pass, are accepted with a warning: hpo trains and scores whole epochs.

        Returns:
            Counts and the best trial after the run.

        Raises:
            HpoError: Bad data or arguments, or a hypermodel hpo cannot train (found before
                any trial runs), naming the fix.
            keras_tuner.errors.FatalError: Your code raised it (or a subclass of it) in a
                trial, which stops the search, as in KerasTuner; raised again here.
        """
        import numpy as np

        from hpo.data.in_memory import split_arrays
        from hpo.errors import OneValueOutput, ReturnsObjective, WiderOutput

        check_not_starting_child("hpo.Tuner.search")
        sample_weight = fit_kwargs.pop("sample_weight", None)
        for name in sorted(set(fit_kwargs) & set(_FIT_DECIDED)):
            warnings.warn(
                f"hpo.Tuner.search does not pass {name}= to fit: {_FIT_DECIDED[name]}.",
                stacklevel=2,
            )
            del fit_kwargs[name]
        unknown = sorted(set(fit_kwargs) - set(_FIT_ARGUMENTS))
        if unknown:
            passed = f"{unknown[0]}={repr(fit_kwargs[unknown[0]])[:40]}"
            raise ConfigError(
                f"search() passes {', '.join(_FIT_ARGUMENTS)}, sample_weight, epochs and "
                f"callbacks to fit; got {passed}. hpo batches and validates itself: "
                f"leave it out."
            )
        if sample_weight is not None and fit_kwargs.get("class_weight") is not None:
            raise ConfigError(
                "give sample_weight or class_weight, not both (Keras takes one): multiply "
                "each example's weight by its class's weight instead."
            )
        if epochs is not None and epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {epochs}.")
        if self._epochs_cap is not None and epochs is not None:
            epochs = min(epochs, self._epochs_cap)
        arrays = split_arrays(x, y, validation_data, validation_split, sample_weight)
        _check_text_backend(arrays.x_train, self.config.training.backend)
        searched = self._searched_meta()
        if arrays.numbered and "targets" in searched:
            # The study's earlier search read these whole numbers as targets (below).
            arrays = split_arrays(
                x, y, validation_data, validation_split, sample_weight, targets=True
            )
        # An earlier search's model had room for more classes than the labels hold (below).
        classes = int(searched.get("classes", 0))
        given = self.config
        # What the check before the first trial finds (`hpo.search.workers`) may change how the
        # study reads the labels or ranks its trials, as KerasTuner would have: each such finding
        # makes the study anew, at most once each.
        found: set[type[Exception]] = set()
        while True:
            try:
                summary = self._run(arrays, epochs, callbacks, verbose, fit_kwargs, classes)
                break
            except (WiderOutput, OneValueOutput, ReturnsObjective) as exc:
                if type(exc) in found or (isinstance(exc, OneValueOutput) and not arrays.numbered):
                    raise
                found.add(type(exc))
                finding = exc
            self.config = given
            if isinstance(finding, WiderOutput):
                # A softmax of 10 units, and labels 0 to 5: classes the data lacks, which Keras
                # and KerasTuner train as they are. The study is made anew for that many classes.
                largest = int(max(np.max(arrays.y_train), np.max(arrays.y_val)))
                self._forget_unstarted_study(
                    f"the model's output has room for {finding.units} classes and the labels' "
                    f"largest id is {largest}"
                )
                if verbose:
                    print(
                        f"The model gives {finding.units} class scores an example, and the "
                        f"labels' largest class id is {largest}: the study has {finding.units} "
                        f"classes, {largest + 1} to {finding.units - 1} without examples."
                    )
                classes = finding.units
            elif isinstance(finding, OneValueOutput):
                # Whole numbers, and a model of one output: regression targets (ages, counts,
                # prices in whole units), which KerasTuner would fit as they are. Read them
                # again as targets, in a study made anew (the check runs before any trial).
                self._forget_unstarted_study(
                    "the model gives one value an example, so y's whole numbers are regression "
                    "targets"
                )
                arrays = split_arrays(
                    x, y, validation_data, validation_split, sample_weight, targets=True
                )
                if verbose:
                    print(
                        "The model gives one value an example, and y holds whole numbers: they "
                        "are read as regression targets."
                    )
                classes = 0
            else:
                # KerasTuner's DefaultObjective: given no objective, it minimizes the value
                # the hypermodel's fit returns (a score, or a training loop's own). The study,
                # made for hpo's default objective before the check found that, is made anew
                # to minimize it.
                self._forget_unstarted_study(
                    "the hypermodel's fit returns the value to minimize",
                    otherwise="ranked by another objective",
                )
                self._rank_by_returned_value()
                if verbose:
                    print(
                        f"No objective was given, and the hypermodel's fit returns a score or "
                        f"trains in a loop of its own: the search minimizes what the fit "
                        f"returns, as KerasTuner does (objective {DEFAULT_OBJECTIVE!r})."
                    )
            given = self.config
        if verbose:
            best = (
                f"best trial {summary.best_number}: {summary.objective} {summary.best_value:.4f}"
                if summary.best_number is not None
                else "no complete trial yet"
            )
            print(
                f"Study {summary.study_name!r}: {summary.finished} finished, {summary.failed} "
                f"failed, {format_duration(summary.spent_seconds)} spent; {best}."
            )
        if summary.stopped_by_failures:
            raise HpoError(f"search stopped: {summary.stopped_by_failures}")
        return summary

    def _run(
        self,
        arrays: SplitArrays,
        epochs: int | None,
        callbacks: Sequence[keras.callbacks.Callback] | None,
        verbose: int,
        fit_kwargs: dict[str, Any],
        classes: int = 0,
    ) -> SearchSummary:
        """Writes the arrays into the study's folder (of `classes` classes at least, for
        class labels) and runs the search on them."""
        from hpo.data.in_memory import is_targets
        from hpo.disk import make_study_folder
        from hpo.models.portable import PortableHypermodel
        from hpo.search.workers import run_search
        from hpo.tasks.arrays import save_study_arrays

        recorded, ran = self._recorded_objective()
        if not self._objective_given and recorded == DEFAULT_OBJECTIVE:
            self._rank_by_returned_value()  # as an earlier search of the project found
        training = self.config.training
        targets = is_targets(arrays.y_train)
        if targets and fit_kwargs.get("class_weight") is not None:
            raise ConfigError(
                "class_weight weighs classes, and the labels are targets (regression values, "
                "or multi-label rows): give each example its weight with sample_weight= "
                "instead."
            )
        # Targets rank by the validation loss unless the user chose: an accuracy the model
        # logs (of multi-label rows, or of soft labels for a softmax, say) is checked before
        # the first trial (`check_objective`).
        if targets and training.objective == OBJECTIVE and not self._objective_given:
            training = dataclasses.replace(training, objective="val_loss", direction=None)
        # The session's mixed precision (keras.mixed_precision.set_global_policy), as KerasTuner
        # builds every model under it: the trials' precision, which their processes set.
        policy = _session_policy()
        if policy is not None and training.precision is Precision.AUTO:
            training = dataclasses.replace(training, precision=policy)
        # Before the arrays go into it: a study folder that cannot be written (a Tuner's default
        # directory in a read-only working folder) is the error that says so, not the
        # PermissionError of the first file written there.
        make_study_folder(self.config.study_dir)
        folder = save_study_arrays(
            self.config.cache_dir,
            arrays.x_train,
            arrays.y_train,
            arrays.x_val,
            arrays.y_val,
            arrays.w_train,
            classes=classes,
        )
        fit = {k: v for k, v in fit_kwargs.items() if v is not None}
        if callbacks:
            fit["callbacks"] = list(callbacks)
        if epochs is not None:
            fit["epochs"] = epochs
        if epochs is not None:
            training = dataclasses.replace(training, max_epochs=epochs)
        # A dataset's batches are the batch size the user chose, as `fit` would train on them;
        # `batch_size=` and the hypermodel's own `fit` come first (else hpo searches it).
        defaults = {"batch_size": arrays.batch_size} if arrays.batch_size else {}
        # Given no objective, a hypermodel's fit that returns a score ranks by it, minimized
        # (KerasTuner's DefaultObjective): the check before the first trial says so
        # (`ReturnsObjective`), and the search starts anew to minimize it. A study whose trials
        # ran ranked by another objective (an earlier hpo's) keeps it, as its check says.
        unsettled = (
            not self._objective_given and training.objective != DEFAULT_OBJECTIVE and not ran
        )
        overrides = {**self._overrides, "default_objective": True} if unsettled else self._overrides
        self.config = dataclasses.replace(
            self.config,
            hypermodel=PortableHypermodel(
                self._hypermodel, fit, self._declared, defaults, overrides
            ),
            data=DataConfig(path=str(folder.resolve())),
            training=training,
        )
        try:
            # verbose=0 prints nothing, as in KerasTuner (warnings and errors still show).
            silent = contextlib.redirect_stdout(io.StringIO()) if verbose == 0 else None
            with optuna_logs(shown=verbose >= 2), silent or contextlib.nullcontext():
                summary = run_search(
                    self.config,
                    data=str(folder.resolve()),
                    progress=verbose > 0,
                    quiet=verbose == 0,
                )
        except SearchStopped as exc:
            # KerasTuner raises the FatalError again from search(); scripts catch it.
            import keras_tuner

            raise getattr(keras_tuner.errors, exc.kind)(str(exc)) from exc
        except OtherData as exc:
            # The copy just written is no trial's: a notebook trying again and again would fill
            # the disk with copies of its data.
            if folder.name == f"arrays-{exc.fingerprint}":
                _discard(folder)
            raise ConfigError(
                f"project {self.config.name!r} was searched on other data: the arrays given "
                f"now (fingerprint {exc.fingerprint}) are not those its trials trained on "
                f"({exc.recorded}). Search it with the data of its earlier searches, or start "
                f"anew with overwrite=True or another project_name."
            ) from None
        except ConfigError as exc:
            if "settings differ" not in str(exc):
                raise
            # The study's earlier trials trained otherwise: a Tuner's ways out are its own.
            raise ConfigError(
                f"{exc} With hpo.Tuner: run it as before, or start anew with overwrite=True or "
                f"another project_name."
            ) from None  # the same error, told the Tuner's ways out: one traceback, not two
        return summary

    def _existing_study(self) -> optuna.Study | None:
        """The project's study as the store holds it, or None before its first search."""
        import optuna

        from hpo.store import open_storage

        if not (self.project_dir / "study.db").is_file():
            return None
        storage = open_storage(self.config.storage_url, create=False)
        try:
            return optuna.load_study(study_name=self.config.name, storage=storage)
        except KeyError:
            return None

    def _searched_meta(self) -> dict[str, Any]:
        """How the study's search read its labels: `{"targets": n}` for regression targets,
        `{"classes": n}` for classes; empty before its first search."""
        from hpo.data import provenance
        from hpo.data.array_cache import META_NAME

        study = self._existing_study()
        source = provenance.recorded_source(study) if study is not None else None
        meta = Path(source) / META_NAME if source else None
        return (
            dict(json.loads(meta.read_text(encoding="utf-8")))
            if meta is not None and meta.is_file()
            else {}
        )

    def _recorded_objective(self) -> tuple[str | None, bool]:
        """The objective the project's study ranks its trials by, as its search recorded it
        (None before its first search), and whether any of its trials ran."""
        study = self._existing_study()
        if study is None:
            return None, False
        recorded = study.user_attrs.get("hpo_config")
        training = recorded.get("training") if isinstance(recorded, dict) else None
        objective = training.get("objective") if isinstance(training, dict) else None
        return (objective if isinstance(objective, str) else None), bool(_trials_run(study))

    def _rank_by_returned_value(self) -> None:
        """Ranks the trials by the value the hypermodel's fit returns, minimized: KerasTuner's
        objective when it is given none."""
        training = dataclasses.replace(
            self.config.training, objective=DEFAULT_OBJECTIVE, direction=Direction.MIN
        )
        self.config = dataclasses.replace(self.config, training=training)

    def _forget_unstarted_study(
        self, why: str, otherwise: str = "that read the labels otherwise"
    ) -> None:
        """Deletes the project's study (and its copy of the data) before a search starts it
        anew on other labels (or to rank by another objective); one with a trial that ran is
        kept, and the search refused.

        Args:
            why: How the labels are to be read now (or the trials ranked), for the message.
            otherwise: What the trials that ran did otherwise, for the message.

        Raises:
            ConfigError: A trial of the study ran on the labels as first read.
        """
        import optuna

        from hpo.data.provenance import SOURCE_ATTR
        from hpo.store import open_storage

        study = self._existing_study()
        if study is None:
            return
        ran = _trials_run(study)
        if ran:
            raise ConfigError(
                f"{why}, but study {self.config.name!r} holds {len(ran)} trial(s) {otherwise}: "
                f"start anew with overwrite=True or another project_name."
            )
        source = study.user_attrs.get(SOURCE_ATTR)
        storage = open_storage(self.config.storage_url, create=False)
        optuna.delete_study(study_name=self.config.name, storage=storage)
        if source and Path(source).parent == self.config.cache_dir:
            _discard(Path(source))

    def _given(self) -> dict[str, Any]:
        """What the trials give the hypermodel beside their values (`hpo.oracle.given_values`):
        the data's input shape and classes; empty before the project's first search."""
        from hpo.oracle import given_values

        try:
            study = self.study()
        except StoreError:
            return {}
        return given_values(study)

    def study(self) -> Study:
        """The study (`hpo.load_study`), for Optuna's API and `hpo.Study`'s.

        Raises:
            StoreError: No search has run in this project yet.
        """
        from hpo.api import load_study

        if not (self.project_dir / "study.db").is_file():
            raise StoreError(
                f"project {self.config.name!r} has no study in {self.project_dir} yet; run "
                f"tuner.search(x, y, validation_data=(x_val, y_val)) first."
            )
        return load_study(self.config)

    def best_trials(self, num_trials: int = 1) -> list[FrozenTrial]:
        """The best COMPLETE trials, best first by the objective, as KerasTuner ranks its
        completed trials: those whose checkpoint `hpo gc` removed keep their rank (their
        hyperparameters and scores are still the study's; only their models are gone).

        Raises:
            StoreError: The study has no COMPLETE trial.
        """
        return _scored_trials(self.study(), num_trials)

    @stoppable
    def get_best_models(self, num_models: int = 1) -> list[keras.Model]:
        """The best trials' models at their best epoch, best first, as KerasTuner gives them.

        The hypermodel builds each again from its trial's hyperparameters, compiled as it
        compiles it (its own loss and metrics, so that `loss, auc = model.evaluate(...)` reads
        as it does in KerasTuner, `accuracy` added where that is the objective and the model
        has none; or, left uncompiled, as the trial compiled it: the trial's optimizer and
        learning rate, the loss its output needs and an `accuracy` metric), and it takes the
        weights of the trial's best epoch: so `predict` gives what the model gives, and
        `model.evaluate(x_test, y_test)` takes labels in the form the model's loss takes, which
        may not be the form `search` took (it converts either): one-hot rows for
        `categorical_crossentropy`, class indices for `sparse_categorical_crossentropy`.

        A hypermodel that builds another model for the same hyperparameters (other weights)
        gets, with a warning naming why, the model as the study stores it: class probabilities
        (`[n, 1]` for two classes, else `[n, classes]`), compiled for class-index labels.
        One whose stored model no longer predicts what its trial recorded on validation (a
        layer class of the user's redefined since, say) is given too, with a warning.
        """
        from hpo.artifacts import holding

        study = self.study()
        inputs = _trial_inputs(study)
        with _on_recorded_backend(study), contextlib.ExitStack() as held:
            # Held together against `hpo gc` (a search's keep_checkpoints) while they load;
            # chosen again where a collection recorded one before the hold.
            def hold_best() -> tuple[list[FrozenTrial], dict[int, str]]:
                best = study.best_trials(num_models)
                numbers = [t.number for t in best]
                return best, held.enter_context(holding(study.optuna_study, numbers, "hpo.Tuner"))

            best, removed = hold_best()
            while any(t.number in removed for t in best):
                best, removed = hold_best()
            _warn_if_removed(_scored_trials(study, num_models), best, removed)
            return [_trained(study, trial, *inputs) for trial in best]

    @stoppable
    def load_model(self, trial: Any) -> keras.Model:
        """One trial's model at its best epoch, as `get_best_models` gives them; as KerasTuner's
        `tuner.load_model(trial)` takes it: a trial of `tuner.oracle`, an Optuna trial, or a
        trial number.

        Raises:
            ConfigError: The study has no such trial.
            StoreError: The trial stored no model (it did not complete, or `hpo gc` removed
                its checkpoint).
        """
        study = self.study()
        number = getattr(trial, "number", None)
        if number is None:
            number = getattr(trial, "trial_id", trial)
        trials = {t.number: t for t in study.optuna_study.get_trials(deepcopy=False)}
        try:
            frozen = trials[int(number)]
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"the study has no trial {number!r}; give a trial of tuner.oracle, an Optuna "
                f"trial or a trial number (0 to {len(trials) - 1})."
            ) from None
        with _on_recorded_backend(study):
            return _trained(study, frozen, *_trial_inputs(study))

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[keras_tuner.HyperParameters]:
        """The best trials' hyperparameters, best first, by the names `build_model` gave them:
        `build_model(tuner.get_best_hyperparameters()[0])` builds the best trial's model.

        `values` holds the trial's hyperparameters; `hp.get(name)` also reads what the trial
        gave the hypermodel from the data (`hp.get("input_shape")`, `hp.get("classes")`), as
        in the trial."""
        from hpo.oracle import given_values, trial_hyperparameters

        study = self.study()
        family = self.config.hypermodel.name
        given = given_values(study)
        return [
            trial_hyperparameters(trial, family, given)
            for trial in _scored_trials(study, num_trials)
        ]

    def search_space_summary(self, extended: bool = False) -> None:
        """Prints the hyperparameters `build_model` declares, as KerasTuner prints them: it
        builds the model here, each parameter at its default, then again with the parent
        values of each conditional scope no build has entered yet, as KerasTuner does, so the
        parameters of every branch are listed (`extended` is accepted, as KerasTuner's, and
        changes nothing). hpo also searches the training settings a model
        leaves open (`batch_size`; the optimizer and learning rate of an uncompiled model).
        Once the project has searched, the build reads what the data give it, as the trials
        read it (`hp.get("input_shape")`, a `HyperModel` class's `input_shape` and `classes`).

        Raises:
            ConfigError: A `HyperModel` class that cannot be made; or, before the project's
                first search, a build that reads what only the data give.
        """
        given = self._given()
        declared = self._declared["declared"]
        hypermodel = self._made("search_space_summary builds the hypermodel now", given)
        try:
            space = _whole_space(hypermodel, given, declared)
        except Exception as exc:  # the user's code
            unknown = None if given else self._wants_data(exc)
            if unknown is None:
                raise
            raise unknown from exc
        if declared is not None and not self._declared["tune_new_entries"]:
            # The others keep their defaults: not searched, and not shown (as in KerasTuner).
            space = [p for p in space if declared._exists(p.name, p.conditions)]
        print("Search space summary")
        print(f"Default search space size: {len(space)}")
        for parameter in space:
            config = parameter.get_config()
            print(f"{config.pop('name')} ({type(parameter).__name__})")
            print(config)

    def _wants_data(self, exc: Exception) -> ConfigError | None:
        """Where a build before the project's first search failed for want of what the data
        give (`hp.get("input_shape")`, a `HyperModel` class made without its input shape and
        classes), the error that says so; else None."""
        from hpo.models.hypermodel import task_parameters
        from hpo.tasks.arrays import CONTEXT_NAMES

        target = self._hypermodel
        missing = [n for n in CONTEXT_NAMES if exc.args == (f"{n} does not exist.",)]
        if isinstance(exc, KeyError) and missing:
            reads = f"build_model reads hp.get({missing[0]!r})"
            other = (
                f"or give it a default until then: hp.get({missing[0]!r}) if {missing[0]!r} in "
                f"hp else DEFAULT"
            )
        elif inspect.isclass(target) and (taken := task_parameters(target)):
            reads = f"{target.__name__} takes {' and '.join(taken)}"
            arguments = ", ".join(f"{name}=..." for name in taken)
            other = f"or give hpo.Tuner an instance made with them: {target.__name__}({arguments})"
        else:
            return None
        return ConfigError(
            f"search_space_summary builds the hypermodel, and {reads}, which hpo.Tuner gives "
            f"from the data of search(): project {self.config.name!r} has none yet, and the "
            f"build failed ({type(exc).__name__}: {exc}). Call tuner.search_space_summary() "
            f"after tuner.search(x, y, validation_data=...), {other}."
        )

    def results_summary(self, num_trials: int = 10) -> None:
        """Prints the best trials: their number, hyperparameters and objective value; where no
        trial completed, why each of the last ones stopped (pruned, failed)."""
        from hpo.oracle import trial_hyperparameters

        try:
            trials = self.best_trials(num_trials)
        except StoreError:  # none completed: all pruned or failed, or no search yet
            trials = []
        try:
            # As the study recorded it: a new Tuner of a regression study learns so in `search`.
            objective = self.oracle.objective
        except StoreError:
            objective = None
        print(f"Results summary\nResults in {self.project_dir}")
        print(f"Showing {len(trials)} best trials")
        if objective is None:
            # No study yet: KerasTuner prints an empty summary here, not an error.
            print(
                "No trial has run yet: run tuner.search(x, y, validation_data=(x_val, y_val)) "
                "first."
            )
            return
        print(f'Objective(name="{objective.name}", direction="{objective.direction}")')
        if not trials:
            self._print_stopped(num_trials)
        family = self.config.hypermodel.name
        for trial in trials:
            hp = trial_hyperparameters(trial, family)
            print(f"\nTrial {trial.number:02d} summary\nHyperparameters:")
            for name, value in hp.values.items():
                print(f"{name}: {value}")
            print(f"Score: {trial.value}")

    def _print_stopped(self, num_trials: int) -> None:
        """The last `num_trials` trials that stopped (pruned or failed), each with its reason."""
        import optuna

        from hpo.contract import Attr

        try:
            study = self.study().optuna_study
        except StoreError:
            return
        states = (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        stopped = study.get_trials(deepcopy=False, states=states)[-num_trials:]
        if stopped:
            print(f"\nNo trial completed; the last {len(stopped)} stopped:")
        for trial in stopped:
            reason = trial.user_attrs.get(Attr.PRUNE_REASON) or trial.user_attrs.get(
                Attr.FAIL_REASON, ""
            )
            print(f"Trial {trial.number:02d} {trial.state.name}: {reason}".rstrip(": "))

    @stoppable
    def ensemble(
        self,
        top: int = 5,
        *,
        pool: int | None = None,
        method: str = "caruana",
        calibrate: bool = True,
    ) -> Ensemble:
        """The best trials' weighted ensemble, chosen and weighted on validation data only.

        Args:
            top: The most members (default 5).
            pool: Choose members among this many of the best trials (default 100).
            method: How the plain top ensemble is weighted: "caruana" (default), "score" or
                "uniform" (`hpo ensemble --method`).
            calibrate: Fit a temperature on validation (default True).

        Returns:
            An `Ensemble`, with `predict(x)`, `evaluate(x_test, y_test)` and `export(path)`.
        """
        from hpo.ensemble.in_memory import fit_in_memory

        study = self.study()
        best = study.best_trials(1)
        if best:
            # The classes build_model defines inside itself exist once it has run: the stored
            # members hold them (a failed build leaves loading to say what is missing).
            _rebuilt(best[0], *_trial_inputs(study))
        with _on_recorded_backend(study):
            return fit_in_memory(study, top=top, pool=pool, method=method, calibrate=calibrate)


@contextlib.contextmanager
def _on_recorded_backend(study: Study) -> Iterator[None]:
    """Where a trial's model does not load (a checkpoint error, or no usable checkpoint) and
    Keras runs here on another backend than the trials trained on, says so: a model that calls
    its backend's own functions (a torch layer, say) loads there only, and the checkpoints are
    as they were."""
    from hpo.backend import keras_backend, recorded_backend
    from hpo.contract import CheckpointError

    try:
        yield
    except (CheckpointError, StoreError) as exc:
        trained = recorded_backend(study.optuna_study.user_attrs.get("hpo_config"), None).value
        here = keras_backend()
        if here is None or here == trained:
            raise
        raise type(exc)(
            f"{exc} The study's trials trained on {trained}, and Keras runs on {here} in this "
            f"process: a model that calls {trained} itself loads only there. Open the project "
            f"in a process started with KERAS_BACKEND={trained} (in a notebook: restart the "
            f"kernel)."
        ) from exc


def _whole_space(
    hypermodel: keras_tuner.HyperModel,
    given: Mapping[str, Any],
    declared: keras_tuner.HyperParameters | None,
) -> list[Any]:
    """Every hyperparameter `hypermodel` declares, as KerasTuner's tuner finds them before its
    first trial (`BaseTuner._activate_all_conditions`): built at the defaults, then again with
    the parent values of each conditional scope no build has entered yet, until every one has
    been; one entry for each name and conditions, in the order first declared.
    """
    from hpo.models.hypermodel import GivenHyperParameters

    space: list[Any] = []
    # The conditions of scopes: those some build has entered, those none has yet, and those
    # a build was given the parent values of.
    entered: list[Any] = []
    closed: list[Any] = []
    tried: list[Any] = []
    parents: dict[str, Any] = {}
    while True:
        hp = GivenHyperParameters(given)
        # Parameters given as hyperparameters= come first, in place of the model's own.
        if declared is not None:
            hp.merge(declared)
        hp.values.update(parents)
        hypermodel.build(hp)
        space += [
            p
            for p in hp.space
            if not any(p.name == q.name and p.conditions == q.conditions for q in space)
        ]
        entered += [c for c in hp.active_scopes if c not in entered]
        closed = [c for c in closed if c not in entered]
        closed += [c for c in hp.inactive_scopes if c not in entered and c not in closed]
        # A scope its parents' values still leave closed (a build that reads other values) is
        # tried once: KerasTuner's loop would never end.
        left = [c for c in closed if c not in tried]
        if not left:
            return space
        tried.append(left[0])
        parents = {condition.name: condition.values[0] for condition in left[0]}


def _whole_number(name: str, value: object, least: int) -> int:
    """`value` as an int (NumPy's integers too).

    Raises:
        ConfigError: Naming the argument, when `value` is no whole number of at least `least`.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}.")
    return int(value)


def _check_project_name(name: object) -> None:
    """Refuses a project name that cannot name a study and its folder, suggesting one that can."""
    from hpo.config import STUDY_NAME, STUDY_NAME_LENGTH

    if isinstance(name, str) and STUDY_NAME.fullmatch(name):
        return
    suggested = (
        re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")[:STUDY_NAME_LENGTH]
        or "untitled_project"
    )
    if isinstance(name, str) and len(name) > STUDY_NAME_LENGTH:
        raise ConfigError(
            f"project_name must be at most {STUDY_NAME_LENGTH} characters (it names the study "
            f"and its folder), got {len(name)}: {suggested!r}, say."
        )
    raise ConfigError(
        f"project_name must be ASCII letters, digits, '-', '_' or '.', starting with a letter or "
        f"digit (it names the study and its folder), got {name!r}: {suggested!r}, say."
    )


def _discard(folder: Path) -> None:
    """Deletes a copy of the data as `hpo gc` deletes a cache (renamed aside first: stopped half
    way, it leaves no folder that looks whole); one already gone is no error."""
    from hpo.data import array_cache

    with contextlib.suppress(OSError):
        array_cache.discard(folder)


def _session_policy() -> Precision | None:
    """This session's global Keras dtype policy where it is a mixed one, else None (float32,
    or Keras not imported yet); another one (`set_floatx("float64")`) is named in a warning:
    trials compute in float32, or the precision hpo chooses."""
    import sys

    keras = sys.modules.get("keras")
    if keras is None:
        return None
    name = keras.mixed_precision.global_policy().name
    mixed = {Precision.MIXED_FLOAT16.value, Precision.MIXED_BFLOAT16.value}
    if name in mixed:
        return Precision(name)
    if name != "float32":
        warnings.warn(
            f"this session's Keras dtype policy is {name!r}, which hpo.Tuner does not carry to "
            f"its trial processes: they compute in float32 (or mixed precision, where set). "
            f"Give the layers that need {name} dtype={name!r} in build_model instead.",
            stacklevel=4,  # the user's search() call
        )
    return None


def _objective(objective: Any) -> tuple[str, Direction]:
    """The metric and direction of KerasTuner's spellings of an objective: a name (the direction
    of the Keras metric or loss logged under it, `hpo.directions`), a `keras_tuner.Objective`,
    or a list of one.

    Raises:
        ConfigError: Several objectives, a name that no Keras metric or loss is logged under,
            or something else.
    """
    if objective is None:
        objective = OBJECTIVE
    if isinstance(objective, (list, tuple)):
        if len(objective) != 1:
            names = [getattr(o, "name", o) for o in objective]  # keras_tuner.Objective's
            raise ConfigError(
                f"hpo.Tuner ranks trials by one objective, got {len(objective)}: "
                f"{names!r}. Give the one that matters most; every metric the model "
                f"logs is still recorded at every epoch (each trial's 'history' attribute)."
            )
        objective = objective[0]
    # Keras 1's name for accuracy, which hpo's accuracy metric (named "accuracy") replaces.
    if isinstance(objective, str) and objective in ("acc", "val_acc"):
        objective = objective.replace("acc", "accuracy")
    if isinstance(objective, str):
        direction = known_direction(objective)
        if direction is None:
            # KerasTuner refuses such a name too: it has no direction to guess.
            raise ConfigError(
                f"objective {objective!r} is no metric or loss Keras builds in, so hpo cannot "
                f"tell whether it is better higher or lower. Give its direction: "
                f"objective=keras_tuner.Objective({objective!r}, direction='max') (or 'min')."
            )
        return objective, direction
    # A keras_tuner.Objective, read without importing KerasTuner (and Keras with it).
    name, direction = getattr(objective, "name", None), getattr(objective, "direction", None)
    if not isinstance(name, str) or direction not in ("max", "min"):
        raise ConfigError(
            f"objective must be a metric's name as Keras logs it ('val_auc') or a "
            f"keras_tuner.Objective(name, direction='max' or 'min'), got {objective!r}."
        )
    return name, Direction(direction)


def _trials_run(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that ran (any but those waiting to start)."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]


def _loaded_backend() -> Any:
    """The backend Keras runs on in this process, if it is loaded: the trials' backend."""
    from hpo.backend import Backend, keras_backend

    loaded = keras_backend()
    return None if loaded is None else Backend(loaded)


def _trial_inputs(study: Study) -> tuple[Task, TrialData, Mapping[str, Any]]:
    """The study's task, its trials' data and build context, as a trial reads them."""
    from hpo.tasks import study_task

    task = study_task(study.config)
    folder = task.locate(study.config, study.optuna_study.user_attrs.get("data_source"))
    context = task.build_context(folder)
    return task, task.trial_data(folder, context), context


def _trained(
    study: Study, trial: FrozenTrial, task: Task, data: TrialData, context: Mapping[str, Any]
) -> keras.Model:
    """A trial's model with the weights of its best epoch: built again by the hypermodel and
    compiled as it compiled it (or, left uncompiled, as the trial did), or, where it does not
    build the same model again, the stored model (with a warning naming why)."""
    from hpo.training.interface import compile_as_built

    # Built first: a class that build_model defines inside itself exists only then, and the
    # stored model holds it.
    model, why = _rebuilt(
        trial, task, data, context, seed=study.config.sampler.trial_seed(trial.number)
    )
    stored = study.load_model(trial.number)
    _warn_if_changed(study, trial, task, data, stored)
    if model is not None:
        model, why = _with_weights(model, stored, data.x_val[:_PROBE_ROWS])
    if model is not None:
        compile_as_built(model, study.config.training.objective)
        return model
    gives = (
        "the predicted targets, compiled for the mean squared error"
        if "targets" in context
        else "class probabilities and takes class-index labels"
    )
    warnings.warn(
        f"trial {trial.number}: the hypermodel does not build its model again ({why}); the "
        f"tuner gives the model as the study stores it, which gives {gives}.",
        stacklevel=3,
    )
    if "targets" in context:
        stored.compile(loss="mean_squared_error", metrics=["mean_absolute_error"])
    else:
        binary = context["classes"] == 2
        loss = "binary_crossentropy" if binary else "sparse_categorical_crossentropy"
        stored.compile(loss=loss, metrics=["accuracy"])
    return stored


def _scored_trials(study: Study, n: int) -> list[FrozenTrial]:
    """The `n` best COMPLETE trials by score, those `hpo gc` removed the checkpoint of too
    (`Tuner.best_trials`)."""
    from hpo.ensemble.selection import ranked_trials

    return ranked_trials(study.optuna_study, keep_removed=True)[:n]


def _warn_if_removed(
    ranked: list[FrozenTrial], given: list[FrozenTrial], removed: Mapping[int, str]
) -> None:
    """Names the trials among the best `len(ranked)` whose models `get_best_models` cannot
    give, `hpo gc` having removed their checkpoints, and which it gives instead."""
    gone = [t.number for t in ranked if t.number in removed]
    if gone:
        instead = ", ".join(f"{t.number:02d}" for t in given) or "none"
        warnings.warn(
            f"trial(s) {', '.join(f'{n:02d}' for n in gone)} rank among the best "
            f"{len(ranked)}, but hpo gc removed their checkpoints (the study's [artifacts] "
            f"keep, or hpo gc --keep), so their models are gone: these are the best with a "
            f"checkpoint, trial(s) {instead}. tuner.get_best_hyperparameters() still gives "
            f"their hyperparameters, to build and train them again.",
            stacklevel=3,
        )


def _warn_if_changed(
    study: Study, trial: FrozenTrial, task: Task, data: TrialData, stored: keras.Model
) -> None:
    """Warns where the trial's stored model, loaded with the code loaded now, no longer
    predicts what the trial recorded on validation (`hpo.ensemble.build.verify_member`): a
    class of the user's redefined since (a notebook cell run again, `%autoreload`)."""

    from hpo.contract import CheckpointError, fetch_predictions
    from hpo.ensemble.build import PROBE_ROWS, running_on, verify_member
    from hpo.ensemble.export import check_rows
    from hpo.ensemble.selection import Member
    from hpo.store import open_artifact_store

    store = open_artifact_store(study.config.artifact_location, create=False)
    with scratch_folder("check") as scratch:
        try:
            recorded = fetch_predictions(store, trial, Path(scratch))
        except CheckpointError as exc:  # the check only; the model itself loaded
            _log.debug("trial %d: not checked against its predictions: %s", trial.number, exc)
            return
    member = Member(trial, Path(), recorded, stored)
    try:
        verify_member(task, data.x_val, member, check_rows(data.y_val, PROBE_ROWS), running_on())
    except CheckpointError as exc:
        warnings.warn(f"{exc} The tuner gives the model as it loads now.", stacklevel=4)


def _rebuilt(
    trial: FrozenTrial,
    task: Task,
    data: TrialData,
    context: Mapping[str, Any],
    *,
    seed: int | None = None,
) -> tuple[keras.Model | None, str]:
    """The trial's model built and compiled again as the trial did (its weights new); or
    None, and why not.

    Args:
        seed: The trial's seed (`SamplerConfig.trial_seed`): the build is seeded as the
            trial's was, so that what it draws (a vocabulary adapted on a random sample of
            texts) is drawn again.
    """
    import keras
    import optuna

    from hpo.study import TRAINING_DEFAULTS
    from hpo.training.runner import prepare_model

    params = {**trial.params, **context}

    def ask(name: str) -> Any:
        # Every value the trial asked for is in its params: the hypermodel's, and the training
        # settings (optimizer, learning rate) of a model it left uncompiled, unless its fit
        # trained it in a loop of its own (then they are hpo's defaults, as in the trial).
        return params[name] if name in params else TRAINING_DEFAULTS[name]

    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        with warnings.catch_warnings():
            # A value of a range the hypermodel has changed since: it is the trial's, as built.
            warnings.filterwarnings("ignore", "The value .* is out of the range", UserWarning)
            model, _ = prepare_model(
                task, params, data, optuna.trial.FixedTrial(dict(trial.params)), ask
            )
    except Exception as exc:  # the user's code, given the trial's values
        return None, f"building it failed: {type(exc).__name__}: {_first_lines(str(exc))}"
    return model, ""


def _first_lines(text: str, most: int = 600) -> str:
    """`text` up to `most` characters, cut at a sentence's end where it is longer."""
    if len(text) <= most:
        return text
    cut = text[:most]
    return cut[: cut.rfind(". ") + 1] if ". " in cut else cut + "..."


# Validation rows a model built again must predict as the trial's stored model does.
_PROBE_ROWS = 16


def _with_weights(
    model: keras.Model, stored: keras.Model, probe: np.ndarray
) -> tuple[keras.Model | None, str]:
    """`model` (`_rebuilt`) with the stored model's weights; or None, and why not: other
    weights, or other outputs on the `probe` rows (state that is no weight, such as a
    vocabulary or statistics adapted in the build, differs from the trial's)."""
    import keras
    import numpy as np

    from hpo.data.inputs import tensors
    from hpo.training.interface import members_model

    trained = members_model(stored)
    # prepare_model called the model on validation rows: it is built.
    built = [tuple(w.shape) for w in model.weights]
    stored_shapes = [tuple(w.shape) for w in trained.weights]
    if built != stored_shapes:
        return None, (
            f"it builds {len(built)} weights of other shapes than the trial's {len(stored_shapes)}"
        )
    model.set_weights(trained.get_weights())
    try:
        given = tensors(probe)
        # Called, not `predict`: no predict function traced for a check of a few rows.
        outputs = [
            [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(m(given, training=False))]
            for m in (model, trained)
        ]
    except Exception as exc:  # the user's model, called on the trial's inputs
        return None, f"predicting with it failed: {type(exc).__name__}: {_first_lines(str(exc))}"
    if len(outputs[0]) != len(outputs[1]) or not all(
        np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-3, atol=1e-4)
        for a, b in zip(*outputs, strict=False)
    ):
        return None, (
            "with the trial's weights it predicts otherwise than the trial's model: state that "
            "is not a weight (a vocabulary or statistics adapted in build_model, say) differs"
        )
    return model, ""
