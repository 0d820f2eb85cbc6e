"""What the benchmarks share: command line, legs side by side, budgets, hpo's leg, test scores
and report tables, so that a benchmark script keeps only what it compares.

benchmarks/README.md lists what is here; KerasTuner's legs add `_kerastuner.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import optuna
from optuna.trial import TrialState

from hpo import metrics
from hpo.backend import gpu_capability
from hpo.budget import format_duration, union_seconds
from hpo.config import load_study_config
from hpo.errors import ConfigError, HpoError
from hpo.space import fit_value
from hpo.study import TRAINING_DEFAULTS, search_space
from hpo.tasks import study_task
from hpo.training.interface import to_probabilities
from hpo.training.isolation import call_isolated

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    import keras
    import numpy as np
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.ensemble import EnsembleResult
    from hpo.study import SearchSpace
    from hpo.tasks import Task
    from hpo.training.interface import ModelInterface

TOP = 5  # the ensemble's size in every side-by-side benchmark
BUDGET_FILE = "budget.json"


# --- files and command lines -----------------------------------------------------------------


def read_json(path: Path) -> Any:
    """The file's JSON, or None if there is no file."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, data: Any) -> None:
    """Writes the JSON to a temporary file and renames it into place: never half a file."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


def run_arms(
    script: str,
    arms: Sequence[str],
    repeats: int,
    *args: str,
    trees: Mapping[str, Path] | None = None,
) -> dict[str, list[Any]]:
    """Runs `script --arm ARM *args` for each arm in turn, `repeats` rounds, each in a Python
    process of its own; returns each arm's runs, the JSON each printed on its last line.

    Args:
        trees: An arm's source tree (another commit's worktree, say), which it runs in and
            imports hpo from; an arm without one runs as this process does.
    """
    runs: dict[str, list[Any]] = {arm: [] for arm in arms}
    for _ in range(repeats):
        for arm in arms:
            tree = (trees or {}).get(arm)
            done = subprocess.run(
                [sys.executable, script, "--arm", arm, *args],
                capture_output=True,
                text=True,
                check=False,
                cwd=tree,
                env=None if tree is None else {**os.environ, "PYTHONPATH": str(tree)},
            )
            if done.returncode != 0:
                raise SystemExit(f"arm {arm} failed:\n{done.stderr[-2000:]}")
            runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


@contextlib.contextmanager
def commit_tree(rev: str, folder: Path) -> Iterator[Path]:
    """Commit REV's source tree, checked out into `folder` (a detached git worktree) and removed
    after: a benchmark arm that runs another commit's code (`run_arms(trees=...)`)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(folder), rev],
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "-C", str(root), "worktree", "remove", "--force", str(folder)], check=False
        )


@contextlib.contextmanager
def arm_trees(baseline: str | None) -> Iterator[dict[str, Path]]:
    """The source trees of a comparison's arms (`run_arms(trees=...)`): `hpo`, this one, and
    with `baseline` (a commit) `baseline`, a temporary git worktree of it, removed after."""
    root = Path(__file__).resolve().parents[1]
    if baseline is None:
        yield {"hpo": root}
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-baseline-") as scratch,
        commit_tree(baseline, Path(scratch) / "baseline") as tree,
    ):
        yield {"baseline": tree, "hpo": root}


def benchmark_parser(
    doc: str | None, study: str, data: str = "data set folder or archive (default: the study's)"
) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, --study and --data."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--study", default=study, help="study file")
    parser.add_argument("--data", help=data)
    return parser


def add_leg_arguments(
    parser: argparse.ArgumentParser, legs: Sequence[str], side_by_side: bool = True
) -> None:
    """--legs and --budget; with `side_by_side`, --sequential and the hidden --arm too."""
    parser.add_argument(
        "--legs", nargs="+", choices=legs, default=list(legs), help="legs to run (report always)"
    )
    parser.add_argument("--budget", help="each leg's wall-clock budget (default: the study's)")
    if side_by_side:
        parser.add_argument(
            "--sequential", action="store_true", help="one leg after the other, not side by side"
        )
        parser.add_argument("--arm", action="store_true", help=argparse.SUPPRESS)


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that ran the benchmark, as a report quotes it."""
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *argv])


def run_main(body: Callable[[], int | None]) -> int:
    """Runs a benchmark's body; an HpoError becomes a one-line message and its exit code."""
    try:
        return body() or 0
    except HpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


