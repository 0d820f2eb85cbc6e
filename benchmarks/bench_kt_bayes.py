"""One user hypermodel searched two ways: KerasTuner BayesianOptimization vs hpo, same budget.

The hypermodel is one a KerasTuner user wrote and a study file names in `[families]`
(`examples/keras_tuner/imdb-kerastuner.toml`: `bilstm` by default). Both legs search only that
family, on the same prepared data, validation split and length-bucketed batches, with the
study's early stopping and learning-rate schedule, each inside the same wall-clock budget and
each resuming where an earlier run stopped:

- kerastuner: `keras_tuner.BayesianOptimization` (objective val_accuracy, the study's seed,
  max_trials 1000) on the hypermodel as its user wrote it: KerasTuner searches what it declares,
  and `hp.get` also answers what hpo gives every model (vocabulary size, sequence length and
  batch size at the study's defaults, the number of classes). The hypermodel's own `fit` is
  called with hpo's datasets and callbacks; a `batch_size` it passes re-batches the training
  data, as hpo honours it. A model it leaves uncompiled gets the default optimizer and
  learning rate. KerasTuner has no time budget of its own: its oracle creates no trial once the
  budget is spent, and a callback ends a running trial before an epoch that would end past it,
  as hpo ends its trials. Its best model is then evaluated once on the test set. Project, budget
  intervals, trial log and test result live under `<study>-<family>/kt-bayes/`.
- hpo: `hpo.search.run_search` (TPE and the study's pruner) on the study restricted to the
  family (`[space] family = [<family>]`, study `<study>-<family>` beside the study file), which
  also searches hpo's shared parameters (vocabulary size, sequence length, and the optimizer,
  learning rate and batch size where the hypermodel leaves them); then its top-5 ensemble,
  evaluated once on the test set (`<study>-<family>/ensemble-top5/`).
- report (always runs last): one markdown table from what is stored: trials finished, best
  validation accuracy, the best single model's test accuracy and log-loss, hpo's ensemble's,
  and the time each leg spent (budget time, then the test evaluation or ensemble).

Both legs are budget-bound (at most 1000 trials each); the data is tokenized once before
either leg's clock starts, so neither budget pays for it. Budget time counts the seconds a leg's
runs were alive, so a pause between resumed runs does not count. The two legs run side by side,
each pinned to its own CPU core, so both see the same machine at the same time (`--sequential`
runs them one after the other, each on every core).

Usage (KerasTuner's BayesianOptimization needs `pip install 'keras-tuner[bayesian]'`):
    python benchmarks/bench_kt_bayes.py [--study examples/keras_tuner/imdb-kerastuner.toml]
        [--family bilstm] [--budget 1h] [--legs kerastuner hpo report] [--data PATH]
        [--sequential]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The KerasTuner leg reuses the headline benchmark's clock and trial log.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import keras_tuner
import optuna
from bench_headline import (
    BUDGET_FILE,
    TEST_FILE,
    TRIALS_FILE,
    FitRecord,
    TunerClock,
    _read_json,
    _write_json,
    describe_kt_trial,
    ensemble_is_current,
    load_hpo_study,
)
from keras_tuner.engine.trial import Trial, TrialStatus
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from side_by_side import cores_note, run_legs_pinned

from hpo import metrics
from hpo.backend import gpu_capability
from hpo.budget import format_duration, parse_duration, spent_seconds, union_seconds
from hpo.config import load_study_config
from hpo.ensemble import build_ensemble
from hpo.errors import ConfigError, HpoError
from hpo.models.hypermodel import HyperModelFamily
from hpo.precision import resolve_precision
from hpo.search import run_search
from hpo.study import default_params, search_space
from hpo.tasks import study_task
from hpo.training.callbacks import EpochClock
from hpo.training.runner import EVAL_BATCH, global_policy, loss_for, make_optimizer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hpo.config import StudyConfig
    from hpo.tasks import Task

LEGS = ("kerastuner", "hpo", "report")
TOP = 5
# Far more trials than any budget holds: the budget ends both searches.
MAX_TRIALS = 1000
TUNER_FOLDER = "kt-bayes"
ENSEMBLE_FOLDER = f"ensemble-top{TOP}"
ENSEMBLE_TIME_FILE = "ensemble-time.json"


def family_config(config: StudyConfig, family: str, budget: float | None) -> StudyConfig:
    """The study restricted to one hypermodel family, budget-bound, in its own folder.

    The folder stays beside the study file, where the family's module is imported from.

    Raises:
        ConfigError: The family is not one of the study file's `[families]`, or there is no budget.
    """
    if family not in config.families:
        raise ConfigError(
            f"--family must name one of the study file's [families], got {family!r}. "
            f"Use one of: {', '.join(sorted(config.families)) or 'none (add a [families] table)'}."
        )
    budget = budget or config.budget
    if budget is None:
        raise ConfigError(
            "both legs need a wall-clock budget and the study file sets no 'budget'. "
            "Pass one, for example --budget 1h."
        )
    name = f"{config.name}-{family}"
    return dataclasses.replace(
        config,
        name=name,
        study_dir=config.study_dir.parent / name,
        space={**config.space, "family": [family]},
        n_trials=MAX_TRIALS,
        budget=budget,
    )


def prepare_data(config: StudyConfig, data: str | None) -> Path:
    """Tokenizes the data once (a cache both legs read) and returns the prepared folder."""
    task = study_task(config)
    return task.prepare(config, data, search_space(task, config.space).shared)


# --- kerastuner leg --------------------------------------------------------------------------


class _GivenValues:
    """KerasTuner's `hp` as the hypermodel sees it: `get` also answers hpo's given values.

    Not declared on `hp`: KerasTuner counts even a Fixed parameter as a dimension, and would
    sample three more random trials per such parameter before its Gaussian process starts.
    """

    def __init__(self, hp: keras_tuner.HyperParameters, given: Mapping[str, Any]) -> None:
        self._hp, self._given = hp, given

    def get(self, name: str) -> Any:
        try:
            return self._hp.get(name)
        except KeyError:
            if name in self._given:
                return self._given[name]
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hp, name)


class _Rebatching:
    """The model as the hypermodel's `fit` sees it: a `batch_size` re-batches hpo's training data.

    Keras ignores `batch_size` for a dataset; hpo honours a hypermodel's, and so does this leg.
    """

    def __init__(
        self, model: keras.Model, train: Any, batches: Callable[[int], Any], batch_size: int
    ) -> None:
        self._model, self._train, self._batches = model, train, batches
        self.batch_size = batch_size

    def fit(self, x: Any = None, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        if batch_size is not None and x is self._train:
            x, self.batch_size = self._batches(batch_size), batch_size
        return self._model.fit(x, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class TaskHyperModel(keras_tuner.HyperModel):
    """The user's hypermodel on hpo's data, built and trained as hpo's runner does.

    Args:
        config: The family's study configuration.
        task: The study's task.
        family: The hypermodel family.
        data_folder: The prepared data (`Task.prepare`).
    """

    def __init__(
        self, config: StudyConfig, task: Task, family: HyperModelFamily, data_folder: Path
    ) -> None:
        super().__init__(name=family.name)
        self.config, self.task, self.user = config, task, family.hypermodel
        space = search_space(task, config.space)
        defaults = next(p for p in default_params(task, space) if p["family"] == family.name)
        # What hpo's hypermodel trials read with `hp.get` besides their own parameters.
        self.given = {**defaults, **task.build_context(data_folder)}
        self.data = task.trial_data(data_folder, self.given)
        self.last_fit = FitRecord()
        self.last_batch_size = 0

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The user's model, compiled as hpo's `build_model` compiles it."""
        build = getattr(self.user, "build", self.user)
        model = build(_GivenValues(hp, self.given))
        if getattr(model, "compiled", False) and model.optimizer is not None:
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
        else:
            model.compile(
                optimizer=make_optimizer(self.given), loss=loss_for(model), metrics=["accuracy"]
            )
        return model

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        *args: Any,
        seed: int = 0,
        deadline: float = math.inf,
        **kwargs: Any,
    ) -> Any:
        """Calls the user's `fit` (or `model.fit`) with hpo's batches, callbacks and epochs.

        Args:
            seed: Seed of the batch order.
            deadline: Unix time past which training stops at the end of an epoch.
            **kwargs: KerasTuner's `callbacks`.
        """
        data, training, task = self.data, self.config.training, self.task

        def batches(batch_size: int) -> Any:
            return task.dataset(data.x_train, data.y_train, batch_size, seed)

        train = batches(self.given["batch_size"])
        trainer = _Rebatching(model, train, batches, self.given["batch_size"])
        deadline_stop = EpochClock([(deadline, "the budget")])
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.EarlyStopping(
                monitor=task.monitor,
                mode="max",
                patience=training.patience,
                restore_best_weights=True,
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=training.lr_factor, patience=training.lr_patience
            ),
            deadline_stop,
            *kwargs.get("callbacks", []),
        ]
        user_fit = getattr(self.user, "fit", None)
        arguments = {
            "validation_data": task.dataset(data.x_val, data.y_val, EVAL_BATCH, None),
            "epochs": training.max_epochs,
            "callbacks": callbacks,
            "shuffle": False,  # the dataset shuffles, each epoch anew
            "verbose": 0,
        }
        started = time.perf_counter()
        try:
            if user_fit is None:
                return trainer.fit(train, **arguments)
            return user_fit(_GivenValues(hp, self.given), trainer, train, **arguments)
        finally:
            self.last_fit = FitRecord(
                time.perf_counter() - started,
                deadline_stop.count,
                deadline_stop.stop_reason is not None,
            )
            self.last_batch_size = trainer.batch_size


class BudgetBayesianOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimization that creates no trial once the wall-clock budget is spent.

    Args:
        clock: The leg's clock.
        **kwargs: `BayesianOptimizationOracle`'s arguments.
    """

    def __init__(self, clock: TunerClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """The next trial's values, or STOPPED once the budget is spent."""
        if self.clock.left() <= 0:
            return {"status": TrialStatus.STOPPED}
        return super().populate_space(trial_id)

    @keras_tuner.synchronized
    def create_trial(self, tuner_id: str) -> Trial:
        """Also stops the retries of trials an interrupted run left, which skip `populate_space`."""
        if self._retry_queue and self.clock.left() <= 0:
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        return super().create_trial(tuner_id)


class BudgetBayesian(keras_tuner.BayesianOptimization):
    """KerasTuner's BayesianOptimization tuner with the budgeted oracle; logs each trial.

    Args:
        oracle: The budgeted oracle.
        hypermodel: The user's hypermodel on hpo's data.
        project_dir: KerasTuner's project folder; an existing project is resumed.
        seed: Trial `i` seeds its weights and batch order with `seed + i`, as hpo's trials do.
    """

    def __init__(
        self,
        oracle: BudgetBayesianOracle,
        hypermodel: TaskHyperModel,
        project_dir: Path,
        seed: int,
    ) -> None:
        # BayesianOptimization's own __init__ only makes a plain oracle and hands it to Tuner.
        keras_tuner.Tuner.__init__(
            self,
            oracle=oracle,
            hypermodel=hypermodel,
            directory=str(project_dir.parent),
            project_name=project_dir.name,
            overwrite=False,
        )
        self.clock = oracle.clock
        self.seed = seed
        self.log_path = project_dir / TRIALS_FILE
        self.log: dict[str, dict[str, Any]] = _read_json(self.log_path) or {}
        self._started = 0.0

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        """The trial, seeded and given the budget's deadline."""
        seed = self.seed + int(trial.trial_id)
        keras.utils.set_random_seed(seed)
        kwargs.update(seed=seed, deadline=time.time() + self.clock.left())
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_begin(self, trial: Trial) -> None:
        """Starts the trial's wall-clock time."""
        super().on_trial_begin(trial)
        self._started = time.perf_counter()
        self.hypermodel.last_fit = FitRecord()

    def on_epoch_end(self, trial: Trial, model: keras.Model, epoch: int, logs: Any = None) -> None:
        """Keeps the budget file current, so an interrupted run loses at most an epoch."""
        self.clock.record()

    def on_trial_end(self, trial: Trial) -> None:
        """Ends the trial in the oracle, then logs and prints it."""
        super().on_trial_end(trial)
        ended = self.oracle.get_trial(trial.trial_id)
        fit = self.hypermodel.last_fit
        record = {
            "status": ended.status,
            "val_accuracy": None if ended.score is None else float(ended.score),
            "family": self.hypermodel.name,
            "epochs": [0, self.hypermodel.config.training.max_epochs],
            "epochs_run": fit.epochs,
            "params": ended.hyperparameters.values,
            "batch_size": self.hypermodel.last_batch_size,
            "stopped_at_budget": fit.stopped,
            "trial_seconds": round(time.perf_counter() - self._started, 2),
            "fit_seconds": round(fit.seconds, 2),
            "finished_at": round(time.time(), 3),
            "elapsed_seconds": round(self.clock.spent(), 2),
        }
        self.log[ended.trial_id] = record
        _write_json(self.log_path, self.log)
        print(describe_kt_trial(ended.trial_id, record, self.clock.budget), flush=True)


