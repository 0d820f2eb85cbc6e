"""How to train one trial: build, fit, checkpoint, record. Runs inside the trial's own process."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import resource
import shutil
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from hpo import metrics
from hpo._exception_text import exception_text
from hpo.backend import (
    compiles_per_shape,
    configure_threads,
    device_name,
    gpu_capability,
    keras_backend,
)
from hpo.budget import cap_epochs, format_duration
from hpo.config import PrunerKind
from hpo.contract import Attr, keras_cause, load_keras_file, store_trial_artifacts
from hpo.cost import Calibration, CostFeatures, Priced, example_work, family_rates
from hpo.data.batching import use_width_ladder
from hpo.data.in_memory import is_targets
from hpo.data.inputs import model_inputs, tensors
from hpo.directions import DEFAULT_OBJECTIVE, Direction, known_direction
from hpo.disk import raise_if_study_full, writing
from hpo.errors import ConfigError, HpoError, ReturnsObjective, kerastuner_signals
from hpo.models import is_builtin
from hpo.models.external import register_user_objects, uses_user_classes
from hpo.precision import Precision, global_policy, resolve_precision
from hpo.repeats import repeat_reason, trained_before
from hpo.scratch import scratch_folder as temporary_folder
from hpo.scratch import trial_scratch
from hpo.space import suggest
from hpo.store import open_artifact_store, open_storage
from hpo.study import TRAINING_DEFAULTS, create_study, search_space
from hpo.tasks import study_task
from hpo.training.interface import (
    PROBE_ROWS,
    Labels,
    ModelInterface,
    Output,
    Padding,
    check_padding,
    compile_model,
    member_model,
    model_precision,
    read_interface,
    tolerance,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    import keras

    from hpo.config import StudyConfig, TrainingConfig
    from hpo.tasks import Task
    from hpo.tasks._base import TrialData
    from hpo.training.callbacks import EpochClock, EpochLogs

__all__ = [
    "EstimateJob",
    "TrialJob",
    "TrialResult",
    "build_step_state",
    "estimate_epochs",
    "fit_best_epoch",
    "fresh_scratch_folder",
    "run_trial",
    "scratch_folder",
]

_log = logging.getLogger(__name__)
# Training examples the training step's state is built on before `fit` (`build_step_state`).
_STEP_STATE_ROWS = 2

CHECKPOINT_NAME = "training.keras"  # the best epoch as ModelCheckpoint writes it
MEMBER_NAME = "best.keras"  # the same model without optimizer state, as stored
PREDICTIONS_NAME = "val_predictions.npy"
# Validation and prediction batches: larger than training ones, which only costs memory.
EVAL_BATCH = 512
# Validation rows a user's model is compared on before and after a save and load.
ROUND_TRIP_ROWS = 4


@dataclass(frozen=True)
class TrialJob:
    """What a trial process needs: the study, which trial, and where its data is.

    Attributes:
        config: The study's configuration.
        trial_id: Storage id of the trial (already RUNNING, parameters sampled).
        data_folder: The prepared data (see `Task.prepare`).
        threads: CPU threads TensorFlow may use.
        deadline: Unix time at which the study's budget ends, or None.
        cost_ratios: Calibration of the cost estimate from earlier trials (`hpo.cost`).
        cheapest: Estimated seconds of one epoch of the study's cheapest default model under
            `cost_ratios`, or None: how many epochs the per-trial cap can promise any trial.
    """

    config: StudyConfig
    trial_id: int
    data_folder: Path
    threads: int = 0
    deadline: float | None = None
    cost_ratios: Calibration = field(default_factory=lambda: Calibration())
    cheapest: float | None = None


@dataclass(frozen=True)
class TrialResult:
    """A completed trial's outcome; pruned and failed trials raise instead."""

    value: float


def run_trial(job: TrialJob) -> TrialResult:
    """Trains one trial and stores its best checkpoint and validation predictions.

    Reports the validation metric after every epoch so the pruner can stop the trial, and
    records on the trial: artifact ids, checkpoint checksum, validation accuracy and loss,
    epochs, parameter count, training seconds, peak memory and family.

    Raises:
        optuna.TrialPruned: The pruner or the chance-level check stopped the trial.
        FloatingPointError: The loss became NaN or infinite.
        SearchStopped: The user's code raised KerasTuner's `FatalError` (and its
            `FailedTrialError` prunes the trial).
    """
    config = job.config
    storage = open_storage(config.storage_url, create=False, heartbeat=False, wait_to_open=True)
    # A hypermodel samples its parameters here, as it builds: each trial's process seeds the
    # sampler anew, or every trial would draw the same random startup values.
    seed = int(np.random.SeedSequence([config.sampler.seed, job.trial_id]).generate_state(1)[0])
    study = create_study(config, storage, load_only=True, seed=seed)
    # Optuna's cached storage knows a trial only once it has read the study's trials; a trial
    # whose first parameter is a fixed (enqueued) one would otherwise fail to record it.
    study.get_trials(deepcopy=False)
    trial = optuna.Trial(study, job.trial_id)
    work = fresh_scratch_folder(config, trial.number)
    try:
        # KerasTuner's signals from the user's training loop, callback or metric.
        with kerastuner_signals(f"trial {trial.number}: your code"):
            return train_trial(
                trial,
                config,
                job.data_folder,
                work,
                deadline=job.deadline,
                cost_ratios=job.cost_ratios,
                threads=job.threads,
                cheapest=job.cheapest,
            )
    except Exception as exc:
        # Named here: the error the search process receives keeps no cause (it is pickled),
        # and Optuna's for a database on a full disk blames the data.
        raise_if_study_full(exc, config)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scratch_folder(config: StudyConfig, number: int) -> Path:
    """Where trial `number` keeps its checkpoint until it is uploaded; removed when it ends."""
    return trial_scratch(config.study_dir, number)


def fresh_scratch_folder(config: StudyConfig, number: int) -> Path:
    """Trial `number`'s scratch folder (`scratch_folder`), made empty: an earlier run of the
    trial's (a process killed) may have left one.

    Raises:
        HpoError: A symbolic link or a file is in its place. hpo makes only folders there, so
            it is not hpo's to remove, and a link's target is never deleted or written into.
    """
    work = scratch_folder(config, number)
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        what = f"a symbolic link (to {work.readlink()})" if work.is_symlink() else "a file"
        raise HpoError(
            f"trial {number}'s scratch folder {work} is {what}, which hpo did not make (it "
            f"makes a folder there) and neither deletes nor follows. Move it aside, mv {work} "
            f"{work}.moved; this trial has failed, and the search goes on with the next."
        )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def train_trial(
    trial: optuna.Trial,
    config: StudyConfig,
    data_folder: Path,
    work: Path,
    *,
    deadline: float | None = None,
    cost_ratios: Calibration | None = None,
    threads: int = 0,
    cheapest: float | None = None,
) -> TrialResult:
    """Trains a trial whose parameters are already sampled, in this process.

    Args:
        trial: The running trial (its `params` hold every sampled parameter).
        config: The study's configuration.
        data_folder: The prepared data.
        work: An empty scratch folder for the checkpoint before it is uploaded.
        deadline: Unix time at which the study's budget ends; the trial does not start if its
            first epoch is estimated to end later, and stops before an epoch that would.
        cost_ratios: Calibration of the epoch-time estimate (`hpo.cost.calibration`).
        threads: CPU threads of the backend (0 leaves its default; see `trial_process`).
        cheapest: Estimated seconds per epoch of the study's cheapest default model: where
            the per-trial cap holds fewer than `patience + 1` of those, a trial needs room for
            as many as it holds (at least one) to start, not for `patience + 1`.
    """
    with trial_process(config, trial.params["family"], threads):
        return _train_trial(trial, config, data_folder, work, deadline, cost_ratios, cheapest)