# --- legs side by side -----------------------------------------------------------------------
# Two legs that share the machine side by side see the same load, the same thermal state and the
# same noisy neighbours, which two runs one after the other do not. Each leg is a command line
# started with its CPU affinity already set, so TensorFlow (and hpo's workers, which size their
# threads from `os.sched_getaffinity`) use exactly that core.


def run_pinned(arms: Mapping[str, Sequence[str]]) -> None:
    """Starts each named command on its own core, waits for all, and fails if any failed.

    Raises:
        SystemExit: Fewer cores than arms, or an arm exited non-zero.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < len(arms):
        raise SystemExit(
            f"side by side needs {len(arms)} CPU cores, found {len(cpus)}; run with --sequential"
        )
    running = {}
    for (name, command), cpu in zip(arms.items(), cpus, strict=False):
        print(f"== {name} on CPU {cpu}", flush=True)
        running[name] = subprocess.Popen(
            list(command), preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu})
        )
    codes = {name: process.wait() for name, process in running.items()}
    failed = {name: code for name, code in codes.items() if code}
    if failed:
        raise SystemExit(f"arm(s) failed, exit codes: {failed}")


def run_legs_pinned(script: str, argv: Sequence[str], legs: Sequence[str]) -> None:
    """Reruns a benchmark script once per leg (`--legs LEG --arm`), each on its own core.

    The script takes `--legs` and a hidden `--arm` flag: run only that leg, print no report.
    """
    run_pinned({leg: [sys.executable, script, *argv, "--legs", leg, "--arm"] for leg in legs})


def machine_note() -> str:
    """The report header's words on the machine: cores (one per leg) and whether a GPU."""
    return (
        f"{len(os.sched_getaffinity(0))} CPU cores (legs side by side, one core each, unless run "
        f"with --sequential), {'GPU' if gpu_capability() is not None else 'no GPU'}"
    )


# --- data --------------------------------------------------------------------------------------


def prepare(config: StudyConfig, data: str | None) -> tuple[Task, Path]:
    """The study's task and its prepared (cached) data folder, as hpo's trials read it."""
    task = study_task(config)
    return task, task.prepare(config, data, search_space(task, config.space).shared)


def prepared_study(args: argparse.Namespace) -> tuple[StudyConfig, Task, SearchSpace, Path]:
    """The study of `args.study` with `args.train_size` training examples, its task, its search
    space and its prepared data folder (from `args.data`, or the study's; read from the cache
    once it is there)."""
    config = load_study_config(args.study)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, train_size=args.train_size)
    )
    task = study_task(config)
    space = search_space(task, config.space)
    folder = call_isolated(functools.partial(task.prepare, config, args.data), space.shared)
    return config, task, space, folder


def family_defaults(task: Task, family: str, space: SearchSpace | None = None) -> dict[str, Any]:
    """A family's hand-made default trial (training defaults, the task's, the family's own),
    each value fitted into `space` (a study's narrowed one, whose prepared data may hold shorter
    sequences or a smaller vocabulary than the defaults ask for) when one is given."""
    values = {
        **TRAINING_DEFAULTS,
        **task.defaults,
        **task.families[family].DEFAULTS,
        "family": family,
    }
    if space is not None:
        for name, dist in {**space.shared, **space.families.get(family, {})}.items():
            if name in values:
                values[name] = fit_value(dist, values[name])
    return values