def run_kerastuner(config: StudyConfig, family: str, data: str | None, project_dir: Path) -> None:
    """Runs (or resumes) KerasTuner's BayesianOptimization within the budget, then tests its best.

    Raises:
        ConfigError: The family is not a KerasTuner hypermodel, or scipy or scikit-learn is
            missing.
        HpoError: KerasTuner completed no trial.
    """
    assert config.budget is not None  # family_config requires one
    task = study_task(config)
    hypermodel_family = task.families[family]
    if not isinstance(hypermodel_family, HyperModelFamily):
        raise ConfigError(
            f"family {family!r} is an hpo family module, not a KerasTuner hypermodel; "
            f"KerasTuner cannot search it. Pass a --family that names a HyperModel or build(hp)."
        )
    missing = [m for m in ("scipy", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"KerasTuner's BayesianOptimization needs scipy and scikit-learn; {missing} cannot "
            f"be imported. Run `pip install 'keras-tuner[bayesian]'`."
        )
    project_dir.mkdir(parents=True, exist_ok=True)
    clock = TunerClock(project_dir / BUDGET_FILE, config.budget)
    left = clock.left()
    if left > 0:
        clock.start()
        print(
            f"KerasTuner BayesianOptimization ({family}): {format_duration(config.budget - left)} "
            f"spent, {format_duration(left)} left of {format_duration(config.budget)}; "
            f"project {project_dir}",
            flush=True,
        )
    precision = resolve_precision(config.training.precision, family, gpu_capability())
    try:
        with global_policy(precision.value):
            folder = prepare_data(config, data)  # cached: prepared before the clock started
            hypermodel = TaskHyperModel(config, task, hypermodel_family, folder)
            oracle = BudgetBayesianOracle(
                clock,
                objective=keras_tuner.Objective(task.monitor, "max"),
                max_trials=MAX_TRIALS,
                seed=config.sampler.seed or 1,  # KerasTuner draws a random seed for 0
            )
            tuner = BudgetBayesian(oracle, hypermodel, project_dir, config.sampler.seed)
            if clock.running:
                with warnings.catch_warnings():
                    # The Gaussian process's length-scale notes, once per trial.
                    warnings.filterwarnings("ignore", module=r"sklearn\.gaussian_process")
                    tuner.search(verbose=0)
            else:
                print(f"KerasTuner has spent its budget of {format_duration(config.budget)}.")
    finally:
        clock.stop()
    with global_policy(precision.value):
        evaluate_kt_best(config, data, folder, tuner, project_dir / TEST_FILE)


def evaluate_kt_best(
    config: StudyConfig, data: str | None, folder: Path, tuner: BudgetBayesian, path: Path
) -> None:
    """Evaluates KerasTuner's best model on the test set once; stores the result in `path`."""
    best = [t for t in tuner.oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
    if not best:
        raise HpoError(
            f"KerasTuner completed no trial in {tuner.project_dir}. Give it a larger --budget."
        )
    trial = best[0]
    stored = _read_json(path)
    if stored and stored.get("trial_id") == trial.trial_id:
        print(f"KerasTuner's best trial {trial.trial_id} was already tested ({path}).")
        return
    started = time.perf_counter()
    task, given = tuner.hypermodel.task, tuner.hypermodel.given
    with warnings.catch_warnings():
        # KerasTuner's checkpoint holds the optimizer's state, which a test needs none of.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(trial)
    test = task.load_test(config, data, folder)
    predictions = metrics.as_probabilities(task.predict(model, task.member_inputs(test.x, given)))
    summary = metrics.summary(test.y, predictions)
    _write_json(
        path,
        {
            "trial_id": trial.trial_id,
            "val_accuracy": float(trial.score),
            "params": trial.hyperparameters.values,
            "test_examples": len(test.y),
            "test": summary,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(
        f"KerasTuner's best trial {trial.trial_id} (val_accuracy {trial.score:.4f}): test "
        f"accuracy {summary['accuracy']:.4f}, log-loss {summary['log_loss']:.4f}.",
        flush=True,
    )


# --- hpo leg ---------------------------------------------------------------------------------


def run_hpo(config: StudyConfig, data: str | None, ensemble_dir: Path) -> None:
    """Runs (or resumes) hpo's search within the budget, then its top-5 ensemble unless current.

    Raises:
        HpoError: The search failed or left no complete trial, or the ensemble failed.
    """
    summary = run_search(config, data=data, progress=False)
    if summary.stopped_by_failures:
        print(f"note: hpo's search stopped early: {summary.stopped_by_failures}")
    study = load_hpo_study(config)
    if study is None or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise HpoError(
            f"hpo completed no trial in study {config.name!r} ({config.study_dir}). "
            f"Give it a larger --budget."
        )
    if ensemble_is_current(study, ensemble_dir / "report.json"):
        print(f"The ensemble in {ensemble_dir} is newer than every trial; not rebuilt.")
        return
    started = time.perf_counter()
    result = build_ensemble(config, study, top=TOP, out_dir=ensemble_dir, data=data)
    _write_json(
        config.study_dir / ENSEMBLE_TIME_FILE,
        {"created": result.report["created"], "seconds": round(time.perf_counter() - started, 1)},
    )
    test = result.report["test"]
    print(
        f"hpo's top-{TOP} ensemble: test accuracy {test['ensemble']['accuracy']:.4f}, log-loss "
        f"{test['ensemble']['log_loss']:.4f}; best member {test['best_member']['accuracy']:.4f}, "
        f"{test['best_member']['log_loss']:.4f}.",
        flush=True,
    )


# --- report ----------------------------------------------------------------------------------

ROWS = [
    "parameters searched",
    "budget",
    "search time (budget time)",
    "trials finished (complete / pruned / failed)",
    "best validation accuracy",
    "best single model: test accuracy / log-loss",
    f"top-{TOP} ensemble: test accuracy / log-loss",
    "test evaluation / ensemble time",
]


def kt_column(project_dir: Path, budget: float) -> dict[str, str]:
    """KerasTuner's rows of the table; empty if it never ran."""
    records = list((_read_json(project_dir / TRIALS_FILE) or {}).values())
    if not records:
        return {}
    complete = [r for r in records if r["status"] == TrialStatus.COMPLETED]
    failed = [r for r in records if r["status"] in (TrialStatus.FAILED, TrialStatus.INVALID)]
    intervals = (_read_json(project_dir / BUDGET_FILE) or {}).get("intervals", [])
    rows = {
        "parameters searched": ", ".join(sorted({n for r in records for n in r.get("params", {})})),
        "budget": format_duration(budget),
        "search time (budget time)": format_duration(union_seconds(intervals)),
        "trials finished (complete / pruned / failed)": (
            f"{len(complete) + len(failed)} ({len(complete)} / - / {len(failed)})"
        ),
        f"top-{TOP} ensemble: test accuracy / log-loss": "- (none)",
    }
    best = max((r["val_accuracy"] for r in complete), default=None)
    if best is not None:
        rows["best validation accuracy"] = f"{best:.4f}"
    test = _read_json(project_dir / TEST_FILE)
    if test:
        rows["best single model: test accuracy / log-loss"] = (
            f"{_scores(test['test'])} (trial {test['trial_id']})"
        )
        rows["test evaluation / ensemble time"] = format_duration(test["seconds"])
    return rows


def hpo_column(study: optuna.Study, config: StudyConfig, ensemble_dir: Path) -> dict[str, str]:
    """hpo's rows of the table."""
    assert config.budget is not None
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] + counts[TrialState.FAIL]
    searched = {
        name
        for t in trials
        for name, dist in t.distributions.items()
        if name != "family"
        and not (isinstance(dist, CategoricalDistribution) and len(dist.choices) == 1)
    }
    rows = {
        "parameters searched": ", ".join(sorted(searched)),
        "budget": format_duration(config.budget),
        "search time (budget time)": format_duration(spent_seconds(study)),
        "trials finished (complete / pruned / failed)": (
            f"{finished} ({counts[TrialState.COMPLETE]} / {counts[TrialState.PRUNED]} / "
            f"{counts[TrialState.FAIL]})"
        ),
    }
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if values:
        rows["best validation accuracy"] = f"{max(values):.4f}"
    report = _read_json(ensemble_dir / "report.json")
    if report and report.get("study") == study.study_name:
        test, members = report["test"], report["members"]
        rows["best single model: test accuracy / log-loss"] = (
            f"{_scores(test['best_member'])} (trial {members[0]['trial']})"
        )
        rows[f"top-{TOP} ensemble: test accuracy / log-loss"] = (
            f"{_scores(test['ensemble'])} ({len(members)} members)"
        )
        timing = _read_json(config.study_dir / ENSEMBLE_TIME_FILE)
        if timing and timing.get("created") == report["created"]:
            rows["test evaluation / ensemble time"] = format_duration(timing["seconds"])
    return rows


def _scores(summary: Mapping[str, float]) -> str:
    return f"{summary['accuracy']:.4f} / {summary['log_loss']:.4f}"


def print_report(
    config: StudyConfig, family: str, project_dir: Path, ensemble_dir: Path, command: str
) -> None:
    """Prints the side-by-side markdown table, with the command that produced it."""
    assert config.budget is not None
    kt_rows = kt_column(project_dir, config.budget)
    study = load_hpo_study(config)
    hpo_rows = hpo_column(study, config, ensemble_dir) if study else {}
    test = _read_json(project_dir / TEST_FILE) or {}
    examples = f", {test['test_examples']:,} test examples" if test else ""
    print(
        f"\nKerasTuner BayesianOptimization vs hpo on family {family!r} of study "
        f"{config.name!r} ({config.study_dir}){examples}; {cores_note()}, "
        f"{'GPU' if gpu_capability() is not None else 'no GPU'}:\n"
    )
    print("```\n" + command + "\n```\n")
    pruner = config.pruner.kind.value
    print(f"| | KerasTuner BayesianOptimization | hpo (TPE, {pruner} pruner) |")
    print("| --- | --- | --- |")
    for row in ROWS:
        kt_value = kt_rows.get(row, "-") if kt_rows else "not run"
        hpo_value = hpo_rows.get(row, "-") if study else "not run"
        print(f"| {row} | {kt_value} | {hpo_value} |")


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen legs, then prints the report; returns the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--study", default="examples/keras_tuner/imdb-kerastuner.toml", help="study file"
    )
    parser.add_argument(
        "--family", default="bilstm", help="the study's [families] hypermodel to search"
    )
    parser.add_argument(
        "--legs", nargs="+", choices=LEGS, default=list(LEGS), help="legs to run (report always)"
    )
    parser.add_argument("--data", help="data set folder or archive (overrides $HPO_IMDB_PATH)")
    parser.add_argument("--budget", help="each leg's wall-clock budget (default: the study's)")
    parser.add_argument(
        "--sequential", action="store_true", help="one leg after the other, not side by side"
    )
    parser.add_argument("--arm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command = shlex.join(
        [
            "python",
            "benchmarks/bench_kt_bayes.py",
            "--study",
            args.study,
            "--family",
            args.family,
            *(["--budget", args.budget] if args.budget else []),
            *(["--data", args.data] if args.data else []),
        ]
    )
    try:
        budget = parse_duration(args.budget, "--budget") if args.budget else None
        config = family_config(load_study_config(args.study), args.family, budget)
        project_dir = config.study_dir / TUNER_FOLDER
        ensemble_dir = config.study_dir / ENSEMBLE_FOLDER
        searches = [leg for leg in args.legs if leg != "report"]
        if searches:
            prepare_data(config, args.data)
        if len(searches) > 1 and not args.sequential:
            run_legs_pinned(__file__, sys.argv[1:] if argv is None else argv, searches)
            searches = []
        if "kerastuner" in searches:
            run_kerastuner(config, args.family, args.data, project_dir)
        if "hpo" in searches:
            run_hpo(config, args.data, ensemble_dir)
        if args.arm:
            return 0  # one leg of a side-by-side run; the parent prints the report
        print_report(config, args.family, project_dir, ensemble_dir, command)
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
