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

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _common as bench
import _kerastuner as kt
import keras
import keras_tuner
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

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
from hpo.errors import HpoError
from hpo.precision import resolve_precision
from hpo.study import search_space
from hpo.training.runner import EVAL_BATCH, build_model

if TYPE_CHECKING:
    from keras_tuner.engine.trial import Trial
    from optuna.distributions import BaseDistribution

    from hpo.config import StudyConfig
    from hpo.study import SearchSpace
    from hpo.tasks import Task

LEGS = ("hpo", "kerastuner", "report")
FACTOR = 3
# Far more Hyperband iterations than any budget holds: the budget ends KerasTuner's search.
ITERATIONS = 1000
TUNER_FOLDER = "kerastuner"
# Keras reports val_accuracy in float32 and hpo computes it in float64; equal accuracies may
# differ by this much.
TOLERANCE = 1e-6
SCORES = ("accuracy", "log_loss", "ece")
REFERENCES = [
    (0.864, "keras.io, text classification from scratch (Conv1D)"),
    (0.906, "MLPerf sentiment analysis target"),
    (0.912, "NBSVM-bi (Wang & Manning 2012)"),
    (0.9196, "seq-CNN (Johnson & Zhang 2015)"),
    (0.9233, "seq2-bown-CNN (Johnson & Zhang 2015)"),
]


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
    search_command = [sys.executable, "-m", "hpo.search", *common, *budget]
    code = _run(search_command)
    study = bench.load_hpo_study(config)
    complete = 0 if study is None else len(study.get_trials(states=(TrialState.COMPLETE,)))
    if code != 0:
        if not complete:
            raise HpoError(
                f"`{' '.join(search_command)}` exited with code {code} and the study holds no "
                f"complete trial; its output above says why."
            )
        print(
            f"note: hpo.search exited with code {code}; ensembling its {complete} complete trials."
        )
    if study is not None and bench.ensemble_is_current(study, ensemble_dir):
        print(f"The ensemble in {ensemble_dir} is newer than every trial; not rebuilt.")
        return
    ensemble = [sys.executable, "-m", "hpo.ensemble", "--top", str(bench.TOP), *common]
    code = _run([*ensemble, "--out", str(ensemble_dir)])
    if code != 0:
        raise HpoError(
            f"`{' '.join(ensemble)}` exited with code {code}; its output above says why."
        )


def _run(command: list[str]) -> int:
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


# --- kerastuner leg --------------------------------------------------------------------------


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


class SharedSpace(kt.BudgetedHyperModel):
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
        super().__init__("hpo_space", config, task)
        self.space, self.data_folder = space, data_folder
        self.gpu = gpu_capability()

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Builds and compiles the model of `hp`, in the precision hpo would train it in."""
        params = declare_space(hp, self.space)
        precision = resolve_precision(self.config.training.precision, params["family"], self.gpu)
        keras.mixed_precision.set_global_policy(precision.value)
        return build_model(self.task, params)

    def train(self, hp: Any, model: keras.Model, seed: int, arguments: dict[str, Any]) -> Any:
        """Trains on hpo's data and batches, for the epochs that Hyperband gives."""
        params = declare_space(hp, self.space)
        data = self.task.trial_data(self.data_folder, params)
        return model.fit(
            self.task.dataset(data.x_train, data.y_train, params["batch_size"], seed),
            validation_data=self.task.dataset(data.x_val, data.y_val, EVAL_BATCH, None),
            **arguments,
        )


class BudgetHyperbandOracle(kt.BudgetedOracle, keras_tuner.oracles.HyperbandOracle):
    """Hyperband that creates no trial once the wall-clock budget is spent."""


