"""The headline benchmark: hpo's search and ensemble against KerasTuner Hyperband, same budget.

Three legs; each resumes where an earlier run stopped and redoes nothing that is finished.

- hpo: `python -m hpo.search` on the study inside its wall-clock budget (`make search`), then
  `python -m hpo.ensemble --top 5` (`make ensemble`).
- kerastuner: KerasTuner's Hyperband (objective val_accuracy, the study's max_epochs, factor 3,
  the study's seed) over the same search space, trained on the same data, validation split and
  length-bucketed batches, with the same early stopping and learning-rate schedule, inside the
  same wall-clock budget; then its best model is evaluated once on the test set. KerasTuner has
  no time budget of its own: here its oracle creates no trial once the budget is spent, and a
  callback ends a running trial before an epoch that would end past it, as hpo ends its trials.
  Its project, budget intervals, trial log and test result live in the study's folder, under
  `kerastuner/`.
- report (always runs last): one table from what is stored: wall clock, trials complete /
  stopped / pruned / failed, per-trial overhead (trial wall time outside `model.fit`), the best
  single model's and the ensemble's test accuracy, log-loss and ECE, the ensemble's gain, and the
  time each tool needed to first reach KerasTuner's best validation accuracy; then published
  IMDB results for reference.

Times are budget time: seconds the tool's runs were alive, so a pause between resumed runs does
not count (without pauses it is the wall time since the tool's first start).

Usage:
    python benchmarks/bench_headline.py [--study studies/imdb.toml]
        [--legs hpo kerastuner report] [--data PATH] [--budget 2h] [--ensemble-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner
import numpy as np
import optuna
from keras_tuner.engine.trial import Trial, TrialStatus
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpo import metrics
from hpo.backend import gpu_capability
from hpo.budget import (
    format_duration,
    parse_duration,
    run_intervals,
    spent_seconds,
    union_seconds,
)
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.errors import ConfigError, HpoError
from hpo.precision import resolve_precision
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.training.callbacks import EpochClock
from hpo.training.runner import EVAL_BATCH, build_model

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from hpo.config import StudyConfig
    from hpo.study import SearchSpace
    from hpo.tasks import Task

LEGS = ("hpo", "kerastuner", "report")
TOP = 5
FACTOR = 3
# Far more Hyperband iterations than any budget holds: the budget ends KerasTuner's search.
ITERATIONS = 1000
TUNER_FOLDER = "kerastuner"
BUDGET_FILE = "budget.json"
TRIALS_FILE = "trials.json"
TEST_FILE = "test.json"
# Keras reports val_accuracy in float32 and hpo computes it in float64; equal accuracies may
# differ by this much.
TOLERANCE = 1e-6
REFERENCES = [
    (0.864, "keras.io, text classification from scratch (Conv1D)"),
    (0.906, "MLPerf sentiment analysis target"),
    (0.912, "NBSVM-bi (Wang & Manning 2012)"),
    (0.9196, "seq-CNN (Johnson & Zhang 2015)"),
    (0.9233, "seq2-bown-CNN (Johnson & Zhang 2015)"),
]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, data: Any) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


# --- hpo leg ---------------------------------------------------------------------------------


def run_hpo(
    study_file: str,
    config: StudyConfig,
    data: str | None,
    budget_flag: str | None,
    ensemble_dir: Path,
) -> None:
    """Runs (or resumes) `hpo.search` within the budget, then `hpo.ensemble` unless it is current.

    Raises:
        HpoError: The search left no complete trial, or the ensemble failed.
    """
    common = ["--study", study_file, *(["--data", data] if data else [])]
    budget = ["--budget", budget_flag] if budget_flag else []
    search = [sys.executable, "-m", "hpo.search", *common, *budget]
    code = _run(search)
    study = load_hpo_study(config)
    complete = 0 if study is None else len(study.get_trials(states=(TrialState.COMPLETE,)))
    if code != 0:
        if not complete:
            raise HpoError(
                f"`{' '.join(search)}` exited with code {code} and the study holds no complete "
                f"trial; its output above says why."
            )
        print(
            f"note: hpo.search exited with code {code}; ensembling its {complete} complete trials."
        )
    if study is not None and ensemble_is_current(study, ensemble_dir / "report.json"):
        print(f"The ensemble in {ensemble_dir} is newer than every trial; not rebuilt.")
        return
    ensemble = [sys.executable, "-m", "hpo.ensemble", "--top", str(TOP), *common]
    code = _run([*ensemble, "--out", str(ensemble_dir)])
    if code != 0:
        raise HpoError(
            f"`{' '.join(ensemble)}` exited with code {code}; its output above says why."
        )


def _run(command: list[str]) -> int:
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


def load_hpo_study(config: StudyConfig) -> optuna.Study | None:
    """The study hpo's search made, or None if there is none yet (nothing is created)."""
    if config.storage is None and not (config.study_dir / "study.db").is_file():
        return None
    try:
        return optuna.load_study(study_name=config.name, storage=config.storage_url)
    except KeyError:
        return None


