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

import dataclasses
import importlib.util
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _common as bench
import _kerastuner as kt
import keras_tuner
import optuna
from optuna.distributions import CategoricalDistribution

from hpo.backend import gpu_capability
from hpo.budget import format_duration, parse_duration, spent_seconds
from hpo.config import load_study_config
from hpo.errors import ConfigError
from hpo.models.hypermodel import HyperModelFamily
from hpo.precision import resolve_precision
from hpo.study import default_params, search_space
from hpo.tasks import study_task
from hpo.training.interface import compile_model, read_interface
from hpo.training.runner import EVAL_BATCH, global_policy, make_optimizer, probe_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    import keras
    from keras_tuner.engine.trial import Trial

    from hpo.config import StudyConfig
    from hpo.tasks import Task
    from hpo.training.interface import ModelInterface

LEGS = ("kerastuner", "hpo", "report")
# Far more trials than any budget holds: the budget ends both searches.
MAX_TRIALS = 1000
TUNER_FOLDER = "kt-bayes"
ENSEMBLE_FOLDER = f"ensemble-top{bench.TOP}"
ENSEMBLE_TIME_FILE = "ensemble-time.json"
SCORES = ("accuracy", "log_loss")


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
    name = f"{config.name}-{family}"
    return dataclasses.replace(
        config,
        name=name,
        study_dir=config.study_dir.parent / name,
        space={**config.space, "family": [family]},
        n_trials=MAX_TRIALS,
        budget=bench.require_budget(budget or config.budget, "both legs need", "1h"),
    )


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


class TaskHyperModel(kt.BudgetedHyperModel):
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
        super().__init__(family.name, config, task)
        self.user = family.hypermodel
        space = search_space(task, config.space)
        defaults = next(p for p in default_params(task, space) if p["family"] == family.name)
        # What hpo's hypermodel trials read with `hp.get` besides their own parameters.
        self.given = {**defaults, **task.build_context(data_folder)}
        self.data = task.trial_data(data_folder, self.given)
        self.classes = int(self.given["classes"])
        self.interface: ModelInterface | None = None  # the last model's, read when built
        self.last_batch_size = 0

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The user's model, read and compiled as hpo's runner reads and compiles a trial's."""
        build = getattr(self.user, "build", self.user)
        model = build(_GivenValues(hp, self.given))
        rows = probe_rows(self.data.y_val)
        x, y = self.data.x_val[rows], self.data.y_val[rows]
        self.interface = read_interface(
            model, x, y, self.classes, family=self.name, text=self.task.padded
        )
        compile_model(model, self.interface, lambda: make_optimizer(self.given))
        return model

    def train(self, hp: Any, model: keras.Model, seed: int, arguments: dict[str, Any]) -> Any:
        """Calls the user's `fit` (or `model.fit`) with hpo's batches, callbacks and epochs."""
        data, task, interface = self.data, self.task, self.interface
        assert interface is not None  # read when the model was built
        y_train, y_val = (
            interface.encode_labels(y, self.classes) for y in (data.y_train, data.y_val)
        )

        def batches(batch_size: int) -> Any:
            return task.dataset(
                data.x_train, y_train, batch_size, seed, bucketed=interface.bucketed
            )

        train = batches(self.given["batch_size"])
        trainer = _Rebatching(model, train, batches, self.given["batch_size"])
        arguments["validation_data"] = task.dataset(
            data.x_val, y_val, EVAL_BATCH, None, bucketed=interface.bucketed
        )
        user_fit = getattr(self.user, "fit", None)
        try:
            if user_fit is None:
                return trainer.fit(train, **arguments)
            return user_fit(_GivenValues(hp, self.given), trainer, train, **arguments)
        finally:
            self.last_batch_size = trainer.batch_size