@contextlib.contextmanager
def trial_process(config: StudyConfig, family: str, threads: int = 0) -> Iterator[Precision]:
    """This process set up to train as a trial's does, inside: the backend's CPU threads
    (`threads`, before it first computes; 0 leaves its default), the batch widths it compiles
    best, and Keras's dtype policy the family's precision (restored after). Trials, `--refit`,
    cross-fitting and the distilled student all train inside one."""
    configure_threads(threads)
    use_width_ladder(compiles_per_shape(keras_backend(), gpu_capability() is not None))
    precision = resolve_precision(config.training.precision, family, gpu_capability())
    with global_policy(precision.value):
        yield precision


def _train_trial(
    trial: optuna.Trial,
    config: StudyConfig,
    data_folder: Path,
    work: Path,
    deadline: float | None,
    cost_ratios: Calibration | None,
    cheapest: float | None = None,
) -> TrialResult:
    import keras

    from hpo.training.callbacks import (
        EpochClock,
        PruningCallback,
        trial_tensorboards,
        user_schedules_learning_rate,
        variable_bytes,
    )

    started = time.time()
    task = study_task(config)
    params = {**trial.params, **task.build_context(data_folder)}
    family = params["family"]
    data = task.trial_data(data_folder, params)
    keras.utils.set_random_seed(config.sampler.trial_seed(trial.number))

    @functools.cache
    def fit_arguments() -> dict[str, Any]:
        # The hypermodel's own fit, read once its model is built (its parameters sampled).
        return _fit_arguments(task, params, data)

    # A hypermodel's fit that returns the trial's score, of an objective Keras does not log
    # (KerasTuner's custom objective): found once the model is built, and then the trial runs
    # that fit as it is written, as it runs a training loop of the hypermodel's own.
    scored = False

    def trains_itself() -> bool:
        # A hypermodel's fit that trains the model in a loop of its own (with its own
        # optimizer, batches as it likes): hpo's training settings would be left unused.
        fit_arguments()
        return scored or bool(getattr(task.families[family], "trains_itself", False))

    def ask(name: str) -> Any:
        # A training parameter the search left to this process (see `build_model`).
        if name in params:
            return params[name]
        if name in TRAINING_DEFAULTS and trains_itself():
            return TRAINING_DEFAULTS[name]
        return suggest(trial, name, search_space(task, config.space).shared[name])

    model, interface = prepare_model(task, params, data, trial, ask)
    fitting = dict(fit_arguments())
    if getattr(task.families[family], "returns_score", None) and not trains_itself():
        scored = not check_objective(
            task, model, interface, data, params, config.training.objective, returned_by_fit=True
        )
        if scored:  # the fit passes model.fit what it passes: hpo adds the search's callbacks
            own = getattr(task.families[family], "fit_kwargs", {}).get("callbacks")
            # The batch size it passes, for the trial's record and its cost estimate.
            fitting = {
                k: v
                for k, v in {"callbacks": own, "batch_size": fitting.get("batch_size")}.items()
                if v
            }
    if "x" in fitting:  # a hypermodel's fit transformed the inputs: this trial's
        data = dataclasses.replace(data, x_train=fitting.pop("x"))
    own_loop = trains_itself()
    batch_size = fitting.pop("batch_size", None) or ask("batch_size")
    # A hypermodel's fit may tune shuffle (KerasTuner's "tune data preprocessing" guide):
    # shuffle=False trains every epoch on the examples in their order, as Keras's fit does.
    shuffled = bool(fitting.pop("shuffle", True))
    # Every parameter is drawn now (the model built, its fit read, the batch size asked for):
    # one the study has trained already is not trained again.
    repeated = trained_before(trial)
    if repeated is not None:
        trial.set_user_attr(Attr.DUPLICATE_OF, repeated.number)
        raise optuna.TrialPruned(repeat_reason(repeated.number))
    features, why_not = cost_features(task, model, {**params, "batch_size": batch_size}, data)
    calibration = cost_ratios or Calibration()
    device = device_name()
    rates = family_rates(task.families.get(family))
    # What the model computes in: a layer that the user's script made under a global policy of
    # its own computes in that (the round-trip and export checks allow for its rounding).
    computes_in = model_precision(model)
    estimate = calibration.estimate(features, family, computes_in, device, rates)
    attributes: dict[str, Any] = {
        Attr.FAMILY: family,
        Attr.PRECISION: computes_in,
        Attr.PARAMS_COUNT: int(model.count_params()),
        Attr.BACKEND: keras_backend(),
        Attr.DEVICE: device,
        **interface_attributes(interface),
        Attr.COST_ESTIMATE: "model" if features is not None else f"measured: {why_not}",
    }
    if features is not None:
        attributes[Attr.GFLOP_PER_EPOCH] = round(features.flops_per_epoch / 1e9, 1)
        attributes[Attr.PRIOR_EPOCH_SECONDS] = round(features.prior_seconds(rates), 2)
        attributes[Attr.COST_FEATURES] = features.as_dict()
    if estimate is not None:
        attributes[Attr.ESTIMATED_EPOCH_SECONDS] = round(estimate, 1)
    if "batch_size" not in trial.params:
        attributes[Attr.BATCH_SIZE] = int(batch_size)
    used = getattr(task.families[family], "used_values", None)
    if used:
        attributes[Attr.HYPERPARAMETERS] = used
    for key, value in attributes.items():
        trial.set_user_attr(key, value)

    # Within the study's budget one epoch is worth starting (a late, short trial still yields a
    # member); within its own cap a trial must have room to learn and show it has stopped
    # improving: `patience + 1` epochs. A config too slow for that is not started at all. On a
    # machine where even the cheapest default model fits fewer in the cap, a trial needs room
    # for as many as that one has (at least one): the study trains what fits instead of
    # starting nothing.
    deadlines, needs = [], []
    if deadline is not None:
        deadlines.append((deadline, "the study's budget"))
        needs.append((deadline, 1, "the study's budget"))
    cap = config.trial_cap_seconds
    if cap is not None:
        why = f"the per-trial cap of {format_duration(cap)}"
        deadlines.append((started + cap, why))
        needs.append((started + cap, cap_epochs(config, cap, cheapest), why))
    for end, epochs, why in needs:
        # Without an estimate (a model hpo cannot cost, and no earlier trial of its family)
        # the trial starts; the epoch clock stops it after the first epoch that shows it won't fit.
        if estimate is not None and time.time() + epochs * estimate > end:
            raise optuna.TrialPruned(
                f"not started: {epochs} epoch(s) are estimated at {epochs * estimate:.0f} s, "
                f"which would end past {why} ({max(0.0, end - time.time()):.0f} s left)"
            )

    checkpoint = work / CHECKPOINT_NAME
    clock = EpochClock(deadlines)
    regression = interface.output.regression
    classes = int(params.get("classes", 0))
    objective = config.training.objective
    extra: list[keras.callbacks.Callback] = [
        PruningCallback(trial, objective),
        *trial_tensorboards(fitting.pop("callbacks", []), trial.number, trial.params),
    ]
    if config.tensorboard:
        log_dir = config.study_dir / "tensorboard" / f"trial-{trial.number:05d}"
        extra.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    if not regression and not own_loop and _checks_chance(config, task):
        # Last: the epoch it prunes at is reported (the trial's history) and logged first.
        extra.append(_chance_level_stop(config, task, data.y_val))
    epochs = min(config.training.max_epochs, fitting.pop("epochs", math.inf))
    scheduled_by = None if own_loop else user_schedules_learning_rate(model, extra)
    if scheduled_by is not None:
        trial.set_user_attr(Attr.LR_SCHEDULE, scheduled_by)
    fit_started = time.perf_counter()
    try:
        if own_loop:
            history = _train_own_loop(
                task.families[family],
                model,
                interface,
                data,
                classes,
                objective=objective,
                mode=config.training.mode,
                checkpoint=checkpoint,
                callbacks=[clock, *extra],
                # Given no objective (hpo.Tuner's), a loop's own is what it returns, minimized.
                scored=scored or objective == DEFAULT_OBJECTIVE,
                epochs=config.training.max_epochs if scored else None,
            )
        else:
            labels = interface.encode_labels(data.y_train, classes)
            history = fit_best_epoch(
                model,
                task.dataset(
                    data.x_train,
                    labels,
                    batch_size,
                    config.sampler.trial_seed(trial.number) if shuffled else None,
                    bucketed=interface.bucketed,
                    # In-memory arrays' sample weights (hpo.Tuner), when given.
                    **({} if data.w_train is None else {"weights": data.w_train}),
                ),
                task.dataset(
                    data.x_val,
                    interface.encode_labels(data.y_val, classes),
                    EVAL_BATCH,
                    None,
                    bucketed=interface.bucketed,
                ),
                monitor=objective,
                mode=config.training.mode,
                training=config.training,
                checkpoint=checkpoint,
                clock=clock,
                epochs=epochs,
                extra=extra,
                learning_rate=_learning_rate(trial.params),
                fit_arguments=fitting,
                example=(data.x_train, labels),
            )
    finally:
        trial.set_user_attr(Attr.EPOCHS, clock.count)
        trial.set_user_attr(Attr.TRAIN_SECONDS, round(time.perf_counter() - fit_started, 1))
        if clock.durations:
            trial.set_user_attr(Attr.EPOCH_SECONDS, round(float(np.mean(clock.durations)), 2))
            trial.set_user_attr(Attr.EPOCH_DURATIONS, [round(d, 2) for d in clock.durations])
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        trial.set_user_attr(Attr.PEAK_MEMORY_MB, round(peak_kib / 1024))
    if clock.stop_reason:
        trial.set_user_attr(Attr.STOP_REASON, clock.stop_reason)
    logged = best_epoch_logs(history.history, objective, config.training.mode)
    trial.set_user_attr(Attr.METRICS, logged)
    trial.set_user_attr(Attr.HISTORY, epoch_logs(history.history))

    # The stored member is the best epoch's model without the optimizer's state (about twice
    # the weights again), which nothing resumes from: loaded uncompiled and saved anew.
    best = member_model(load_keras_file(checkpoint), interface.output, data.x_val[:1])
    if uses_user_classes(model):
        # A user's class built again from its configuration, as every reader will build it.
        model.load_weights(checkpoint)  # the best epoch's weights, in the model as built
        check_reloaded(
            family, model, member_model(model, interface.output, data.x_val[:1]), best, data.x_val
        )
    if interface.bucketed and task.padded:
        # The trained model must still ignore padding, or the export (which pads every text to
        # seq_len) would not reproduce what is evaluated here: else it is predicted padded.
        rows = probe_rows(data.y_val)
        padding, reason = check_padding(best, data.x_val[rows])
        if padding is Padding.FIXED:
            interface = dataclasses.replace(
                interface, padding=padding, padding_reason=f"after training, {reason}"
            )
            trial.set_user_attr(Attr.PADDING, padding.value)
            trial.set_user_attr(Attr.PADDING_REASON, interface.padding_reason)
    member = work / MEMBER_NAME
    with writing(member, variable_bytes(best)):
        best.save(member)
    predictions = metrics.as_probabilities(
        task.predict(best, data.x_val, bucketed=interface.bucketed)
    ).astype(np.float32)  # for regression: the values, [n] for one target
    unusable = int((~np.isfinite(predictions.reshape(len(predictions), -1))).any(axis=1).sum())
    if unusable:
        # A loss that stayed finite (clipped, say) over weights that did not: no member.
        raise FloatingPointError(
            f"the best epoch's model predicts NaN or infinite values for {unusable} of "
            f"{len(predictions)} validation examples: its weights diverged "
            f"({_learning_rate(trial.params)} too high for this model), or a layer computes "
            f"NaN on these inputs."
        )
    predictions_path = work / PREDICTIONS_NAME
    with writing(predictions_path, predictions.nbytes):
        np.save(predictions_path, predictions)
    store_trial_artifacts(
        trial, open_artifact_store(config.artifact_location), member, predictions_path
    )
    if regression:
        # hpo's loss of a model of targets is the mean squared error, whatever it trained on;
        # targets of 0s and 1s (multi-label) also have a binary accuracy, each label alike.
        val_loss = metrics.squared_error(data.y_val, predictions)
        if metrics.binary_targets(data.y_val):
            accuracy = metrics.binary_accuracy(data.y_val, predictions)
            trial.set_user_attr(Attr.VAL_ACCURACY, round(accuracy, 6))
    else:
        val_accuracy = metrics.accuracy(data.y_val, predictions)
        val_loss = metrics.log_loss(data.y_val, predictions)
        trial.set_user_attr(Attr.VAL_ACCURACY, round(val_accuracy, 6))
    trial.set_user_attr(Attr.VAL_LOSS, round(val_loss, 6))
    # A classifier's validation accuracy, hpo's own objective, is measured on the stored
    # model's predictions; any other objective is the value Keras logged at the best epoch,
    # whose weights are stored.
    own = objective == task.monitor and not regression and not scored
    return TrialResult(value=val_accuracy if own else logged[objective])