def ensemble_is_current(study: optuna.Study, report_path: Path) -> bool:
    """Whether the ensemble report was written after the study's last trial finished."""
    report = _read_json(report_path)
    if not report or report.get("study") != study.study_name:
        return False
    created = datetime.datetime.fromisoformat(report["created"])
    finished = [
        t.datetime_complete.astimezone()
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete is not None
    ]
    return not finished or created >= max(finished)


# --- kerastuner leg --------------------------------------------------------------------------


class TunerClock:
    """The KerasTuner leg's wall-clock time across resumed runs, kept as [start, end] intervals.

    Args:
        path: The JSON file; earlier runs' intervals are read from it.
        budget: The budget in seconds.
    """

    def __init__(self, path: Path, budget: float) -> None:
        self.path, self.budget = path, budget
        self.intervals: list[list[float]] = (_read_json(path) or {}).get("intervals", [])
        self.running = False

    def start(self) -> None:
        """Opens this run's interval."""
        self.intervals.append([time.time(), time.time()])
        self.running = True
        self.record()

    def stop(self) -> None:
        """Closes this run's interval."""
        self.record()
        self.running = False

    def record(self) -> None:
        """Extends this run's interval to now and writes every interval to the file."""
        if self.running:
            self.intervals[-1][1] = time.time()
        _write_json(self.path, {"budget": self.budget, "intervals": self.intervals})

    def spent(self) -> float:
        """Seconds spent by every run so far, this one included."""
        self.record()
        return union_seconds(self.intervals)

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.budget - self.spent()


def declare_space(hp: keras_tuner.HyperParameters, space: SearchSpace) -> dict[str, Any]:
    """Declares hpo's search space on `hp` and returns the values of its active parameters.

    The family comes first; each family's own parameters are declared in a conditional scope of
    that family, so a trial samples only the chosen family's, and in a name scope of it
    (`conv1d/filters`): KerasTuner keeps one value per name, and a name declared in two scopes
    loses its value to the inactive one.
    """
    family = _declare(hp, "family", space.family)
    params = {"family": family, **{n: _declare(hp, n, d) for n, d in space.shared.items()}}
    for choice in space.family.choices:
        with hp.conditional_scope("family", [choice]), hp.name_scope(str(choice)):
            own = {n: _declare(hp, n, d) for n, d in space.families[str(choice)].items()}
        if choice == family:
            params.update(own)
    return params


def _declare(hp: keras_tuner.HyperParameters, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices)
        if not all(isinstance(c, bool) for c in choices):
            return hp.Choice(name, choices)
        # KerasTuner's Choice turns booleans into 0 and 1; Boolean and Fixed keep them.
        return hp.Boolean(name) if len(choices) == 2 else hp.Fixed(name, choices[0])
    sampling = "log" if getattr(dist, "log", False) else "linear"
    if isinstance(dist, IntDistribution):
        # KerasTuner multiplies by `step` on a log scale; Optuna's log ints always step by 1.
        step = None if dist.log else dist.step
        return hp.Int(name, dist.low, dist.high, step=step, sampling=sampling)
    if isinstance(dist, FloatDistribution):
        return hp.Float(name, dist.low, dist.high, step=dist.step, sampling=sampling)
    raise TypeError(f"parameter {name!r}: no KerasTuner counterpart for {dist!r}")