def train_default(job: dict[str, Any]) -> dict[str, Any]:
    """One family's model in its own process (`call_isolated`), batched, compiled and at the
    precision a trial's would be: fit `job["epochs"]` epochs, time each, score validation.

    `job` holds the study's `config`, its prepared data `folder`, the trial's `params` and the
    `precision` setting; with `build_step_state` true, the training step's state is built
    before `fit`, as a trial's is (`hpo.training.runner.build_step_state`). Returns each epoch's
    seconds, validation accuracy, the process's CPU seconds (user and kernel, all threads) and
    minor page faults while it fitted, and how often the training step was traced.
    """
    import resource

    import keras
    import numpy as np

    from hpo import metrics
    from hpo.backend import compiles_per_shape, device_name, gpu_capability, keras_backend
    from hpo.data.batching import use_width_ladder
    from hpo.precision import Precision, resolve_precision
    from hpo.training.callbacks import EpochClock
    from hpo.training.runner import (
        EVAL_BATCH,
        build_step_state,
        global_policy,
        prepare_model,
    )

    config = job["config"]
    task = study_task(config)
    params = {**job["params"], **task.build_context(job["folder"])}
    gpu = gpu_capability()
    use_width_ladder(compiles_per_shape(keras_backend(), gpu is not None))
    precision = resolve_precision(Precision(job["precision"]), params["family"], gpu)
    timer = EpochClock()

    with global_policy(precision.value):
        data = task.trial_data(job["folder"], params)
        keras.utils.set_random_seed(0)
        model, interface = prepare_model(task, params, data)
        batch = params["batch_size"]
        traces = [0]
        step = model.train_step

        # Runs once per trace of the compiled step. JAX's step also takes the state first
        # (`train_step(state, data)`), TensorFlow's and PyTorch's the batch alone.
        def counted(*args: Any) -> Any:
            traces[0] += 1
            return step(*args)

        model.train_step = counted
        before = resource.getrusage(resource.RUSAGE_SELF)
        if job.get("build_step_state"):
            build_step_state(model, data.x_train, data.y_train)
        model.fit(
            task.dataset(data.x_train, data.y_train, batch, 0, bucketed=interface.bucketed),
            validation_data=task.dataset(data.x_val, data.y_val, EVAL_BATCH, None),
            epochs=job["epochs"],
            callbacks=[timer],
            verbose=0,
        )
        after = resource.getrusage(resource.RUSAGE_SELF)
        predictions = metrics.as_probabilities(task.predict(model, data.x_val))
    return {
        "times": timer.durations,
        "val_accuracy": metrics.accuracy(data.y_val, predictions),
        "precision": precision.value,
        "device": device_name(),
        "backend": keras_backend(),
        "examples": len(data.x_train),
        "finite": bool(np.isfinite(predictions).all()),
        "cpu_user": after.ru_utime - before.ru_utime,
        "cpu_kernel": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "train_traces": traces[0],
    }


@contextlib.contextmanager
def scratch_study(config: StudyConfig, prefix: str) -> Iterator[StudyConfig]:
    """The study with its folder (data cache, store) in a temporary folder, removed after."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield dataclasses.replace(config, study_dir=scratch / config.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- a leg's budget ----------------------------------------------------------------------------


class LegClock:
    """A leg's wall-clock time across resumed runs, kept as [start, end] intervals.

    Args:
        path: The JSON file; earlier runs' intervals are read from it.
        budget: The budget in seconds.
    """

    def __init__(self, path: Path, budget: float) -> None:
        self.path, self.budget = path, budget
        self.intervals: list[list[float]] = (read_json(path) or {}).get("intervals", [])
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
        write_json(self.path, {"budget": self.budget, "intervals": self.intervals})

    def spent(self) -> float:
        """Seconds spent by every run so far, this one included."""
        self.record()
        return union_seconds(self.intervals)

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.budget - self.spent()


def stored_budget(folder: Path) -> tuple[float | None, float]:
    """A leg's budget as its last run had it (None before any), and the seconds spent."""
    clock = read_json(folder / BUDGET_FILE) or {}
    return clock.get("budget"), union_seconds(clock.get("intervals", []))