class BudgetHyperband(kt.BudgetedTuner, keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner with the budgeted oracle; logs each finished trial."""

    def describe(self, trial: Trial) -> dict[str, Any]:
        """The trial's family and Hyperband's epochs."""
        values = trial.hyperparameters.values
        return {
            "family": values.get("family"),
            "epochs": [values.get("tuner/initial_epoch"), values.get("tuner/epochs")],
        }


def run_kerastuner(config: StudyConfig, data: str | None, project_dir: Path) -> None:
    """Runs (or resumes) KerasTuner's Hyperband within the budget, then tests its best model.

    Raises:
        ConfigError: The study has no budget and none was given.
        HpoError: KerasTuner finished no trial.
    """
    budget = bench.require_budget(config.budget, "the KerasTuner leg needs", "2h")
    with bench.leg_budget(project_dir, budget, "KerasTuner Hyperband") as clock:
        # Data preparation counts against the budget, as it does for hpo (cached if hpo ran).
        task, folder = bench.prepare(config, data)
        space = search_space(task, config.space)
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
        kt.search_within_budget(tuner)

    def evaluate(trial: Trial, model: keras.Model) -> Any:
        params = declare_space(trial.hyperparameters, space)
        return params, bench.evaluate_on_test(config, data, task, folder, model, params)

    kt.evaluate_best_trial(tuner, evaluate)


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
    f"ensemble top-{bench.TOP}: test acc / logloss / ECE",
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
        "budget": bench.duration_or(budget, "none"),
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
    report = bench.ensemble_report(study, ensemble_dir)
    if report:
        member = report["members"][0]
        rows["best single: test acc / logloss / ECE"] = (
            bench.scores(report["test"]["best_member"], SCORES) + f" (#{member['trial']})"
        )
        rows[f"ensemble top-{bench.TOP}: test acc / logloss / ECE"] = bench.scores(
            report["test"]["ensemble"], SCORES
        )
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
        rows["time to KerasTuner's best val acc"] = bench.duration_or(reached, "not reached")
    return rows, reached


def kt_column(
    project_dir: Path, budget: float | None
) -> tuple[dict[str, str] | None, float | None, float | None]:
    """KerasTuner's rows of the table (None if it never ran), its best validation accuracy and
    the budget time at which it first reached it (both None before a completed trial)."""
    log = kt.read_tuner_log(project_dir)
    if log is None:
        return None, None, None
    rows = {
        "budget": bench.duration_or(budget, "none"),
        "wall clock spent (budget time)": format_duration(bench.stored_budget(project_dir)[1]),
        "trials complete": str(len(log.complete)),
        "  of which stopped early": str(sum(bool(r["stopped_at_budget"]) for r in log.complete)),
        "trials pruned": "- (Hyperband)",
        "trials failed": str(len(log.failed)),
        "per-trial overhead (outside fit)": _overhead(
            [r["trial_seconds"] for r in log.records], [r["fit_seconds"] for r in log.records]
        ),
    }
    reached = None
    if log.best is not None:
        rows["best validation accuracy"] = f"{log.best:.4f}"
        reached = min(r["elapsed_seconds"] for r in log.complete if r["val_accuracy"] >= log.best)
        rows["time to KerasTuner's best val acc"] = format_duration(reached)
    if log.test:
        rows["best single: test acc / logloss / ECE"] = (
            bench.scores(log.test["test"], SCORES) + f" (#{log.test['trial_id']})"
        )
    return rows, log.best, reached


def _overhead(trial_seconds: list[float], fit_seconds: list[float]) -> str:
    total = sum(trial_seconds)
    if not total:
        return "-"
    return f"{(total - sum(fit_seconds)) / total:.1%} of {len(trial_seconds)}"


def print_report(config: StudyConfig, ensemble_dir: Path, project_dir: Path) -> None:
    """Prints the side-by-side table, the time ratio and the published references."""
    kt_rows, target, kt_reached = kt_column(project_dir, config.budget)
    study = bench.load_hpo_study(config)
    hpo_rows, hpo_reached = (
        hpo_column(study, ensemble_dir, config.budget, target) if study else (None, None)
    )
    print(f"\nHeadline benchmark: study {config.name!r} ({config.study_dir})\n")
    print(bench.comparison_table(ROWS, {"hpo (Optuna)": hpo_rows, "KerasTuner Hyperband": kt_rows}))
    if target is None:
        print("\nTime to KerasTuner's best validation accuracy: n/a (no KerasTuner trial yet).")
    else:
        ratio = "n/a (hpo never reached it)"
        if hpo_reached and kt_reached is not None:
            ratio = f"{kt_reached / hpo_reached:.2f}x"
        print(
            f"\nTime to first reach KerasTuner's best validation accuracy {target:.4f}: "
            f"KerasTuner {bench.duration_or(kt_reached, 'never')}, hpo "
            f"{bench.duration_or(hpo_reached, 'never')}; ratio KerasTuner / hpo: {ratio}."
        )
    bench.print_references("IMDB", REFERENCES)


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen legs, then prints the report; returns the exit code."""
    parser = bench.benchmark_parser(
        __doc__, "studies/imdb.toml", "data set folder or archive (overrides $HPO_IMDB_PATH)"
    )
    bench.add_leg_arguments(parser, LEGS, side_by_side=False)
    parser.add_argument(
        "--ensemble-dir",
        type=Path,
        help=f"hpo's ensemble folder (default ensembles/<study>-top{bench.TOP})",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def run() -> None:
        config = load_study_config(args.study)
        if args.budget:
            config = config.with_overrides(budget=parse_duration(args.budget, "--budget"))
        ensemble_dir = args.ensemble_dir or Path("ensembles") / f"{config.name}-top{bench.TOP}"
        project_dir = config.study_dir / TUNER_FOLDER
        if "hpo" in args.legs:
            run_hpo(args.study, config, args.data, args.budget, ensemble_dir)
        if "kerastuner" in args.legs:
            run_kerastuner(config, args.data, project_dir)
        print_report(config, ensemble_dir, project_dir)

    return bench.run_main(run)


if __name__ == "__main__":
    sys.exit(main())
