"""KerasTuner's legs: a KerasTuner search inside a wall-clock budget, trained as hpo trains.

KerasTuner has no time budget of its own. Here its oracle creates no trial once the leg's budget
(`LegClock`) is spent, and a callback ends a running trial before an epoch that would end past
it, as hpo ends its trials. Trial `i` seeds its weights and batch order with `seed + i`, as hpo's
trials do; each finished trial is logged to `trials.json` in the project folder and printed; the
best trial is evaluated once on the test set (`test.json`). A tuner class is one of KerasTuner's
with `BudgetedTuner` in front, and its oracle likewise with `BudgetedOracle`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import keras
import keras_tuner
from _common import describe_scores, read_json, write_json
from keras_tuner.engine.trial import Trial, TrialStatus

from hpo.budget import format_duration
from hpo.errors import HpoError
from hpo.training.callbacks import EpochClock, schedule_callbacks

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from _common import Evaluation, LegClock

    from hpo.config import StudyConfig
    from hpo.tasks import Task

TRIALS_FILE = "trials.json"
TEST_FILE = "test.json"


@dataclass(frozen=True)
class FitRecord:
    """What one `model.fit` of a KerasTuner trial took."""

    seconds: float = 0.0
    epochs: int = 0
    stopped: bool = False


class BudgetedOracle(keras_tuner.Oracle):
    """An oracle that creates no trial once the wall-clock budget is spent.

    Args:
        clock: The leg's clock.
        **kwargs: The KerasTuner oracle's arguments.
    """

    def __init__(self, clock: LegClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """The oracle's next trial, or STOPPED once the budget is spent."""
        if self.clock.left() <= 0:
            return {"status": TrialStatus.STOPPED}
        return super().populate_space(trial_id)

    @keras_tuner.synchronized
    def create_trial(self, tuner_id: str) -> Trial:
        """Also stops the retries of trials an interrupted run left, which skip `populate_space`."""
        if self._retry_queue and self.clock.left() <= 0:
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        return super().create_trial(tuner_id)


class BudgetedHyperModel(keras_tuner.HyperModel):
    """A hypermodel whose `fit` trains as hpo's runner trains a trial, within the budget.

    Args:
        name: The hypermodel's name.
        config: The study's configuration (its `[training]`).
        task: The study's task.
    """

    def __init__(self, name: str, config: StudyConfig, task: Task) -> None:
        super().__init__(name=name)
        self.config, self.task = config, task
        self.last_fit = FitRecord()

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: keras.Model,
        *args: Any,
        seed: int = 0,
        deadline: float = math.inf,
        **kwargs: Any,
    ) -> Any:
        """Trains with hpo's callbacks and KerasTuner's (`train`); keeps `last_fit`.

        Args:
            seed: Seed of the batch order.
            deadline: Unix time past which training stops at the end of an epoch.
            **kwargs: KerasTuner's `callbacks`, and Hyperband's `epochs` and `initial_epoch`.
        """
        # hpo's own rule: stop before an epoch that would end past the deadline.
        deadline_stop = EpochClock([(deadline, "the budget")])
        callbacks = [
            keras.callbacks.TerminateOnNaN(),
            *schedule_callbacks(self.task.monitor, self.config.training),
            deadline_stop,
            *kwargs.pop("callbacks", []),
        ]
        arguments = {
            "epochs": kwargs.get("epochs", self.config.training.max_epochs),
            **{k: kwargs[k] for k in ("initial_epoch",) if k in kwargs},
            "callbacks": callbacks,
            "shuffle": False,  # hpo's datasets shuffle, each epoch anew
            "verbose": 0,
        }
        started = time.perf_counter()
        try:
            return self.train(hp, model, seed, arguments)
        finally:
            self.last_fit = FitRecord(
                time.perf_counter() - started,
                deadline_stop.count,
                deadline_stop.stop_reason is not None,
            )

    def train(self, hp: Any, model: keras.Model, seed: int, arguments: dict[str, Any]) -> Any:
        """Trains on hpo's data (batches seeded with `seed`) with these `model.fit` arguments:
        epochs, callbacks and the like. Returns the history."""
        raise NotImplementedError