def require_budget(budget: float | None, who: str, example: str) -> float:
    """The budget, which a leg that hpo's budget ends must have.

    Raises:
        ConfigError: Neither the study file nor --budget set one.
    """
    if budget is None:
        raise ConfigError(
            f"{who} a wall-clock budget and the study file sets no 'budget'. "
            f"Pass one, for example --budget {example}."
        )
    return budget


@contextlib.contextmanager
def leg_budget(folder: Path, budget: float, label: str) -> Iterator[LegClock]:
    """The leg's clock over this run, in `folder`: running unless the budget is spent.

    Prints what is spent and left when it starts; the clock stops however the run ends.
    """
    folder.mkdir(parents=True, exist_ok=True)
    clock = LegClock(folder / BUDGET_FILE, budget)
    left = clock.left()
    if left > 0:
        clock.start()
        print(
            f"{label}: {format_duration(budget - left)} spent, {format_duration(left)} left of "
            f"{format_duration(budget)}; folder {folder}",
            flush=True,
        )
    try:
        yield clock
    finally:
        clock.stop()


# --- hpo's leg ---------------------------------------------------------------------------------


def load_hpo_study(config: StudyConfig) -> optuna.Study | None:
    """The study hpo's search made, or None if there is none yet (nothing is created)."""
    if config.storage is None and not (config.study_dir / "study.db").is_file():
        return None
    try:
        return optuna.load_study(study_name=config.name, storage=config.storage_url)
    except KeyError:
        return None


def ensemble_report(study: optuna.Study, ensemble_dir: Path) -> dict[str, Any] | None:
    """The report `hpo ensemble` wrote in `ensemble_dir` for this study, if any."""
    report = read_json(ensemble_dir / "report.json")
    return report if report and report.get("study") == study.study_name else None


def ensemble_is_current(study: optuna.Study, ensemble_dir: Path) -> bool:
    """Whether the ensemble report was written after the study's last trial finished."""
    report = ensemble_report(study, ensemble_dir)
    if report is None:
        return False
    created = datetime.datetime.fromisoformat(report["created"])
    finished = [
        t.datetime_complete.astimezone()
        for t in study.get_trials(deepcopy=False)
        if t.datetime_complete is not None
    ]
    return not finished or created >= max(finished)


def run_hpo_leg(
    config: StudyConfig, data: str | None, ensemble_dir: Path, progress: bool = False
) -> tuple[EnsembleResult, float] | None:
    """Runs (or resumes) hpo's search within the budget, then its top-K ensemble.

    Returns:
        The ensemble and the seconds it took to build, or None when the one in `ensemble_dir`
        is newer than every trial.

    Raises:
        HpoError: The search failed or left no complete trial, or the ensemble failed.
    """
    from hpo.ensemble import build_ensemble
    from hpo.search import run_search

    summary = run_search(config, data=data, progress=progress)
    if summary.stopped_by_failures:
        print(f"note: hpo's search stopped early: {summary.stopped_by_failures}")
    study = load_hpo_study(config)
    if study is None or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise HpoError(
            f"hpo completed no trial in study {config.name!r} ({config.study_dir}). "
            f"Give it a larger --budget."
        )
    if ensemble_is_current(study, ensemble_dir):
        print(f"The ensemble in {ensemble_dir} is newer than every trial; not rebuilt.")
        return None
    started = time.perf_counter()
    result = build_ensemble(config, study, top=TOP, out_dir=ensemble_dir, data=data)
    seconds = time.perf_counter() - started
    test = result.report["test"]
    print(
        f"hpo's top-{TOP} ensemble: {describe_scores(test['ensemble'])}; best member: "
        f"{describe_scores(test['best_member'])}.",
        flush=True,
    )
    return result, seconds


def state_counts(trials: Iterable[FrozenTrial]) -> tuple[int, int, int]:
    """How many trials are complete, pruned and failed."""
    states = [t.state for t in trials]
    return (
        states.count(TrialState.COMPLETE),
        states.count(TrialState.PRUNED),
        states.count(TrialState.FAIL),
    )