@dataclass(frozen=True)
class FitRecord:
    """What one `model.fit` of a KerasTuner trial took."""

    seconds: float = 0.0
    epochs: int = 0
    stopped: bool = False


class SharedSpace(keras_tuner.HyperModel):
    """hpo's search space as a KerasTuner hypermodel, trained as hpo's runner trains a trial.

    Args:
        config: The study's configuration.
        task: The study's task.
        space: The study's (narrowed) search space.
        data_folder: The prepared data (`Task.prepare`) that hpo's trials read.
    """

    def __init__(
        self, config: StudyConfig, task: Task, space: SearchSpace, data_folder: Path
    ) -> None:
        super().__init__(name="hpo_space")
        self.config, self.task, self.space, self.data_folder = config, task, space, data_folder
        self.gpu = gpu_capability()
        self.last_fit = FitRecord()

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Builds and compiles the model of `hp`, in the precision hpo would train it in."""
        params = declare_space(hp, self.space)
        precision = resolve_precision(self.config.training.precision, params["family"], self.gpu)
        keras.mixed_precision.set_global_policy(precision.value)
        return build_model(self.task, params)

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        *args: Any,
        seed: int = 0,
        deadline: float = math.inf,
        **kwargs: Any,
    ) -> Any:
        """Trains on hpo's data and batches, for the epochs that Hyperband gives.

        Args:
            seed: Seed of the batch order.
            deadline: Unix time past which training stops at the end of an epoch.
            **kwargs: KerasTuner's `callbacks`, and Hyperband's `epochs` and `initial_epoch`.
        """
        params = declare_space(hp, self.space)
        data = self.task.trial_data(self.data_folder, params)
        training = self.config.training
        # hpo's own rule: stop before an epoch that would end past the deadline.
        deadline_stop = EpochClock([(deadline, "the budget")])
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.EarlyStopping(
                monitor=self.task.monitor,
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
        started = time.perf_counter()
        try:
            return model.fit(
                self.task.dataset(data.x_train, data.y_train, params["batch_size"], seed),
                validation_data=self.task.dataset(data.x_val, data.y_val, EVAL_BATCH, None),
                epochs=kwargs.get("epochs", training.max_epochs),
                initial_epoch=kwargs.get("initial_epoch", 0),
                callbacks=callbacks,
                shuffle=False,  # the dataset shuffles, each epoch anew
                verbose=0,
            )
        finally:
            self.last_fit = FitRecord(
                time.perf_counter() - started,
                deadline_stop.count,
                deadline_stop.stop_reason is not None,
            )


class BudgetHyperbandOracle(keras_tuner.oracles.HyperbandOracle):
    """Hyperband that creates no trial once the wall-clock budget is spent.

    Args:
        clock: The leg's clock.
        **kwargs: `HyperbandOracle`'s arguments.
    """

    def __init__(self, clock: TunerClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """Hyperband's next trial, or STOPPED once the budget is spent."""
        if self.clock.left() <= 0:
            return {"status": TrialStatus.STOPPED}
        return super().populate_space(trial_id)

    @keras_tuner.synchronized
    def create_trial(self, tuner_id: str) -> Trial:
        """Also stops the retries of trials an interrupted run left, which skip `populate_space`."""
        if self._retry_queue and self.clock.left() <= 0:
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        return super().create_trial(tuner_id)