class BudgetBayesianOracle(kt.BudgetedOracle, keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimization that creates no trial once the wall-clock budget is spent."""


class BudgetBayesian(kt.BudgetedTuner, keras_tuner.BayesianOptimization):
    """KerasTuner's BayesianOptimization tuner with the budgeted oracle; logs each trial."""

    hypermodel: TaskHyperModel

    def describe(self, trial: Trial) -> dict[str, Any]:
        """The family, the epochs, the trial's values and the batch size it trained with."""
        return {
            "family": self.hypermodel.name,
            "epochs": [0, self.hypermodel.config.training.max_epochs],
            "params": trial.hyperparameters.values,
            "batch_size": self.hypermodel.last_batch_size,
        }


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
    precision = resolve_precision(config.training.precision, family, gpu_capability())
    label = f"KerasTuner BayesianOptimization ({family})"
    with (
        bench.leg_budget(project_dir, config.budget, label) as clock,
        global_policy(precision.value),
    ):
        _, folder = bench.prepare(config, data)  # cached: prepared before the clock started
        hypermodel = TaskHyperModel(config, task, hypermodel_family, folder)
        oracle = BudgetBayesianOracle(
            clock,
            objective=keras_tuner.Objective(task.monitor, "max"),
            max_trials=MAX_TRIALS,
            seed=config.sampler.seed or 1,  # KerasTuner draws a random seed for 0
        )
        tuner = BudgetBayesian(oracle, hypermodel, project_dir, config.sampler.seed)
        with warnings.catch_warnings():
            # The Gaussian process's length-scale notes, once per trial.
            warnings.filterwarnings("ignore", module=r"sklearn\.gaussian_process")
            kt.search_within_budget(tuner)

    def evaluate(trial: Trial, model: keras.Model) -> Any:
        # Loading the trial's model built it anew, which read its interface.
        evaluation = bench.evaluate_on_test(
            config, data, task, folder, model, hypermodel.given, hypermodel.interface
        )
        return trial.hyperparameters.values, evaluation

    with global_policy(precision.value):
        kt.evaluate_best_trial(tuner, evaluate)


# --- hpo leg ---------------------------------------------------------------------------------


def run_hpo(config: StudyConfig, data: str | None, ensemble_dir: Path) -> None:
    """Runs (or resumes) hpo's search within the budget, then its top-5 ensemble unless current.

    Raises:
        HpoError: The search failed or left no complete trial, or the ensemble failed.
    """
    ensemble = bench.run_hpo_leg(config, data, ensemble_dir)
    if ensemble is not None:
        result, seconds = ensemble
        bench.write_json(
            config.study_dir / ENSEMBLE_TIME_FILE,
            {"created": result.report["created"], "seconds": round(seconds, 1)},
        )


# --- report ----------------------------------------------------------------------------------

ROWS = [
    "parameters searched",
    "budget",
    "search time (budget time)",
    "trials finished (complete / pruned / failed)",
    "best validation accuracy",
    "best single model: test accuracy / log-loss",
    f"top-{bench.TOP} ensemble: test accuracy / log-loss",
    "test evaluation / ensemble time",
]


def kt_column(project_dir: Path, budget: float) -> dict[str, str] | None:
    """KerasTuner's rows of the table; None if it never ran."""
    log = kt.read_tuner_log(project_dir)
    if log is None:
        return None
    complete, failed = len(log.complete), len(log.failed)
    rows = {
        "parameters searched": ", ".join(
            sorted({n for r in log.records for n in r.get("params", {})})
        ),
        "budget": format_duration(budget),
        "search time (budget time)": format_duration(bench.stored_budget(project_dir)[1]),
        "trials finished (complete / pruned / failed)": (
            f"{complete + failed} ({complete} / - / {failed})"
        ),
        f"top-{bench.TOP} ensemble: test accuracy / log-loss": "- (none)",
    }
    if log.best is not None:
        rows["best validation accuracy"] = f"{log.best:.4f}"
    if log.test:
        rows["best single model: test accuracy / log-loss"] = (
            f"{bench.scores(log.test['test'], SCORES)} (trial {log.test['trial_id']})"
        )
        rows["test evaluation / ensemble time"] = format_duration(log.test["seconds"])
    return rows


def hpo_column(study: optuna.Study, config: StudyConfig, ensemble_dir: Path) -> dict[str, str]:
    """hpo's rows of the table."""
    assert config.budget is not None
    trials = study.get_trials(deepcopy=False)
    complete, pruned, failed = bench.state_counts(trials)
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
            f"{complete + pruned + failed} ({complete} / {pruned} / {failed})"
        ),
    }
    rows |= bench.result_rows(study, ensemble_dir, SCORES, ROWS[4:7])
    report = bench.ensemble_report(study, ensemble_dir)
    if report:
        timing = bench.read_json(config.study_dir / ENSEMBLE_TIME_FILE)
        if timing and timing.get("created") == report["created"]:
            rows["test evaluation / ensemble time"] = format_duration(timing["seconds"])
    return rows


def print_report(
    config: StudyConfig, family: str, project_dir: Path, ensemble_dir: Path, command: str
) -> None:
    """Prints the side-by-side markdown table, with the command that produced it."""
    assert config.budget is not None
    study = bench.load_hpo_study(config)
    log = kt.read_tuner_log(project_dir)
    examples = f", {log.test['test_examples']:,} test examples" if log and log.test else ""
    print(
        f"\nKerasTuner BayesianOptimization vs hpo on family {family!r} of study "
        f"{config.name!r} ({config.study_dir}){examples}; {bench.machine_note()}:\n"
    )
    print("```\n" + command + "\n```\n")
    legs = {
        "KerasTuner BayesianOptimization": kt_column(project_dir, config.budget),
        f"hpo (TPE, {config.pruner.kind.value} pruner)": (
            hpo_column(study, config, ensemble_dir) if study else None
        ),
    }
    print(bench.comparison_table(ROWS, legs))


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen legs, then prints the report; returns the exit code."""
    parser = bench.benchmark_parser(
        __doc__,
        "examples/keras_tuner/imdb-kerastuner.toml",
        "data set folder or archive (overrides $HPO_IMDB_PATH)",
    )
    parser.add_argument(
        "--family", default="bilstm", help="the study's [families] hypermodel to search"
    )
    bench.add_leg_arguments(parser, LEGS)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command = bench.command_line(
        __file__,
        [
            "--study",
            args.study,
            "--family",
            args.family,
            *(["--budget", args.budget] if args.budget else []),
            *(["--data", args.data] if args.data else []),
        ],
    )

    def run() -> None:
        budget = parse_duration(args.budget, "--budget") if args.budget else None
        config = family_config(load_study_config(args.study), args.family, budget)
        project_dir = config.study_dir / TUNER_FOLDER
        ensemble_dir = config.study_dir / ENSEMBLE_FOLDER
        searches = [leg for leg in args.legs if leg != "report"]
        if searches:
            bench.prepare(config, args.data)
        if len(searches) > 1 and not args.sequential:
            bench.run_legs_pinned(__file__, sys.argv[1:] if argv is None else argv, searches)
            searches = []
        if "kerastuner" in searches:
            run_kerastuner(config, args.family, args.data, project_dir)
        if "hpo" in searches:
            run_hpo(config, args.data, ensemble_dir)
        if args.arm:
            return  # one leg of a side-by-side run; the parent prints the report
        print_report(config, args.family, project_dir, ensemble_dir, command)

    return bench.run_main(run)


if __name__ == "__main__":
    sys.exit(main())