def result_rows(
    study: optuna.Study, ensemble_dir: Path, keys: Sequence[str], names: Sequence[str]
) -> dict[str, str]:
    """hpo's results as table rows of the three `names`: the best validation accuracy, and
    once the ensemble is built, its best member's test scores (`keys`) and its own."""
    rows = {}
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [t.value for t in trials if t.value is not None]
    if values:
        rows[names[0]] = f"{max(values):.4f}"
    report = ensemble_report(study, ensemble_dir)
    if report:
        test, members = report["test"], report["members"]
        rows[names[1]] = f"{scores(test['best_member'], keys)} (trial {members[0]['trial']})"
        rows[names[2]] = f"{scores(test['ensemble'], keys)} ({len(members)} members)"
    return rows


# --- test scores -------------------------------------------------------------------------------


class Evaluation(NamedTuple):
    """One model's predictions on the test set and their summary (`hpo.metrics.summary`)."""

    labels: np.ndarray
    probabilities: np.ndarray
    summary: dict[str, Any]


def evaluate_on_test(
    config: StudyConfig,
    data: str | None,
    task: Task,
    folder: Path,
    model: keras.Model,
    params: Mapping[str, Any] | None = None,
    interface: ModelInterface | None = None,
) -> Evaluation:
    """Reads the test set and scores one model on it: only a leg's final evaluation calls it.

    Args:
        params: The model's parameters, which say which inputs it reads (text: vocabulary and
            length); default: the inputs as stored.
        interface: What the model gives (logits, say) and how its text is batched, as hpo
            read it; default: probabilities, batches cut to their longest text.
    """
    test = task.load_test(config, data, folder)
    inputs = task.member_inputs(test.x, params) if params else test.x
    if interface is None:
        probabilities = metrics.as_probabilities(task.predict(model, inputs))
    else:
        predictions = task.predict(model, inputs, bucketed=interface.bucketed)
        probabilities = to_probabilities(predictions, interface.output)
    return Evaluation(test.y, probabilities, metrics.summary(test.y, probabilities))


def describe_scores(summary: Mapping[str, float]) -> str:
    """Test accuracy, log-loss and ECE in words, for a leg's last line."""
    return (
        f"test accuracy {summary['accuracy']:.4f}, log-loss {summary['log_loss']:.4f}, "
        f"ECE {summary['ece']:.4f}"
    )


# --- the report --------------------------------------------------------------------------------


def scores(summary: Mapping[str, float], keys: Sequence[str]) -> str:
    """A table cell of scores: `0.9053 / 0.2356 / 0.0139`."""
    return " / ".join(f"{summary[key]:.4f}" for key in keys)


def duration_or(seconds: float | None, missing: str) -> str:
    """A duration, or `missing` where there is none."""
    return missing if seconds is None else format_duration(seconds)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(
        "|" + "|".join(f" {cell} " if cell != "" else " " for cell in line) + "|" for line in lines
    )


def comparison_table(
    rows: Sequence[str], legs: Mapping[str, Mapping[str, str] | None], missing: str = "-"
) -> str:
    """One row per measure, one column per leg; a leg that never ran (None) says `not run`."""

    def cell(column: Mapping[str, str] | None, row: str) -> str:
        return "not run" if column is None else column.get(row, missing)

    return markdown_table(
        ["", *legs], ([row, *(cell(c, row) for c in legs.values())] for row in rows)
    )


def print_references(data_set: str, references: Sequence[tuple[float, str]]) -> None:
    """Published test accuracies, for reference."""
    print(f"\nPublished {data_set} test accuracies, for reference:")
    for accuracy, source in references:
        print(f"  {accuracy:.2%}  {source}")


# --- timers ------------------------------------------------------------------------------------


class Stopwatch:
    """Wall-clock and CPU seconds (this process, all threads) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        """Wall-clock and CPU seconds so far."""
        return time.perf_counter() - self.wall, time.process_time() - self.cpu