def _train_own_loop(
    family: Any,
    model: keras.Model,
    interface: ModelInterface,
    data: TrialData,
    classes: int,
    *,
    objective: str,
    mode: str,
    checkpoint: Path,
    callbacks: Sequence[keras.callbacks.Callback],
    scored: bool = False,
    epochs: int | None = None,
) -> EpochLogs:
    """Trains a model in its hypermodel's own training loop (KerasTuner's "custom training
    loop" guide: a `fit` that never calls `model.fit`), given hpo's callbacks as KerasTuner
    gives its own: each epoch's end that the loop reports (`callback.on_epoch_end(epoch,
    logs={objective: value})`) is logged, checkpointed when best by `objective`, timed and
    reported to the pruner.

    With `scored`, the fit is one that returns the trial's score, of an objective no epoch
    logs (KerasTuner's custom objective: `model.fit(...)`, then a score of the trained model;
    or a loop of its own given no objective, `DEFAULT_OBJECTIVE`): its epochs are logged and
    timed, nothing is checkpointed or pruned by epoch, and the value it returns is the
    objective's, of its final model. It is given `epochs` (the study's cap, where the search
    gave it none), unless that is None.

    Returns:
        The logs of each epoch; a loop that reports no `objective` but returns a number, or a
        dict that holds it (KerasTuner's returned objective), has that value as its last
        epoch's `objective`, its final model as the checkpoint.

    Raises:
        ConfigError: The loop reports no `objective` and returns no value of it.
    """
    from hpo.models.hypermodel import returned_score
    from hpo.training.callbacks import (
        AtomicModelCheckpoint,
        EpochLogs,
        PruningCallback,
        RequireMonitor,
        variable_bytes,
    )

    logs = EpochLogs()
    everything = (
        [
            logs,
            # Where the objective is logged after all (the fit compiles the model again with
            # its metric), a fit that returns its History ranks by its best epoch.
            AtomicModelCheckpoint(checkpoint, when_logged=True, monitor=objective, mode=mode),
            *(c for c in callbacks if not isinstance(c, PruningCallback)),
        ]
        if scored
        else [
            logs,
            RequireMonitor(objective),
            AtomicModelCheckpoint(checkpoint, monitor=objective, mode=mode),
            *callbacks,
        ]
    )
    for callback in everything:
        callback.set_model(model)
        callback.on_train_begin()
    returned = family.train_own(
        model,
        model_inputs(data.x_train),
        interface.encode_labels(data.y_train, classes),
        (model_inputs(data.x_val), interface.encode_labels(data.y_val, classes)),
        everything,
        sample_weight=data.w_train,
        epochs=epochs if scored else None,
    )
    for callback in everything:
        callback.on_train_end()
    value = returned_score(returned.get(objective) if isinstance(returned, dict) else returned)
    logged = any(v is not None and math.isfinite(v) for v in logs.history.get(objective, []))
    if logs.history and (not scored or (value is None and logged and checkpoint.exists())):
        return logs
    if value is None:
        if objective == DEFAULT_OBJECTIVE:
            # hpo.Tuner given no objective: KerasTuner's DefaultObjective, and its refusal.
            given = returned if isinstance(returned, dict) else logs.history
            names = sorted(map(str, given))
            returned_what = (
                f"a dict (its keys: {names})" if isinstance(returned, dict) else repr(returned)[:60]
            )
            if names:
                # A validation value first (not a training one), in its direction where known.
                name = min(names, key=lambda n: not n.startswith("val_"))
                direction = (known_direction(name) or Direction.MIN).value
                what_to_name = (
                    f"hpo.Tuner(objective=keras_tuner.Objective({name!r}, {direction!r}))"
                    + (f", or another of {names}" if len(names) > 1 else "")
                )
            else:
                what_to_name = (
                    "report it each epoch (callback.on_epoch_end(epoch, logs={'my_metric': "
                    "value})) and give hpo.Tuner(objective=keras_tuner.Objective('my_metric', "
                    "'min'))"
                )
            raise ConfigError(
                f"family {family.name!r}: hpo.Tuner was given no objective, so it minimizes the "
                f"number the hypermodel's fit returns, as KerasTuner does; the fit returned "
                f"{returned_what}. Return that number, or name the objective: {what_to_name}."
            )
        what = (
            f"a dict without {objective!r} (its keys: {sorted(map(str, returned))})"
            if isinstance(returned, dict)
            else type(returned).__name__
        )
        if scored:
            did = (
                "returns the trial's score (Keras logs no value of the objective), and "
                "returned no value of the objective"
            )
            how = (
                "Return the value, or a dict that holds it under that name (KerasTuner's "
                "custom objective), or give as the objective a metric Keras logs (hpo.Tuner("
                "objective='val_loss')), or one of the dict's keys (objective=keras_tuner."
                "Objective('my_score', 'min'))."
            )
        else:
            did = (
                "trains the model in a loop of its own, and neither reported an epoch to the "
                "callbacks it is given nor returned the objective's value"
            )
            how = (
                "At each epoch's end call callback.on_epoch_end(epoch, logs={"
                f"{objective!r}: value}}) for each callback, as KerasTuner's custom training "
                "loop guide does, or return the value."
            )
        raise ConfigError(
            f"family {family.name!r}: its fit {did} {objective!r} (it returned {what}). {how}"
        )
    if not math.isfinite(value):
        raise FloatingPointError(
            f"family {family.name!r}: its fit returned {value} as {objective!r}: the "
            f"model's weights diverged, or the score divides by zero."
        )
    with writing(checkpoint, variable_bytes(model)):
        model.save(checkpoint)
    before = [math.nan] * (max((len(v) for v in logs.history.values()), default=1) - 1)
    # The other values a returned dict holds (KerasTuner's "metrics to track") are recorded
    # beside it, at the last epoch, as the values of the final model.
    others = returned.items() if isinstance(returned, dict) else ()
    for name, score in ((str(k), returned_score(v)) for k, v in others):
        if score is not None and name not in logs.history:
            logs.history[name] = [*before, score]
    logs.history[objective] = [*before, value]
    return logs