class BudgetHyperband(keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner with the budgeted oracle; logs each finished trial.

    Args:
        oracle: The budgeted oracle.
        hypermodel: The shared search space.
        project_dir: KerasTuner's project folder; an existing project is resumed.
        seed: Trial `i` seeds its weights and batch order with `seed + i`, as hpo's trials do.
    """

    def __init__(
        self,
        oracle: BudgetHyperbandOracle,
        hypermodel: SharedSpace,
        project_dir: Path,
        seed: int,
    ) -> None:
        # Hyperband's own __init__ only makes a plain HyperbandOracle and hands it to Tuner.
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
        """Hyperband's trial, seeded and given the budget's deadline."""
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
        values = ended.hyperparameters.values
        fit = self.hypermodel.last_fit
        record = {
            "status": ended.status,
            "val_accuracy": None if ended.score is None else float(ended.score),
            "family": values.get("family"),
            "epochs": [values.get("tuner/initial_epoch"), values.get("tuner/epochs")],
            "epochs_run": fit.epochs,
            "stopped_at_budget": fit.stopped,
            "trial_seconds": round(time.perf_counter() - self._started, 2),
            "fit_seconds": round(fit.seconds, 2),
            "finished_at": round(time.time(), 3),
            "elapsed_seconds": round(self.clock.spent(), 2),
        }
        self.log[ended.trial_id] = record
        _write_json(self.log_path, self.log)
        print(describe_kt_trial(ended.trial_id, record, self.clock.budget), flush=True)


def describe_kt_trial(trial_id: str, record: dict[str, Any], budget: float) -> str:
    """One line about a finished KerasTuner trial."""
    score = record["val_accuracy"]
    first, last = record["epochs"]
    parts = [
        f"kerastuner trial {trial_id:>4}",
        f"{record['family'] or '?':<10}",
        f"{record['status']:<9}",
        f"val_acc={score:.4f}" if score is not None else "val_acc=-",
        f"epochs {first}->{last} ({record['epochs_run']} run)",
        f"{record['fit_seconds']:.0f}s fit / {record['trial_seconds']:.0f}s",
        f"[{format_duration(record['elapsed_seconds'])} of {format_duration(budget)}]",
    ]
    if record["stopped_at_budget"]:
        parts.append("(stopped: budget spent)")
    return " ".join(parts)


def run_kerastuner(config: StudyConfig, data: str | None, project_dir: Path) -> None:
    """Runs (or resumes) KerasTuner's Hyperband within the budget, then tests its best model.

    Raises:
        ConfigError: The study has no budget and none was given.
        HpoError: KerasTuner finished no trial.
    """
    if config.budget is None:
        raise ConfigError(
            "the KerasTuner leg needs a wall-clock budget and the study file sets no 'budget'. "
            "Pass one, for example --budget 2h."
        )
    task = study_task(config)
    space = search_space(task, config.space)
    project_dir.mkdir(parents=True, exist_ok=True)
    clock = TunerClock(project_dir / BUDGET_FILE, config.budget)
    left = clock.left()
    if left > 0:
        clock.start()
        print(
            f"KerasTuner Hyperband: {format_duration(config.budget - left)} spent, "
            f"{format_duration(left)} left of {format_duration(config.budget)}; "
            f"project {project_dir}",
            flush=True,
        )
    try:
        # Data preparation counts against the budget, as it does for hpo (cached if hpo ran).
        folder = task.prepare(config, data, space.shared)
        oracle = BudgetHyperbandOracle(
            clock,
            objective=keras_tuner.Objective(task.monitor, "max"),
            max_epochs=config.training.max_epochs,
            factor=FACTOR,
            hyperband_iterations=ITERATIONS,
            seed=config.sampler.seed or 1,  # KerasTuner draws a random seed for 0
        )
        hypermodel = SharedSpace(config, task, space, folder)
        tuner = BudgetHyperband(oracle, hypermodel, project_dir, config.sampler.seed)
        if clock.running:
            tuner.search(verbose=0)
        else:
            print(f"KerasTuner has spent its budget of {format_duration(config.budget)}.")
    finally:
        clock.stop()
    evaluate_best(config, data, task, space, folder, tuner, project_dir / TEST_FILE)


def evaluate_best(
    config: StudyConfig,
    data: str | None,
    task: Task,
    space: SearchSpace,
    folder: Path,
    tuner: BudgetHyperband,
    path: Path,
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
    params = declare_space(trial.hyperparameters, space)
    model = tuner.load_model(trial)
    test = task.load_test(config, data, folder)
    predictions = np.asarray(task.predict(model, task.member_inputs(test.x, params)))
    summary = metrics.summary(test.y, predictions.reshape(-1))
    result = {
        "trial_id": trial.trial_id,
        "val_accuracy": float(trial.score),
        "params": params,
        "test_examples": len(test.y),
        "test": summary,
    }
    _write_json(path, result)
    print(
        f"KerasTuner's best trial {trial.trial_id} (val_accuracy {trial.score:.4f}): test "
        f"accuracy {summary['accuracy']:.4f}, log-loss {summary['log_loss']:.4f}, "
        f"ECE {summary['ece']:.4f}.",
        flush=True,
    )


# --- report ----------------------------------------------------------------------------------

ROWS = [
    "budget",
    "wall clock spent (budget time)",
    "trials complete",
    "  of which stopped early",
    "trials pruned",
    "trials failed",
    "per-trial overhead (outside fit)",
    "epoch estimate error (median)",
    "best validation accuracy",
    "best single: test acc / logloss / ECE",
    f"ensemble top-{TOP}: test acc / logloss / ECE",
    "ensemble gain: accuracy / logloss",
    "time to KerasTuner's best val acc",
]


def hpo_column(
    study: optuna.Study, ensemble_dir: Path, budget: float | None, target: float | None
) -> tuple[dict[str, str], float | None]:
    """hpo's rows of the table, and the budget time at which it first reached `target`."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    timed = [
        t.user_attrs for t in trials if {"trial_seconds", "train_seconds"} <= t.user_attrs.keys()
    ]
    errors = [
        abs(a[Attr.ESTIMATED_EPOCH_SECONDS] / a[Attr.EPOCH_SECONDS] - 1)
        for a in (t.user_attrs for t in trials)
        if a.get(Attr.ESTIMATED_EPOCH_SECONDS) and a.get(Attr.EPOCH_SECONDS)
    ]
    rows = {
        "budget": format_duration(budget) if budget else "none",
        "wall clock spent (budget time)": format_duration(spent_seconds(study)),
        "trials complete": str(len(complete)),
        "  of which stopped early": str(
            sum(bool(t.user_attrs.get("stop_reason")) for t in complete)
        ),
        "trials pruned": str(sum(t.state == TrialState.PRUNED for t in trials)),
        "trials failed": str(sum(t.state == TrialState.FAIL for t in trials)),
        "per-trial overhead (outside fit)": _overhead(
            [a["trial_seconds"] for a in timed], [a["train_seconds"] for a in timed]
        ),
        "epoch estimate error (median)": f"{statistics.median(errors):.0%}" if errors else "-",
    }
    if complete:
        rows["best validation accuracy"] = f"{max(t.value or 0.0 for t in complete):.4f}"
    report = _read_json(ensemble_dir / "report.json")
    if report and report.get("study") == study.study_name:
        member = report["members"][0]
        rows["best single: test acc / logloss / ECE"] = (
            _scores(report["test"]["best_member"]) + f" (#{member['trial']})"
        )
        rows[f"ensemble top-{TOP}: test acc / logloss / ECE"] = _scores(report["test"]["ensemble"])
        gain = report["gain_over_best_member"]
        rows["ensemble gain: accuracy / logloss"] = (
            f"{gain['accuracy']:+.4f} / {gain['log_loss']:+.4f}"
        )
    reached = None
    if target is not None:
        intervals = run_intervals(study)
        times = [
            union_seconds(intervals, until=t.datetime_complete.timestamp())
            for t in complete
            if t.datetime_complete is not None and (t.value or 0.0) >= target - TOLERANCE
        ]
        reached = min(times, default=None)
        rows["time to KerasTuner's best val acc"] = _duration_or(reached, "not reached")
    return rows, reached


