"""Run a study: prepare the data once, then workers that each train trials in child processes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from hpo._env import VERBOSE_VAR, env_flag
from hpo._lock import exclusive_lock
from hpo._output import dropped
from hpo._stop import signals_held
from hpo.artifacts import KeepBest
from hpo.backend import (
    Backend,
    backend_environment,
    callers_environment,
    claim_backend,
    gpu_assignment,
    keras_backend,
    resolve_backend,
    visible_gpus,
)
from hpo.budget import BudgetClock, format_duration, spent_seconds
from hpo.command_options import own_artifacts
from hpo.config import config_to_dict
from hpo.contract import Attr
from hpo.cost import Priced, calibration, cheapest_epoch
from hpo.data import provenance
from hpo.disk import check_log_file, has_room, make_study_folder, raise_if_study_full
from hpo.errors import (
    ConfigError,
    DiskFull,
    HpoError,
    SearchStopped,
    TrialProcessDied,
    TrialTimedOut,
)
from hpo.models import is_builtin
from hpo.repeats import used_up_note
from hpo.scratch import sweep_trial_scratch
from hpo.search.identity import WorkerIdentity
from hpo.search.overrun import trial_limit
from hpo.search.progress import FINISHED, Progress, larger_budget
from hpo.search.recovery import (
    dead_workers_way_out,
    raise_keyboard_interrupt_on_sigterm,
    requeue,
    retire_retries,
    sweep_dead_local_trials,
)
from hpo.search.turns import RUN_LOCK_NAME, SearchRun, StartTurn, lock_file
from hpo.store import open_artifact_store, open_storage, redact_url, redacted_repr
from hpo.study import (
    KERAS_SETTINGS,
    best_trial,
    check_settings,
    check_space_drift,
    create_study,
    default_params,
    enqueue_defaults,
    keras_settings_of,
    sample_params,
    sampler_seed,
    search_space,
)
from hpo.tasks import study_task
from hpo.training.isolation import (
    call_isolated,
    die_with,
    process_identity,
    start_method,
    start_process,
)
from hpo.training.runner import (
    EstimateJob,
    TrialJob,
    estimate_epochs,
    run_trial,
    scratch_folder,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from hpo.config import StudyConfig
    from hpo.study import SearchSpace
    from hpo.tasks import Task


__all__ = ["INTERRUPTED", "SearchSummary", "run_search", "run_worker"]

# Why a trial the search was stopped in failed; it is queued again (`_objective`).
INTERRUPTED = "interrupted: the search was stopped; queued again for the next run"


@dataclass(frozen=True)
class SearchSummary:
    """What a search run leaves behind."""

    study_name: str
    storage_url: str
    finished: int
    failed: int
    best_number: int | None
    best_value: float | None
    stopped_by_failures: str | None = None
    spent_seconds: float = 0.0
    budget: float | None = None
    objective: str = "val_accuracy"

    def __repr__(self) -> str:
        return redacted_repr(self)


def _full_disk_named(search: Callable[..., SearchSummary]) -> Callable[..., SearchSummary]:
    """`search`, where a full disk under the study (its database, its files) is DiskFull
    naming it: SQLite's "database or disk is full" came as Optuna's StorageInternalError,
    whose message blames the data ("e.g. exceeding max length"), with a traceback."""

    @functools.wraps(search)
    def named(config: StudyConfig, *args: Any, **kwargs: Any) -> SearchSummary:
        try:
            return search(config, *args, **kwargs)
        except Exception as exc:
            raise_if_study_full(exc, config)
            raise

    return named


@_full_disk_named
@callers_environment()
def run_search(
    config: StudyConfig, data: str | None = None, progress: bool = True, quiet: bool = False
) -> SearchSummary:
    """Runs (or resumes) a study until it holds `config.n_trials` finished trials.

    Its processes get the study's backend; this process's `os.environ` is as it was when the
    search returns (`hpo.backend.callers_environment`).

    Args:
        config: The study configuration.
        data: Overrides where the data is read from (`--data`).
        progress: Show a progress bar (on stderr, where the process has one).
        quiet: The other workers' processes print nothing either (their trial lines and
            TensorFlow's start-up notices; Python's warnings and errors still show), where the
            caller silences this process's stdout (`Tuner.search(verbose=0)`). Default False.

    Returns:
        Counts and the best trial after the run.

    Raises:
        HpoError: Invalid configuration, data or storage; raised before any trial runs.
    """
    start_method()  # a bad $HPO_START_METHOD is refused before the data are prepared
    # Every process of the study loads Keras with its backend, the user's modules included.
    backend = resolve_backend(config.training.backend)
    try:
        claim_backend(backend)
    except ConfigError as exc:
        # From Python, Keras loaded first (on keras.json's backend, say): the study file may
        # name that one instead.
        loaded = keras_backend()
        raise ConfigError(
            f'{exc} Or, to search on {loaded}, set backend = "{loaded}" under [training] in '
            f"the study file."
        ) from None
    config = dataclasses.replace(
        config, training=dataclasses.replace(config.training, backend=backend)
    )
    task = study_task(config)
    space = search_space(task, config.space)
    if data or config.data.path:
        # A path that is given is checked before the study's folder is made in it; one found
        # otherwise (the environment, the study's record, a download) when it is resolved below.
        provenance.check_study_outside(config.study_dir, config.name, task.locate(config, data))
    make_study_folder(config.study_dir)
    # An unreachable artifact bucket is an error now, not a failure in every trial.
    open_artifact_store(config.artifact_location)
    storage = open_storage(config.storage_url, create=True)
    study = create_study(config, storage)
    with SearchRun(lock_file(config.storage_url, config.study_dir, RUN_LOCK_NAME)) as alone:
        return _search(config, data, progress, quiet, task, space, backend, study, alone=alone)


def _search(
    config: StudyConfig,
    data: str | None,
    progress: bool,
    quiet: bool,
    task: Task,
    space: SearchSpace,
    backend: Backend,
    study: optuna.Study,
    *,
    alone: bool,
) -> SearchSummary:
    """`run_search` once the study exists; `alone`: no other run of this machine is live."""
    # A copy of the study's database without its artifacts/ would store new checkpoints
    # beside it while its trials' stay in the original's folder (which gc then mistakes).
    config = own_artifacts(config, study, writes=True)
    started = bool(study.get_trials(deepcopy=False, states=_STARTED))
    if started or not alone:
        # Started trials bind the study's settings; so does a run of this machine that is
        # preparing it (no trial started yet), which recorded its own.
        check_settings(study, config)
    if not started:
        # No trial has run: this run's settings are the study's (a run that stopped on a typo
        # before any trial binds nothing). Recorded now, so that a run started beside this one
        # with other settings (another backend) finds them when it checks again below.
        _record_settings(study, config)
    for note in check_space_drift(study, space):
        print(f"note: {note}")
    # One run at a time: two that found the same dead worker's trial each queued it again.
    with exclusive_lock(lock_file(config.storage_url, config.study_dir)):
        swept = sweep_dead_local_trials(study)
    if swept:
        print(f"Trials {swept} were left RUNNING by a worker that died; marked FAIL and re-queued.")
    sweep_trial_scratch(config.study_dir, study)
    if config.enqueue_defaults:
        enqueue_defaults(study, task, space)
    finished = _count(study, FINISHED)
    remaining = config.n_trials - finished
    if remaining <= 0:
        print(
            f"Study {config.name!r} already holds {finished} finished trials "
            f"(n_trials={config.n_trials}); nothing to do. Raise n_trials to run more: hpo "
            f"search --n-trials N (from Python, n_trials=N; hpo.Tuner's max_trials=N)."
        )
        _retire_retries(study, config)
        return _summary(study, config)
    # Trials other workers are running count: a worker joining a study they are about to
    # fill ran one more (n_trials + 1 finished). Those of workers whose heartbeat is stale
    # (dead on another machine) are failed and queued again first, as Optuna does.
    optuna.storages.fail_stale_trials(study)
    running = _count(study, (TrialState.RUNNING,))
    if remaining - running <= 0:
        print(
            f"Study {config.name!r} holds {finished} finished trials and {running} that other "
            f"workers are running (n_trials={config.n_trials}); nothing to start. Pass "
            f"--n-trials to run more; {dead_workers_way_out(study)}"
        )
        return _summary(study, config)
    remaining -= running
    if config.budget is not None and spent_seconds(study) >= config.budget:
        print(
            f"Study {config.name!r} has spent its budget of {format_duration(config.budget)} "
            f"({format_duration(spent_seconds(study))}); nothing to do. Give it "
            f"{larger_budget()} to search further."
        )
        return _summary(study, config)
    with BudgetClock(study, config.budget) as clock:
        run = clock.run_index()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        source = provenance.locate_source(task, config, data, study)
        provenance.check_study_outside(config.study_dir, config.name, source)
        print(f"Preparing data for task {task.name!r} from {source} ...", flush=True)
        recorded = provenance.recorded_source(study)
        if recorded is not None and Path(recorded).resolve() != source.resolve():
            print(
                f"note: the study's search read its data from {recorded}; this run reads "
                f"{source}, as given now (--data, the environment or the study file's data.path), "
                f"and goes on only if they are the same data.",
                flush=True,
            )
        log_path = config.study_dir / "logs" / "prepare.log"
        check_log_file(log_path)
        data_folder = call_isolated(
            functools.partial(task.prepare, config, str(source)),
            space.shared,
            log_path=log_path,
            relay_warnings=True,
        )
        fingerprint = task.fingerprint(data_folder)
        provenance.check_fingerprint(study, fingerprint, source, "resuming the search")
        given = provenance.source_given(study, config, data, source)
        provenance.record(study, fingerprint, source, given=given)
        study.set_user_attr("task", config.task)
        # Again, now that the data are ready: a run started beside this one may have recorded
        # other settings (another backend, another artifact folder) since this one checked.
        config = own_artifacts(config, study, writes=True)
        check_settings(study, config)
        _record_settings(study, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([config.training.objective])
        deadline = clock.deadline()
        # Building each family's default model (in a child) catches a model hpo cannot train
        # (an unmapped hypermodel parameter, an output that does not fit the task, a model that
        # cannot be saved) before any trial, and prices the cheapest epoch.
        users = any(not is_builtin(f) for f in task.families.values())
        gpus = visible_gpus()
        defaults: list[Priced] = []
        if deadline is not None or users:
            checked = _check_defaults(
                config, study, task, space, data_folder, clock, gpus[0] if gpus else None
            )
            if checked is None:
                return _summary(study, config)
            defaults = checked
        # On GPUs: `trials_per_gpu` workers per GPU, each worker's trials seeing one GPU.
        per_gpu = config.trials_per_gpu
        default_workers = len(gpus) * per_gpu if gpus else 1
        workers = min(config.workers or default_workers, remaining)
        # The cores this process may run on (a container's or taskset's share), not the machine's.
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        gpu_of = gpu_assignment(gpus, per_gpu, workers)

        budget = (
            f"; budget {format_duration(config.budget)}, {format_duration(clock.spent())} spent, "
            f"{format_duration(clock.left())} left"
            if config.budget is not None
            else ""
        )
        devices = f" on {len(gpus)} GPU(s), {per_gpu} trial(s) each" if gpus else ""
        to_go = "more until the budget ends" if config.trial_limit is None else f"{remaining} to go"
        print(
            f"Study {config.name!r}: {finished} finished, {to_go}, {workers} "
            f"worker(s){devices} on {backend.value}{budget}; storage "
            f"{redact_url(config.storage_url)}",
            flush=True,
        )
        context = multiprocessing.get_context("spawn")
        job = pickle.dumps(
            (config, data_folder, threads, deadline, process_identity(os.getpid()), defaults)
        )
        helpers = [
            context.Process(
                target=_worker_process,
                args=(job, sampler_seed(config, run, i), gpu_of[i], quiet),
                name=f"hpo-worker-{i}",
            )
            for i in range(1, workers)
        ]
        for helper in helpers:
            start_process(helper)
        try:
            stopped = run_worker(
                config,
                data_folder,
                threads,
                deadline=deadline,
                seed=sampler_seed(config, run, 0),
                task=task,
                space=space,
                progress=progress,
                clock=clock,
                gpu=gpu_of[0],
                defaults=defaults,
            )
        except KeyboardInterrupt:
            for helper in helpers:
                if helper.pid is not None and helper.is_alive():
                    os.kill(helper.pid, signal.SIGTERM)
            raise
        finally:
            for helper in helpers:
                helper.join()
    _retire_retries(study, config)
    if (used_up := used_up_note(study.get_trials(deepcopy=False))) is not None:
        print(used_up, flush=True)
    if clock.slept and config.budget is not None:
        # The workers' deadline was set at the start: what the sleep took is left for a rerun.
        print(
            f"The machine slept (or its clock was set) for {format_duration(clock.slept)} during "
            f"this run: the budget does not count that time, and what is left of it is spent by "
            f"running the same command again.",
            flush=True,
        )
    return _summary(study, config, stopped_by_failures=stopped)


def _check_defaults(
    config: StudyConfig,
    study: optuna.Study,
    task: Task,
    space: SearchSpace,
    data_folder: Path,
    clock: BudgetClock,
    gpu: str | None = None,
) -> list[Priced] | None:
    """Builds every family's default model and checks that one epoch of the cheapest default
    trial fits in the budget left.

    Returns:
        The default models as the clock prices them, for the workers (see `cap_epochs`); None
        when the cheapest does not fit, after telling a study with finished trials (resumed,
        its budget spent by them) that there is nothing to do.

    Raises:
        ConfigError: It does not fit and no trial has finished: the budget is too small.
    """
    job = EstimateJob(
        config=config,
        data_folder=data_folder,
        params=default_params(task, space),
    )
    log_path = config.study_dir / "logs" / "check.log"
    check_log_file(log_path)
    env = backend_environment(_backend(config), gpu)
    defaults = call_isolated(estimate_epochs, job, log_path=log_path, env=env, relay_warnings=True)
    cheapest = cheapest_epoch(defaults, calibration(study.get_trials(deepcopy=False)))
    left = clock.left()
    if cheapest is None:
        # No default model can be costed before it trains (subclassed models, say): the
        # trials measure their own epochs, and the epoch clock keeps them in the budget.
        return defaults
    if config.budget is None or cheapest <= left:
        return defaults
    if study.get_trials(deepcopy=False, states=FINISHED):
        print(
            f"Study {config.name!r} has {format_duration(left)} of its budget left, less than "
            f"one epoch of its cheapest default trial ({format_duration(cheapest)}); nothing to "
            f"do. Give it {larger_budget()} to search further."
        )
        return None
    needed = config.budget - left + 3 * cheapest
    setup = time.time() - clock.started
    raise ConfigError(
        f"the budget is too small: preparing the data and costing the default models took "
        f"{_seconds(setup)} of 'budget' = {_seconds(config.budget)}, leaving "
        f"{_seconds(max(0.0, left))}, and one epoch of the cheapest default trial is estimated "
        f"at {_seconds(cheapest)}. Give a budget with room for a few epochs, for example "
        f"{_budget_of(math.ceil(needed / 60))}."
    )


def _budget_of(minutes: int) -> str:
    """A budget of `minutes` as the caller gives it (`hpo.search.progress.larger_budget`)."""
    from hpo.cli import in_command

    return f"--budget {minutes}m" if in_command() else f'budget="{minutes}m"'


def _seconds(seconds: float) -> str:
    """A duration for an error message: tenths of a second below ten seconds."""
    return f"{seconds:.1f}s" if seconds < 10 else format_duration(seconds)


def run_worker(
    config: StudyConfig,
    data_folder: Path,
    threads: int,
    *,
    deadline: float | None = None,
    seed: int | None = None,
    task: Task | None = None,
    space: SearchSpace | None = None,
    progress: bool = False,
    clock: BudgetClock | None = None,
    gpu: str | None = None,
    defaults: Sequence[Priced] = (),
) -> str | None:
    """Runs trials until the study holds enough, the budget or timeout ends, or too many fail.

    Args:
        deadline: Unix time at which the study's budget ends; trials are fitted into it.
        seed: This worker's sampler seed (see `hpo.study.sampler_seed`).
        clock: The run's budget clock, for the progress display.
        gpu: The GPU this worker's trials see (`CUDA_VISIBLE_DEVICES`), or None.
        defaults: The study's default models as the clock prices them (`_check_defaults`):
            the cheapest, under the calibration of the moment, sets how many epochs the
            per-trial cap can promise, and whether anything still fits when trials keep being
            estimated not to.

    Returns:
        None, or the reason the worker stopped after `max_failures` consecutive failures.
    """
    task = task or study_task(config)
    space = space or search_space(task, config.space)
    storage = open_storage(config.storage_url, create=False, wait_to_open=True)
    study = create_study(config, storage, seed=seed)
    bar = None
    # tqdm writes to sys.stderr, which a process started without one (`2>&-`, pythonw) lacks.
    progress = progress and sys.stderr is not None
    # In a notebook the trial lines (stdout) and a bar on stderr alternate streams, and each
    # switch starts a new output: a new bar for every trial. There the bar shares stdout.
    shown_on = sys.stdout if _kernel_stream(sys.stdout) else sys.stderr
    if progress and clock is not None and config.budget is not None:
        # With a budget, time is what runs out: the bar shows the budget spent.
        bar = tqdm(
            file=shown_on,
            total=round(config.budget),
            initial=min(round(clock.spent()), round(config.budget)),
            desc=config.name,
            bar_format="{desc}: {percentage:3.0f}% of the budget |{bar}| {postfix}",
        )
    elif progress:
        bar = tqdm(
            file=shown_on,
            total=config.trial_limit,
            initial=_count(study, FINISHED),
            unit="trial",
            desc=config.name,
        )

    def cheapest() -> float | None:
        return cheapest_epoch(defaults, calibration(study.get_trials(deepcopy=False)))

    stopper = Progress(config, bar, clock, cheapest=cheapest, deadline=deadline)
    timeout = config.timeout
    if deadline is not None:
        left = max(0.0, deadline - time.time())
        timeout = left if timeout is None else min(timeout, left)
    said = _TrialFailureLines()
    # The logger that writes them (a logger's filters see only its own records).
    optuna_log = logging.getLogger("optuna.study._optimize")
    if not env_flag(VERBOSE_VAR):
        optuna_log.addFilter(said)
    # Whether the study needs this worker's first trial, decided in turn as after each trial.
    turn = StartTurn(lock_file(config.storage_url, config.study_dir), config.n_trials)
    try:
        if not turn.needs_another(study):
            return None
        study.optimize(
            functools.partial(
                _objective,
                turn=turn,
                config=config,
                task=task,
                space=space,
                data_folder=data_folder,
                threads=threads,
                deadline=deadline,
                gpu=gpu,
                defaults=defaults,
            ),
            timeout=timeout,
            # The turn last: the collection after a trial does not keep the others waiting.
            callbacks=[stopper, *_collectors(config), turn],
            catch=(Exception,),
            gc_after_trial=False,
        )
    finally:
        turn.give_back()
        optuna_log.removeFilter(said)
        if bar is not None:
            bar.close()
    if stopper.fatal is not None:
        raise SearchStopped(stopper.config_error or "", stopper.fatal)
    if stopper.config_error is not None:
        raise ConfigError(stopper.config_error)
    if stopper.disk_full is not None:
        raise DiskFull(f"search stopped, the disk is still full: {stopper.disk_full}")
    return stopper.failure_stop


class _TrialFailureLines(logging.Filter):
    """Drops Optuna's "Trial N failed with ..." warnings, whose traceback is this process's
    (the call that waited for the trial's process): hpo's line for the trial gives the error
    and its log, which holds the trial's own traceback. `HPO_VERBOSE=1` keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Trial ") and " failed with " in message)


def _collectors(config: StudyConfig) -> list[KeepBest]:
    # `keep_checkpoints = N`: the disk stays bounded as the study goes (see `hpo.artifacts`).
    return [] if config.keep_checkpoints is None else [KeepBest(config, config.keep_checkpoints)]


def _objective(trial: optuna.Trial, *, turn: StartTurn, **settings: Any) -> float:
    """`_trial`, with an interruption recorded on the trial wherever it lands: while it
    samples its parameters (a signal right after the last trial ended) as while it trains.
    `trial` exists (RUNNING): the other workers may decide whether to start one."""
    turn.give_back()
    try:
        return _trial(trial, **settings)
    except KeyboardInterrupt:
        # Ctrl-C, a notebook's interrupt, or SIGTERM (which the search turns into this): queued
        # again, as a trial whose worker was killed is, for the next run to train.
        # However often: interrupting it says nothing of its parameters. The search's process
        # sends its helpers SIGTERM on Ctrl-C, which reaches a helper here, after the SIGINT
        # of the same Ctrl-C: held, or it cut this record off (a trial failed without its
        # reason, and not queued again).
        with signals_held():
            if trial.params:
                requeue(trial.study, trial._trial_id, limit=None)
            trial.set_user_attr(Attr.FAIL_REASON, INTERRUPTED)
        raise
    except optuna.TrialPruned:
        raise
    except Exception as exc:
        # An error of the worker's own (not the trial's process), which `_trial` records none
        # for: named, not left for the progress line to call "unknown error".
        with contextlib.suppress(Exception):  # a store that fails now: Optuna logs the error
            if Attr.FAIL_REASON not in trial.user_attrs:
                trial.set_user_attr(Attr.FAIL_REASON, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _read_params_back(trial)


def _read_params_back(trial: optuna.Trial) -> None:
    """Gives `trial` the parameters its process sampled into the store. Optuna logs a trial
    with this process's copy of it ("Trial 3 finished with value: ... and parameters: ..."),
    which held only what was sampled here (the family) and no parameter of the model's."""
    with contextlib.suppress(Exception):  # a store that fails now: the line shows fewer
        trial._cached_frozen_trial = trial.storage.get_trial(trial._trial_id)


def _trial(
    trial: optuna.Trial,
    *,
    config: StudyConfig,
    task: Task,
    space: SearchSpace,
    data_folder: Path,
    threads: int,
    deadline: float | None,
    gpu: str | None = None,
    defaults: Sequence[Priced] = (),
) -> float:
    started = time.perf_counter()
    WorkerIdentity.current().record(trial)
    try:
        sample_params(trial, task, space)
    except ValueError as exc:
        # A queued trial (enqueue_trial, another worker's, an older run's) whose fixed value
        # is outside this study's space: Optuna refuses it while the trial asks for it.
        trial.set_user_attr(
            Attr.FAIL_REASON,
            f"queued with a value outside the study's space ({exc}); widen [space] in the "
            f"study file, or queue values from it",
        )
        raise
    ratios = calibration(trial.study.get_trials(deepcopy=False))
    cheapest = cheapest_epoch(defaults, ratios)
    job = TrialJob(
        config=config,
        trial_id=trial._trial_id,
        data_folder=data_folder,
        threads=threads,
        deadline=deadline,
        cost_ratios=ratios,
        cheapest=cheapest,
    )
    log_path = config.study_dir / "logs" / f"trial-{trial.number:05d}.log"
    # The trial keeps to its cap and the budget by itself; this ends one that hangs.
    limit = trial_limit(config, deadline, cheapest)
    try:
        # Stops the search, as a folder that cannot be written does: every trial would fail.
        check_log_file(log_path)
        env = backend_environment(_backend(config), gpu, threads)
        return call_isolated(
            run_trial,
            job,
            log_path=log_path,
            env=env,
            deadline=None if limit is None else limit.at,
        ).value
    except optuna.TrialPruned as exc:
        trial.set_user_attr(Attr.PRUNE_REASON, str(exc))
        raise
    except FloatingPointError as exc:
        # Diverged (a learning rate too high for the model): an outcome of its values, not a
        # fault. Pruned, TPE ranks it among the worst and samples elsewhere (a failed trial it
        # leaves out, and would sample the same values again), and no run of such trials stops
        # the search as failures in a row would.
        reason = f"diverged: {exc}"
        trial.set_user_attr(Attr.PRUNE_REASON, reason)
        raise optuna.TrialPruned(reason) from exc
    except DiskFull as exc:
        trial.set_user_attr(Attr.FAIL_REASON, f"{type(exc).__name__}: {exc}")
        # Room may have come back (another trial's scratch files removed): then the search goes
        # on; a disk that stays full would fail every trial, so it stops the search.
        if not has_room(exc):
            trial.set_user_attr(Attr.DISK_FULL, str(exc))
        raise
    except ConfigError as exc:
        # A model hpo cannot train (found only while a trial builds it): stop the search with
        # the reason instead of failing trial after trial.
        trial.set_user_attr(Attr.FAIL_REASON, f"{type(exc).__name__}: {exc}")
        trial.set_user_attr(Attr.CONFIG_ERROR, str(exc))
        if isinstance(exc, SearchStopped):
            trial.set_user_attr(Attr.FATAL, exc.kind)
        raise
    except TrialProcessDied as exc:
        if isinstance(exc, TrialTimedOut) and limit is not None:
            trial.set_user_attr(Attr.FAIL_REASON, limit.reason(str(exc)))
        else:
            trial.set_user_attr(Attr.FAIL_REASON, f"{type(exc).__name__}: {exc}")
        raise
    except Exception as exc:
        if not data_folder.is_dir():
            # Deleted while the search ran (a cache cleaned up): every later trial would fail
            # the same way, so the search stops at the first.
            gone = (
                f"the study's prepared data ({data_folder}) went away while the search ran "
                f"({type(exc).__name__}: {exc}). Run the search again: it prepares them anew "
                f"and goes on."
            )
            trial.set_user_attr(Attr.FAIL_REASON, gone)
            trial.set_user_attr(Attr.CONFIG_ERROR, gone)
            raise ConfigError(gone) from exc
        trial.set_user_attr(Attr.FAIL_REASON, f"{type(exc).__name__}: {exc} (log: {log_path})")
        raise
    finally:
        # The trial's process has ended (`call_isolated` ends it however it leaves): one that
        # died, or was stopped by Ctrl-C or SIGTERM as it unwound, left its scratch folder (a
        # checkpoint nothing reads; its retry runs under another number).
        shutil.rmtree(scratch_folder(config, trial.number), ignore_errors=True)
        trial.set_user_attr(Attr.TRIAL_SECONDS, round(time.perf_counter() - started, 1))


def _worker_process(job: bytes, seed: int, gpu: str | None, quiet: bool) -> None:
    with contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(dropped(1))
        # Sent as bytes, as unpickling the config (its hypermodel) imports Keras, whose
        # TensorFlow writes its start-up notices to descriptor 2: dropped while quiet.
        with dropped(2) if quiet else contextlib.nullcontext():
            config, data_folder, threads, deadline, parent, defaults = pickle.loads(job)
        _run_helper(config, data_folder, threads, deadline, seed, gpu, parent, defaults)


def _run_helper(
    config: StudyConfig,
    data_folder: Path,
    threads: int,
    deadline: float | None,
    seed: int,
    gpu: str | None,
    parent: tuple[int, str | None],
    defaults: Sequence[Priced],
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    raise_keyboard_interrupt_on_sigterm()
    # A helper whose search process is killed stops too: SIGTERM fails its running trial
    # (see `raise_keyboard_interrupt_on_sigterm`), and its trial process dies with it.
    die_with(parent, signal.SIGTERM)
    try:
        run_worker(
            config, data_folder, threads, deadline=deadline, seed=seed, gpu=gpu, defaults=defaults
        )
    except KeyboardInterrupt:
        sys.exit(130)
    except HpoError as exc:  # the study storage gone for good, say: the reason, not a traceback
        print(f"error: worker {WorkerIdentity.current()}: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def _retire_retries(study: optuna.Study, config: StudyConfig) -> None:
    """`retire_retries`, saying which."""
    retired = retire_retries(study, config.n_trials)
    if retired:
        print(
            f"Trials {sorted(retired)}, queued to retry failed trials {sorted(retired.values())}, "
            f"were not run: the study holds its n_trials={config.n_trials} finished trials "
            f"without them. Marked FAIL."
        )


def _backend(config: StudyConfig) -> Backend:
    return resolve_backend(config.training.backend)


def _count(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


# The states of trials that started: a study holding any trained under its recorded settings.
_STARTED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _record_settings(study: optuna.Study, config: StudyConfig) -> None:
    """Records the run's trial-defining settings in the study (`check_settings` reads them)."""
    study.set_user_attr("hpo_config", config_to_dict(config))
    if (settings := keras_settings_of(config)) is not None:
        study.set_user_attr(KERAS_SETTINGS, settings)


def _summary(
    study: optuna.Study, config: StudyConfig, stopped_by_failures: str | None = None
) -> SearchSummary:
    best = best_trial(study)
    return SearchSummary(
        spent_seconds=spent_seconds(study),
        budget=config.budget,
        study_name=config.name,
        storage_url=config.storage_url,
        finished=_count(study, FINISHED),
        failed=_count(study, (TrialState.FAIL,)),
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        stopped_by_failures=stopped_by_failures,
        objective=config.training.objective,
    )


def _kernel_stream(stream: object) -> bool:
    """Whether `stream` is a Jupyter kernel's (ipykernel's `OutStream`), which a notebook
    shows as outputs, one per run of writes to the same stream."""
    return type(stream).__module__.startswith("ipykernel.")