class BudgetedTuner(keras_tuner.Tuner):
    """A KerasTuner tuner on a budgeted oracle that seeds, times and logs each trial.

    Args:
        oracle: The budgeted oracle.
        hypermodel: The hypermodel, trained as hpo trains.
        project_dir: KerasTuner's project folder; an existing project is resumed.
        seed: Trial `i` seeds its weights and batch order with `seed + i`, as hpo's trials do.
    """

    hypermodel: BudgetedHyperModel

    def __init__(
        self, oracle: BudgetedOracle, hypermodel: BudgetedHyperModel, project_dir: Path, seed: int
    ) -> None:
        # KerasTuner's tuners' own __init__ only make a plain oracle and hand it to Tuner.
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
        self.log: dict[str, dict[str, Any]] = read_json(self.log_path) or {}
        self._started = 0.0

    def describe(self, trial: Trial) -> dict[str, Any]:
        """What the log records of a finished trial besides its score and times."""
        return {}

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
            **self.describe(ended),
            "epochs_run": fit.epochs,
            "stopped_at_budget": fit.stopped,
            "trial_seconds": round(time.perf_counter() - self._started, 2),
            "fit_seconds": round(fit.seconds, 2),
            "finished_at": round(time.time(), 3),
            "elapsed_seconds": round(self.clock.spent(), 2),
        }
        self.log[ended.trial_id] = record
        write_json(self.log_path, self.log)
        print(describe_trial(ended.trial_id, record, self.clock.budget), flush=True)


def describe_trial(trial_id: str, record: Mapping[str, Any], budget: float) -> str:
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


def search_within_budget(tuner: BudgetedTuner) -> None:
    """Searches while the budget lasts."""
    if tuner.clock.running:
        tuner.search(verbose=0)
    else:
        print(f"KerasTuner has spent its budget of {format_duration(tuner.clock.budget)}.")


def evaluate_best_trial(
    tuner: BudgetedTuner,
    evaluate: Callable[[Trial, keras.Model], tuple[Mapping[str, Any], Evaluation]],
) -> None:
    """Evaluates KerasTuner's best model on the test set once; stores the result in `test.json`.

    Args:
        evaluate: The trial's parameters and its model's evaluation on the test set.

    Raises:
        HpoError: KerasTuner completed no trial.
    """
    best = [t for t in tuner.oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
    if not best:
        raise HpoError(
            f"KerasTuner completed no trial in {tuner.project_dir}. Give it a larger --budget."
        )
    trial = best[0]
    path = tuner.log_path.with_name(TEST_FILE)
    stored = read_json(path)
    if stored and stored.get("trial_id") == trial.trial_id:
        print(f"KerasTuner's best trial {trial.trial_id} was already tested ({path}).")
        return
    started = time.perf_counter()
    with warnings.catch_warnings():
        # KerasTuner's checkpoint holds the optimizer's state, which a test needs none of.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(trial)
    params, evaluation = evaluate(trial, model)
    write_json(
        path,
        {
            "trial_id": trial.trial_id,
            "val_accuracy": float(trial.score),
            "params": dict(params),
            "test_examples": len(evaluation.labels),
            "test": evaluation.summary,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(
        f"KerasTuner's best trial {trial.trial_id} (val_accuracy {trial.score:.4f}): "
        f"{describe_scores(evaluation.summary)}.",
        flush=True,
    )


class TunerLog(NamedTuple):
    """What a KerasTuner leg stored: its trials, budget time spent and test result."""

    records: list[dict[str, Any]]
    complete: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    best: float | None  # the best validation accuracy
    test: dict[str, Any] | None


def read_tuner_log(project_dir: Path) -> TunerLog | None:
    """The leg's trial log and test result, or None if it never finished a trial."""
    records = list((read_json(project_dir / TRIALS_FILE) or {}).values())
    if not records:
        return None
    complete = [r for r in records if r["status"] == TrialStatus.COMPLETED]
    return TunerLog(
        records=records,
        complete=complete,
        failed=[r for r in records if r["status"] in (TrialStatus.FAILED, TrialStatus.INVALID)],
        best=max((r["val_accuracy"] for r in complete), default=None),
        test=read_json(project_dir / TEST_FILE),
    )