def kt_column(
    project_dir: Path, budget: float | None
) -> tuple[dict[str, str], float | None, float | None]:
    """KerasTuner's rows of the table (empty if it never ran), its best validation accuracy and
    the budget time at which it first reached it (both None before a completed trial)."""
    records = list((_read_json(project_dir / TRIALS_FILE) or {}).values())
    if not records:
        return {}, None, None
    complete = [r for r in records if r["status"] == TrialStatus.COMPLETED]
    failed = [r for r in records if r["status"] in (TrialStatus.FAILED, TrialStatus.INVALID)]
    intervals = (_read_json(project_dir / BUDGET_FILE) or {}).get("intervals", [])
    rows = {
        "budget": format_duration(budget) if budget else "none",
        "wall clock spent (budget time)": format_duration(union_seconds(intervals)),
        "trials complete": str(len(complete)),
        "  of which stopped early": str(sum(bool(r["stopped_at_budget"]) for r in complete)),
        "trials pruned": "- (Hyperband)",
        "trials failed": str(len(failed)),
        "per-trial overhead (outside fit)": _overhead(
            [r["trial_seconds"] for r in records], [r["fit_seconds"] for r in records]
        ),
    }
    best = max((r["val_accuracy"] for r in complete), default=None)
    reached = None
    if best is not None:
        rows["best validation accuracy"] = f"{best:.4f}"
        reached = min(r["elapsed_seconds"] for r in complete if r["val_accuracy"] >= best)
        rows["time to KerasTuner's best val acc"] = format_duration(reached)
    test = _read_json(project_dir / TEST_FILE)
    if test:
        rows["best single: test acc / logloss / ECE"] = (
            _scores(test["test"]) + f" (#{test['trial_id']})"
        )
    return rows, best, reached