def best_epoch_logs(
    history: Mapping[str, Sequence[Any]], monitor: str, mode: str = "max"
) -> dict[str, Any]:
    """What Keras logged at the best epoch by `monitor` (`mode` "max" or "min": the model's
    own loss and metrics, on the training and validation data), the epoch whose weights the
    trial keeps."""
    values = np.asarray(history.get(monitor) or [], dtype=float)
    if not np.isfinite(values).any():
        return {}
    # As the checkpoint chose it: an epoch whose value is NaN is never the best.
    best = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
    kept = {name: recorded(logged[best]) for name, logged in history.items() if len(logged) > best}
    return {name: value for name, value in kept.items() if value is not None}


def epoch_logs(history: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """What Keras logged at every epoch, by name, each value as `recorded` keeps it."""
    return {name: [recorded(value) for value in logged] for name, logged in history.items()}


def recorded(value: Any) -> Any:
    """A logged value as a trial's record (JSON) keeps it: a number rounded to 6 places, or to 6
    significant digits below 0.1 (a learning rate cut on plateaus to 1e-7 is not 0), None where
    not finite; a metric of one value a class (`F1Score(average=None)`) as a list."""
    array = np.asarray(value, dtype=float)
    if array.ndim:
        return [recorded(v) for v in array.reshape(-1)]
    number = float(array)
    if not math.isfinite(number):
        return None
    return float(f"{number:.6g}") if abs(number) < 0.1 else round(number, 6)


def build_step_state(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    """Creates the compiled metrics' and the optimizer's variables before `fit` traces its
    training step, from the first two of training inputs `x` and labels `y` as the training
    batches hold them.

    Keras's TensorFlow trainer creates them while it traces the first step, and a `tf.function`
    whose first trace creates variables is traced again: the step is traced twice, a quarter of
    a small model's `fit`. Built here, they are what `fit` would build (the metrics are reset
    after, and the forward pass is in inference mode: nothing else changes), and the step is
    traced once. Nothing is done on the other backends (JAX and PyTorch build them before their
    first step), for an uncompiled model, or for one with a step, loss or metrics of its own;
    where the model fails on `x`, `fit` meets and reports the same failure.
    """
    import keras

    if keras_backend() != "tensorflow" or getattr(model, "optimizer", None) is None:
        return
    for method in ("train_step", "compute_loss", "compute_metrics"):
        if getattr(type(model), method, None) is not getattr(keras.Model, method):
            return
    inputs, labels = tensors(x[:_STEP_STATE_ROWS]), y[:_STEP_STATE_ROWS]
    try:
        predicted = model(inputs, training=False)
        model.compute_metrics(inputs, labels, predicted, sample_weight=None)
        model.reset_metrics()
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    except Exception as exc:  # left to `fit`, which builds them itself (and reports a failure)
        _log.debug("the training step's state is left to fit: %s", exc)


def _checks_chance(config: StudyConfig, task: Task) -> bool:
    """Whether a classifier's trials still at chance level are pruned (`ChanceLevelStop`)."""
    # Pruning is the pruner's: "none" prunes no trial. And only accuracy has a chance level
    # hpo knows: on imbalanced classes an objective such as AUC (or the loss) improves while
    # the accuracy stays at the most frequent class's share.
    return (
        config.training.chance_epochs > 0
        and config.pruner.kind is not PrunerKind.NONE
        and config.training.objective == task.monitor
    )


def _chance_level_stop(
    config: StudyConfig, task: Task, labels: np.ndarray
) -> keras.callbacks.Callback:
    from hpo.training.callbacks import ChanceLevelStop

    # Always predicting the most frequent class scores this much.
    chance = float(np.bincount(labels).max() / len(labels))
    training = config.training
    settings = (
        # hpo.Tuner has no training settings: what turns the check off there.
        "hpo.Tuner(pruner='none') prunes no trial, and an objective other than "
        f"{task.monitor!r} is not checked against chance"
        if config.hypermodel is not None
        else "training.chance_margin; training.chance_epochs = 0 turns the check off"
    )
    return ChanceLevelStop(
        task.monitor, chance, training.chance_epochs, training.chance_margin, settings
    )


def fit_best_epoch(
    model: keras.Model,
    train: Any,
    validation: Any,
    *,
    monitor: str,
    mode: str = "max",
    training: TrainingConfig,
    checkpoint: Path,
    clock: EpochClock,
    epochs: float,
    extra: Sequence[keras.callbacks.Callback] = (),
    learning_rate: str = "the learning rate",
    fit_arguments: Mapping[str, Any] | None = None,
    example: tuple[np.ndarray, np.ndarray] | None = None,
) -> keras.callbacks.History:
    """Fits a compiled model as every trial is fitted, its best epoch saved to `checkpoint`.

    The callbacks, in order: `clock` (counts and times epochs, stops before a deadline),
    TerminateOnNaN, a check that `monitor` is logged, the best epoch by `monitor`
    (`mode` "max" or "min") written atomically to `checkpoint`,
    early stopping with the study's patience (best weights restored), the learning rate cut on a
    validation-loss plateau (unless the model's optimizer or a callback of `extra` schedules the
    rate: `schedule_callbacks`), then `extra`. `hpo distill` trains its student through here too.

    Args:
        train: Shuffled training batches (`Task.dataset`); `validation`: validation batches.
        epochs: The most epochs (the study's `max_epochs`, or less).
        learning_rate: The setting an error about non-finite weights names.
        fit_arguments: More arguments of `model.fit` (a hypermodel's own).
        example: The training inputs and their labels as `train` holds them: the step's
            state is built on their first rows before `fit` traces it (`build_step_state`).

    Raises:
        FloatingPointError: The weights or the training loss became NaN or infinite.
        RuntimeError: No epoch was checkpointed.
    """
    import keras

    from hpo.training.callbacks import (
        AtomicModelCheckpoint,
        RequireMonitor,
        schedule_callbacks,
    )

    callbacks: list[keras.callbacks.Callback] = [
        clock,
        keras.callbacks.TerminateOnNaN(),
        RequireMonitor(monitor),
        AtomicModelCheckpoint(checkpoint, monitor=monitor, mode=mode),
        *schedule_callbacks(monitor, training, mode, model=model, given=extra),
        *extra,
    ]
    if example is not None:
        build_step_state(model, *example)
    try:
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles, each epoch anew
            verbose=0,
            **(fit_arguments or {}),
        )
    except Exception as exc:
        # A diverging optimizer can fail inside its own step (Keras's sparse embedding update
        # rejects NaN gradients) before TerminateOnNaN sees the loss: name the cause.
        if not all(np.isfinite(w).all() for w in model.get_weights()):
            raise FloatingPointError(
                f"the weights became non-finite during epoch {clock.count + 1} ({exc!s:.200}); "
                f"{learning_rate} is likely too high for this model."
            ) from exc
        raise
    losses = history.history.get("loss", [])
    if any(not math.isfinite(v) for v in losses):
        raise FloatingPointError(
            f"the training loss became {losses[-1]} at epoch {len(losses)}; "
            f"{learning_rate} is likely too high for this model."
        )
    if not checkpoint.exists():
        raise RuntimeError(f"no checkpoint was written to {checkpoint}")
    return history


@dataclass(frozen=True)
class EstimateJob:
    """Parameter sets to cost before any trial trains (see `estimate_epochs`)."""

    config: StudyConfig
    data_folder: Path
    params: list[dict[str, Any]]


def estimate_epochs(job: EstimateJob) -> list[Priced]:
    """Checks each parameter set's model and prices its epochs (`hpo.cost.Priced`); trains none.

    Each model is built, probed (`hpo.training.interface`) and, for a family that is not hpo's
    own, saved and loaded back, so what a user's model cannot do is an error before any trial.

    Returns:
        Each parameter set's model as the clock prices it: `seconds(calibration)` is its
        estimated epoch under the study's calibration, None where the model cannot be costed
        and no earlier trial of its family measured one.

    Raises:
        ConfigError: A model that does not fit the task or cannot be saved and loaded.
    """
    import keras

    task = study_task(job.config)
    priced = []
    with temporary_folder("check") as scratch:
        for sampled in job.params:
            params = {**sampled, **task.build_context(job.data_folder)}
            with trial_process(job.config, params["family"]):
                data = task.trial_data(job.data_folder, params)
                try:
                    model, interface = prepare_model(task, params, data)
                except ConfigError:
                    raise
                except optuna.TrialPruned:
                    # The hypermodel rejects its own defaults (keras_tuner's FailedTrialError):
                    # nothing to check or price; its trials are checked as they build.
                    _log.info("family %r rejects its default values", params["family"])
                    continue
                except Exception as exc:
                    raise ConfigError(
                        f"family {params['family']!r}: building its model with its default "
                        f"parameters failed ({type(exc).__name__}: {exception_text(exc)}). Fix the "
                        f"model's code; the traceback is in the study's logs/check.log."
                    ) from exc
                family = task.families[params["family"]]
                # A hypermodel's own fit, run as a trial will run it: its failure (or a value
                # it returns, which is warned of) shows before any trial; the batch size it
                # (or the user's dataset) sets is the one its epochs are priced at.
                arguments = {} if is_builtin(family) else _fit_arguments(task, params, data)
                if not is_builtin(family):
                    check_round_trip(model, interface, params["family"], data, Path(scratch))
                    fixed = arguments.get("batch_size")
                    params = {**params, "batch_size": fixed or params["batch_size"]}
                    # Whether a fit that uses the model after model.fit returns a score, told
                    # by running it on a few rows, with a model of its own: it trains it.
                    _settle_returns(task, family, params, data)
                returns = getattr(family, "returns_score", None)
                # hpo.Tuner was given no objective: KerasTuner's is what the fit returns.
                no_objective = getattr(family, "overrides", {}).get("default_objective")
                if returns and no_objective:
                    keys = getattr(family, "returned_keys", None)
                    if keys is not None and DEFAULT_OBJECTIVE not in keys:
                        # KerasTuner's FatalTypeError for it, before the study is made anew.
                        raise ConfigError(
                            f"family {params['family']!r}: its fit returns a dict (keys "
                            f"{keys}), and hpo.Tuner was given no objective: name the key "
                            f"that ranks the trials, objective=keras_tuner.Objective("
                            f"{keys[0]!r}, 'min') (or 'max'), or return a single number to "
                            f"minimize, as KerasTuner requires."
                        )
                    raise ReturnsObjective(
                        f"family {params['family']!r}: its fit returns {returns}, the value "
                        f"KerasTuner minimizes when it is given no objective."
                    )
                if no_objective and getattr(family, "trains_itself", False):
                    # KerasTuner ranks a training loop of its own by what it returns, minimized,
                    # whatever its epochs report, where it is given no objective.
                    raise ReturnsObjective(
                        f"family {params['family']!r}: its fit trains the model in a loop of its "
                        f"own, whose returned value KerasTuner minimizes when it is given no "
                        f"objective."
                    )
                # A training loop of the hypermodel's own logs what it logs as it runs.
                objective = job.config.training.objective
                if not getattr(family, "trains_itself", False):
                    logged = check_objective(
                        task, model, interface, data, params, objective, returns is not None
                    )
                    if returns and logged:
                        _log.warning(
                            "family %s: its fit returns %s, which KerasTuner would take as the "
                            "value of the objective %r; Keras logs %r as the model trains, and "
                            "hpo ranks each trial by its best epoch's value as logged. To rank "
                            "by what the fit returns, name it: return {'my_score': value} and "
                            "give objective=keras_tuner.Objective('my_score', 'min')",
                            params["family"],
                            returns,
                            objective,
                            objective,
                        )
                features, _ = cost_features(task, model, params, data)
            rates = family_rates(task.families[params["family"]])
            computes_in = model_precision(model)
            priced.append(Priced(params["family"], computes_in, device_name(), features, rates))
            keras.backend.clear_session()
    return priced


def check_objective(
    task: Task,
    model: keras.Model,
    interface: ModelInterface,
    data: TrialData,
    params: Mapping[str, Any],
    objective: str,
    returned_by_fit: bool = False,
) -> bool:
    """Evaluates the compiled model on a few validation rows to see that Keras logs the
    study's objective (a model compiled without the metric it names would train its trials
    with no best epoch to keep).

    Args:
        returned_by_fit: The hypermodel's fit returns a score, which stands for an objective
            Keras does not log (KerasTuner's custom objective).

    Returns:
        Whether Keras logs the objective; False only with `returned_by_fit`.

    Raises:
        ConfigError: The objective is not logged (and no fit returns it), naming what is.
    """
    from hpo.training.callbacks import missing_metric

    logged_anyway = objective in ("val_loss", "loss") or (
        objective == task.monitor and not interface.output.regression
    )
    family = params["family"]
    if logged_anyway and is_builtin(task.families[family]):
        return True  # every model logs its loss, and hpo adds a classifier's accuracy
    rows = probe_rows(data.y_val)
    classes = int(params.get("classes", 0))
    try:
        logs = model.evaluate(
            task.dataset(
                data.x_val[rows],
                interface.encode_labels(data.y_val[rows], classes),
                EVAL_BATCH,
                None,
                bucketed=interface.bucketed,
            ),
            verbose=0,
            return_dict=True,
        )
    except Exception as exc:  # the user's model (its test_step, loss or metrics)
        raise ConfigError(
            f"family {family!r}: its model cannot be evaluated on validation rows "
            f"({type(exc).__name__}: {exception_text(exc)}). hpo scores every epoch by Keras's "
            f"evaluation of the validation data (the model's test_step): compile the model "
            f"with its loss, or give a model with a train_step of its own a test_step too."
        ) from exc
    if logged_anyway:
        return True
    logged = [*logs, *(f"val_{name}" for name in logs)]
    if objective in logged:
        return True
    if returned_by_fit:
        return False
    if objective == task.monitor:
        raise ConfigError(
            f"the labels are regression targets, and the model logs no accuracy "
            f"({', '.join(sorted(logged))}): choose objective='val_loss' or one of those (or "
            f"leave objective out: the validation loss), or compile the model with "
            f"metrics=['accuracy'] where its targets have one."
        )
    raise ConfigError(missing_metric(objective, sorted(logged)))


def check_round_trip(
    model: keras.Model, interface: ModelInterface, family: str, data: TrialData, folder: Path
) -> None:
    """Saves a family's model as a `.keras` file and loads it back as the ensemble will, and
    checks that the loaded model predicts what the saved one does on a few validation rows.

    Raises:
        ConfigError: It cannot be saved, or loaded in safe mode, or it loads as another model;
            naming the cause and the fix.
    """
    path = folder / f"{family}.keras"
    register_user_objects()  # as `prepare_model` has, for a model built elsewhere
    try:
        saved = member_model(model, interface.output, data.x_val[:1])
        saved.save(path)
        loaded = load_keras_file(path)
    except Exception as exc:
        cause = keras_cause(exc)
        name = type(model).__name__
        wrapped = [
            layer.name
            for layer in model._flatten_layers(include_self=False)
            if type(layer).__name__ == "TorchModuleWrapper"
        ]
        if wrapped:
            fix = (
                f"its keras.layers.TorchModuleWrapper ({wrapped[0]}) stores the torch module "
                f"as a pickle, which loading would run as code, and hpo loads a checkpoint as "
                f"data only. Write the module as Keras layers (torch.nn.Linear as "
                f"keras.layers.Dense, say), which run on the torch backend too"
            )
        elif "`Lambda` layer" in cause:
            fix = (
                "replace each Lambda layer with a layer of your own class, which hpo loads "
                "without running code from the file: class Scale(keras.layers.Layer): def "
                "call(self, x): return ops.relu(x) * 2.0"
            )
        elif lambdas := _python_lambdas(model):
            where, example = lambdas[0]
            others = f" (and {len(lambdas) - 1} more)" if len(lambdas) > 1 else ""
            fix = (
                f"{where} is a Python lambda{others}, which Keras saves as code, and safe "
                f"mode runs no code from a file. Define it with def at the top level of your "
                f"script, notebook or module instead ({example}): hpo registers your code's "
                f"functions with Keras, and a later session loads the model once that code is "
                f"defined or imported again"
            )
        elif f"Object {name} was created" in cause:
            # Keras records a layer's __init__ arguments, but not a subclassed model's; hpo
            # records them for a class it has seen before the model was made.
            fix = (
                f"give {name} a get_config() that returns its __init__ arguments: def "
                f"get_config(self): return {{'units': self.units}} (hpo records them itself "
                f"only for a class defined outside build_model, given plain values such as "
                f"numbers and strings); or build the model with the functional API"
            )
        elif "Could not locate" in cause:
            # hpo registers what the user's own code defines, not an installed package's.
            fix = (
                "register it where it is defined, with @keras.saving."
                "register_keras_serializable(): hpo registers the layers and functions that "
                "your script, notebook and modules define, not an installed package's"
            )
        else:
            fix = (
                "build it with the functional API or keras.Sequential, or give your custom "
                "layers and models get_config() (and from_config() if their arguments are not "
                "plain values) and no Lambda layers"
            )
        raise ConfigError(
            f"family {family!r}: its model cannot be saved and loaded back as a .keras file "
            f"({type(exc).__name__}: {cause}). hpo stores every trial's best model as one and "
            f"loads it with Keras's safe mode on: {fix}."
        ) from exc
    check_reloaded(family, model, saved, loaded, data.x_val)


# What `compile` takes that may be a function: the phrase naming it, the example of a `def`.
_COMPILED_FUNCTIONS = {
    "loss": ("the loss given to compile", "my_loss", "loss=my_loss"),
    "metrics": ("a metric given to compile", "my_metric", "metrics=[my_metric]"),
    "weighted_metrics": (
        "a weighted metric given to compile",
        "my_metric",
        "weighted_metrics=[my_metric]",
    ),
}


def _python_lambdas(model: keras.Model) -> list[tuple[str, str]]:
    """Where `model` holds a Python lambda that saving it writes as code: a layer's activation
    (or another function it was given, a regularizer say), or a loss or metric given to
    `compile`; each as a phrase ("the activation of layer 'dense'") and a `def` to use."""
    found = [
        (
            f"the {attribute} of layer {layer.name!r}",
            f"def half_relu(x): return keras.ops.relu(x) * 0.5, then "
            f"keras.layers.{type(layer).__name__}(..., {attribute}=half_relu)",
        )
        for layer in model._flatten_layers(include_self=False)
        for attribute, value in vars(layer).items()
        if not attribute.startswith("_") and _is_lambda(value)
    ]
    compiled = getattr(model, "_compile_config", None)
    arguments = getattr(compiled, "config", None) or {}
    for argument, (where, name, usage) in _COMPILED_FUNCTIONS.items():
        pending = [arguments.get(argument)]
        while pending:
            value = pending.pop()
            if isinstance(value, dict):
                pending.extend(value.values())
            elif isinstance(value, list | tuple):
                pending.extend(value)
            elif _is_lambda(value):
                example = (
                    f"def {name}(y_true, y_pred): return keras.ops.mean(keras.ops.abs(y_true "
                    f"- y_pred)), then model.compile(..., {usage})"
                )
                found.append((where, example))
                break
    return found


def _is_lambda(value: object) -> bool:
    return isinstance(value, types.FunctionType) and value.__name__ == "<lambda>"


def check_reloaded(
    family: str, model: keras.Model, saved: keras.Model, loaded: keras.Model, x: np.ndarray
) -> None:
    """Checks that a loaded model predicts as the saved one on the first `ROUND_TRIP_ROWS` of
    `x`, relative to their scale, within rounding in `model`'s precision.

    Raises:
        ConfigError: They differ: the model loads back as another model; naming the fix.
    """
    from keras import ops

    rows = tensors(x[:ROUND_TRIP_ROWS])
    before = np.asarray(ops.convert_to_numpy(saved(rows, training=False)), dtype=np.float64)
    after = np.asarray(ops.convert_to_numpy(loaded(rows, training=False)), dtype=np.float64)
    # Relative to the outputs' scale: a regression model's may be large.
    difference = float(np.max(np.abs(before - after)) / max(1.0, float(np.max(np.abs(before)))))
    # NaN too: a model predicting NaN is the trial's.
    if not difference > tolerance(model_precision(model)):
        return
    # Keras builds a class of the user's again from its get_config(); for a subclassed
    # keras.Model made before hpo saw its class it records the __init__ arguments' defaults.
    raise ConfigError(
        f"family {family!r}: its model loads back from a .keras file as another model: its "
        f"predictions differ by {difference:.3g} on {ROUND_TRIP_ROWS} validation examples. "
        f"Keras builds a layer or model of your own class again from its get_config(), which "
        f"must return every __init__ argument as it was given (for a subclassed keras.Model "
        f"defined inside build_model, Keras records its arguments' defaults, not the values "
        f"passed): give {type(model).__name__} and your layers such a get_config(), or define "
        f"the class outside build_model."
    )


def prepare_model(
    task: Task,
    params: Mapping[str, Any],
    data: TrialData | None = None,
    trial: optuna.trial.BaseTrial | None = None,
    ask: Callable[[str], Any] | None = None,
    *,
    soft_targets: bool = False,
) -> tuple[keras.Model, ModelInterface]:
    """Builds the model of `params["family"]`, reads what it takes and gives, and compiles it.

    A family that samples while it builds (a KerasTuner hypermodel) asks `trial` for its
    parameters. A model that comes compiled keeps its optimizer, loss and metrics (hpo adds the
    accuracy metric it monitors); any other is compiled with the trial's optimizer and the loss
    its output needs, whose settings come from `ask(name)` if given (which a hypermodel's trial
    uses to sample them only when its model turns out to need them), else from `params`.

    Args:
        data: The trial's data, whose first validation rows the model is probed on; without it
            the family must be one of hpo's own (probability outputs, masked padding).
        soft_targets: Compile it to train on probabilities (`hpo distill`'s student); the
            interface returned then takes them (`ModelInterface.soft`).

    Raises:
        ConfigError: The model's output, loss or inputs do not fit the task.
    """
    family = task.families[params["family"]]
    build_trial = getattr(family, "build_trial", None)
    # Before the model is made: a subclassed keras.Model of the user's records its arguments.
    register_user_objects()
    if trial is not None and build_trial is not None:
        model = build_trial(trial, params)
    else:
        model = family.build(params)
    # Before the model is saved: its classes of the user's own load back (by their names).
    register_user_objects()
    classes = int(params.get("classes", 2))
    if data is None:
        output = Output(units=1 if classes == 2 else classes, from_logits=False)
        padding = Padding.BUCKETED if task.padded else None
        interface = ModelInterface(output, Labels.SPARSE, padding, "the family masks padding")
    else:
        rows = probe_rows(data.y_val)
        interface = read_interface(
            model,
            data.x_val[rows],
            data.y_val[rows],
            classes,
            family=params["family"],
            text=task.padded,
            masks_padding=bool(getattr(family, "MASKS_PADDING", False)),
            targets=int(params.get("targets", 0)),
            open_classes=task.open_classes,
        )

    def optimizer() -> keras.optimizers.Optimizer:
        return make_optimizer(
            {
                name: params[name] if ask is None else ask(name)
                for name in ("optimizer", "learning_rate")
            }
        )

    adapt = getattr(family, "adapt", None)
    if adapt is not None and data is not None and is_builtin(family):
        # Weights computed from the training split (the `nbsvm` family's naive-Bayes ratios):
        # set before training, saved with the model.
        adapt(model, data.x_train, data.y_train, params)
    if soft_targets:
        interface = interface.soft()
    compile_model(model, interface, optimizer, soft_targets=soft_targets)
    return model, interface


def build_model(
    task: Task,
    params: Mapping[str, Any],
    trial: optuna.Trial | None = None,
    ask: Callable[[str], Any] | None = None,
) -> keras.Model:
    """`prepare_model` for hpo's own families (benchmarks and tests): the compiled model."""
    return prepare_model(task, params, None, trial, ask)[0]


def probe_rows(labels: np.ndarray, n: int = PROBE_ROWS) -> np.ndarray:
    """Validation rows the model is probed on: the first few of every class (the first `n`
    of regression targets)."""
    if is_targets(labels):
        return np.arange(min(n, len(labels)))
    classes = np.unique(labels)
    per_class = max(1, n // max(1, len(classes)))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes]))


def interface_attributes(interface: ModelInterface) -> dict[str, Any]:
    """What a trial records of its model's interface."""
    attributes: dict[str, Any] = {
        Attr.OUTPUT: interface.output.describe(),
        Attr.LABELS: interface.labels.value,
    }
    if interface.padding is not None:
        attributes[Attr.PADDING] = interface.padding.value
        attributes[Attr.PADDING_REASON] = interface.padding_reason
    return attributes


def _learning_rate(params: Mapping[str, Any]) -> str:
    rate = params.get("learning_rate")
    return "the learning rate" if rate is None else f"learning_rate={rate:.3g}"


def _settle_returns(task: Task, family: Any, params: Mapping[str, Any], data: TrialData) -> None:
    """A hypermodel's `settle_returns`, where the stand-in could not tell, on a model built
    anew (the checks' own model stays untrained) and a few training and validation rows of
    each class, given as a trial gives them to a fit it runs as written."""
    from hpo.models.hypermodel import USES_TRAINED

    if getattr(family, "returns_score", None) != USES_TRAINED:
        return
    model, interface = prepare_model(task, params, data)
    classes = int(params.get("classes", 0))
    train, val = probe_rows(data.y_train, 64), probe_rows(data.y_val, 32)
    validation = (
        model_inputs(data.x_val[val]),
        interface.encode_labels(data.y_val[val], classes),
    )
    family.settle_returns(
        model,
        model_inputs(data.x_train[train]),
        interface.encode_labels(data.y_train[train], classes),
        validation,
    )


def _fit_arguments(task: Task, params: Mapping[str, Any], data: TrialData) -> dict[str, Any]:
    """Training arguments a family's own `fit` adds (a hypermodel's batch size, say), and `x`,
    the training inputs, where it transforms them."""
    family = task.families[params["family"]]
    arguments = getattr(family, "fit_arguments", None)
    if arguments is None:
        return {}
    validation = (model_inputs(data.x_val, contiguous=False), data.y_val)
    return dict(arguments(model_inputs(data.x_train, contiguous=False), data.y_train, validation))


def cost_features(
    task: Task, model: keras.Model, params: Mapping[str, Any], data: TrialData
) -> tuple[CostFeatures | None, str]:
    """What one epoch of this trial computes, for its time estimate.

    Returns:
        The features, or None and the reason when the model cannot be analysed (a subclassed
        model, a layer whose output shape is unknown): its epochs are then measured instead.
    """
    batch_size = params["batch_size"]
    try:
        work = example_work(model, task.cost_shape(params))
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exception_text(exc, 120)}"
        return None, f"the model cannot be costed ({cause})"
    return (
        CostFeatures(
            flops_per_example=work.flops,
            train_examples=task.epoch_examples(data.x_train, batch_size, params),
            val_examples=task.epoch_examples(data.x_val, EVAL_BATCH, params),
            steps=-(-len(data.x_train) // batch_size),
            params=int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            elements_per_example=work.elements,
        ),
        "",
    )


def make_optimizer(params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The optimizer named by `params["optimizer"]` at `params["learning_rate"]`."""
    import keras

    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[params["optimizer"]](learning_rate=params["learning_rate"])