def _overhead(trial_seconds: list[float], fit_seconds: list[float]) -> str:
    total = sum(trial_seconds)
    if not total:
        return "-"
    return f"{(total - sum(fit_seconds)) / total:.1%} of {len(trial_seconds)}"


def _scores(summary: dict[str, float]) -> str:
    return f"{summary['accuracy']:.4f} / {summary['log_loss']:.4f} / {summary['ece']:.4f}"


def _duration_or(seconds: float | None, missing: str) -> str:
    return missing if seconds is None else format_duration(seconds)


def print_report(config: StudyConfig, ensemble_dir: Path, project_dir: Path) -> None:
    """Prints the side-by-side table, the time ratio and the published references."""
    kt_rows, target, kt_reached = kt_column(project_dir, config.budget)
    study = load_hpo_study(config)
    hpo_rows, hpo_reached = (
        hpo_column(study, ensemble_dir, config.budget, target) if study else ({}, None)
    )
    width = max(len(r) for r in ROWS) + 2
    print(f"\nHeadline benchmark: study {config.name!r} ({config.study_dir})")
    print(f"{'':<{width}}{'hpo (Optuna)':<30}KerasTuner Hyperband")
    for row in ROWS:
        hpo_value = hpo_rows.get(row, "-") if study else "not run"
        kt_value = kt_rows.get(row, "-") if kt_rows else "not run"
        print(f"{row:<{width}}{hpo_value:<30}{kt_value}")
    if target is None:
        print("\nTime to KerasTuner's best validation accuracy: n/a (no KerasTuner trial yet).")
    else:
        ratio = "n/a (hpo never reached it)"
        if hpo_reached and kt_reached is not None:
            ratio = f"{kt_reached / hpo_reached:.2f}x"
        print(
            f"\nTime to first reach KerasTuner's best validation accuracy {target:.4f}: "
            f"KerasTuner {_duration_or(kt_reached, 'never')}, hpo "
            f"{_duration_or(hpo_reached, 'never')}; ratio KerasTuner / hpo: {ratio}."
        )
    print("\nPublished IMDB test accuracies, for reference:")
    for accuracy, source in REFERENCES:
        print(f"  {accuracy:.2%}  {source}")


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen legs, then prints the report; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/imdb.toml", help="study file")
    parser.add_argument(
        "--legs", nargs="+", choices=LEGS, default=list(LEGS), help="legs to run (report always)"
    )
    parser.add_argument("--data", help="data set folder or archive (overrides $HPO_IMDB_PATH)")
    parser.add_argument("--budget", help="each tool's wall-clock budget (default: the study's)")
    parser.add_argument(
        "--ensemble-dir",
        type=Path,
        help=f"hpo's ensemble folder (default ensembles/<study>-top{TOP})",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        config = load_study_config(args.study)
        if args.budget:
            config = config.with_overrides(budget=parse_duration(args.budget, "--budget"))
        ensemble_dir = args.ensemble_dir or Path("ensembles") / f"{config.name}-top{TOP}"
        project_dir = config.study_dir / TUNER_FOLDER
        if "hpo" in args.legs:
            run_hpo(args.study, config, args.data, args.budget, ensemble_dir)
        if "kerastuner" in args.legs:
            run_kerastuner(config, args.data, project_dir)
        print_report(config, ensemble_dir, project_dir)
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
