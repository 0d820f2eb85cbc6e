"""How to combine: choose members and weights on validation, evaluate once on test, export.

Each step has its module in this package: `selection` (the pool, loading members), `weighting`
and `pool` (two ways of fitting weights), `choice` (which is kept) and `calibration` (its
temperature), `report` (evaluation and report), `figure`, `export`, and `predict` for scoring
new inputs with the export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.artifacts import holding, removed_checkpoints
from hpo.contract import Attr, CheckpointError, load_keras_file
from hpo.data import provenance, testset
from hpo.disk import raise_if_full
from hpo.ensemble.calibration import temperature_slope
from hpo.ensemble.choice import Choice, choose
from hpo.ensemble.output_folder import (
    OutputKind,
    check_out_dir,
    folder_lock,
    publish,
    replacing,
    signals_held,
    staging_for,
)
from hpo.ensemble.refit import refit_members
from hpo.ensemble.report import build_report, record_in_study, write_outputs
from hpo.ensemble.selection import (
    Candidate,
    Member,
    load_member,
    pool_candidates,
    ranked_trials,
    skip,
)
from hpo.ensemble.serving import Format, Reference, as_formats, check_formats, write_exports
from hpo.ensemble.weighting import Method
from hpo.errors import ConfigError, StoreError
from hpo.store import open_artifact_store
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.tasks.arrays import ARRAYS
from hpo.training.interface import PROBE_ROWS, Padding, model_precision, tolerance

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import keras
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task
from hpo._exception_text import exception_text
from hpo.ensemble.export import (
    check_rows,
    export_ensemble,
    keras_config_backend,
    write_tokenizer,
)
from hpo.scratch import scratch_folder

__all__ = [
    "DEFAULT_POOL",
    "EnsembleResult",
    "FittedEnsemble",
    "StudyPool",
    "build_ensemble",
    "fit_ensemble",
    "open_pool",
    "predict_member",
    "refit_ensemble",
    "stacked_predictions",
]

# The pool's size by default: docs/ensemble.md ("Pool") says what a member costs.
DEFAULT_POOL = 100

_log = logging.getLogger("hpo.ensemble")


@dataclass(frozen=True)
class EnsembleResult:
    """Where the ensemble was written and its report."""

    out_dir: Path
    report: dict[str, Any]


def build_ensemble(
    config: StudyConfig,
    study: optuna.Study,
    *,
    top: int = 5,
    pool: int = DEFAULT_POOL,
    method: Method = Method.CARUANA,
    calibrate: bool = True,
    formats: Sequence[str] = (),
    out_dir: Path | None = None,
    data: str | None = None,
    refit: bool = False,
) -> EnsembleResult:
    """Builds, evaluates, exports and records the ensemble of at most `top` trials.

    Two ensembles are fitted on validation predictions only: the `top` best trials weighted by
    `method`, and a guarded greedy selection of at most `top` members from the `pool` best
    trials (`hpo.ensemble.choice`); the one with the lower cross-fitted validation log-loss is
    kept and, with `calibrate`, gets a temperature fitted on validation. The test set is read
    here, once, for the final evaluation; nothing in the search or the choice reads it. Its
    fingerprint goes into the report and the study; test data other than the study's previous
    ensemble's is a warning, recorded in the report as `test_data_changed` (`hpo.data.testset`).

    Args:
        top: The most members (default 5); also the plain ensemble's size.
        pool: How many of the best trials the selection may choose from (default 100; at
            least `top`).
        method: How the plain top-`top` ensemble is weighted (default Caruana selection).
        calibrate: Fit and export a temperature (default True).
        formats: Exports besides `ensemble.keras`: "savedmodel", "onnx", "litert"
            (`hpo.ensemble.serving`).
        out_dir: The output folder (default `ensembles/<study>-top<K>`). An earlier ensemble of
            this study there is replaced whole, and a line on stderr names it; a folder holding
            anything more (a student `hpo distill` wrote in it, files of yours), or another
            kind of output or another study's, is refused (`check_out_dir`).
        refit: Train each weighted member again on training + validation data for its best
            epoch count, after the choice, and evaluate and export those (`hpo.ensemble.refit`);
            the report's `refit` holds what was refitted and the ensemble's test scores as
            searched. Members without a weight stay as searched.
    """
    from hpo.ensemble.regression import is_regression

    if is_regression(study):
        raise ConfigError(
            f"study {config.name!r} holds models of targets (hpo.Tuner on regression values "
            f"or multi-label rows), and hpo ensemble evaluates classifiers of one class an "
            f"example on the study's test set: fit, evaluate "
            f"and export its ensemble in Python, tuner.ensemble(top={top}).evaluate(x_test, "
            f"y_test) and .export(path)."
        )
    asked = {Format.KERAS, *as_formats(formats)}
    check_formats(asked, keras_config_backend())
    owner = {"study": study.study_name, "storage": config.storage_url}
    out_dir = check_out_dir(
        out_dir or Path("ensembles") / f"{config.name}-top{top}", OutputKind.ENSEMBLE, **owner
    )
    if said := replacing(out_dir):
        print(said, file=sys.stderr, flush=True)
    # The members stay held until the ensemble is recorded, which keeps them from then on.
    with (
        scratch_folder("ensemble") as scratch,
        contextlib.ExitStack() as held,
    ):
        fitted = fit_ensemble(
            config,
            study,
            Path(scratch),
            top=top,
            pool=pool,
            method=method,
            calibrate=calibrate,
            data=data,
            held=held,
        )
        searched = None
        if refit:
            searched = fitted
            fitted = refit_ensemble(config, fitted, Path(scratch))
        task, data_folder, source = fitted.task, fitted.data_folder, fitted.source
        members, kept, skipped = fitted.members, fitted.choice, fitted.skipped
        val_matrix, y_val = fitted.val_matrix, fitted.y_val
        test = task.load_test(config, str(source), data_folder)
        test_data = testset.fingerprint(test.raw, test.y, test.source)
        test_change = testset.change(study.user_attrs.get(testset.TEST_DATA_ATTR), test_data)
        if test_change is not None:
            _log.warning(test_change["message"])
        test_matrix = fitted.member_predictions(test.x)
        ensemble_test = kept.predict(test_matrix)
        report = build_report(
            config,
            study,
            members,
            skipped,
            method,
            kept,
            fitted.pool_size,
            val_matrix,
            y_val,
            test_matrix,
            test.y,
            task.class_names(data_folder),
        )

        if searched is not None:
            report["refit"] = {
                "members": fitted.refitted,
                "searched_test": metrics.summary(
                    test.y, searched.choice.predict(searched.member_predictions(test.x))
                ),
            }
        report["out_dir"] = str(out_dir)
        report["test_data"] = test_data.as_dict()
        if test_change is not None:
            report["test_data_changed"] = test_change
        staging = staging_for(out_dir)
        staging.mkdir(parents=True)
        try:
            export = fitted.export()
            precisions = {m.trial.user_attrs.get(Attr.PRECISION) for m in members}
            reference = Reference(
                raw=test.raw,
                tokens=test.x if task.padded else None,
                labels=test.y,
                expected=ensemble_test,
                tolerance=max(tolerance(p) for p in precisions),
                slope=temperature_slope(kept.blend(test_matrix), kept.temperature),
            )
            report["export"] = write_exports(export, staging, asked, reference)
            report["backend"] = str(keras_config_backend())
            report["export"].update(write_tokenizer(task, data_folder, staging))
            write_outputs(staging, report, test.y, ensemble_test, test_matrix)
            # Not while an `hpo export` adds to the old one, or an `hpo distill` reads it.
            with folder_lock(out_dir):
                # Checked again: a student may have been distilled into it meanwhile.
                check_out_dir(out_dir, OutputKind.ENSEMBLE, **owner)
                if (now := replacing(out_dir)) not in (None, said):
                    print(now, file=sys.stderr, flush=True)
                # Ctrl-C or SIGTERM waits (on `held`) until the study records the ensemble
                # too: stopped between the two, the folder would hold one ensemble and the
                # study (hpo status, hpo gc's choice of checkpoints to keep) another.
                held.enter_context(signals_held())
                publish(staging, out_dir)
                # Under the lock: two runs into one folder record in the order they published.
                record_in_study(study, out_dir, report, top)
        except Exception as exc:
            raise_if_full(exc, out_dir)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return EnsembleResult(out_dir=out_dir, report=report)


@dataclass(frozen=True)
class FittedEnsemble:
    """An ensemble fitted on validation predictions only: its members (loaded) and weights.

    Attributes:
        task: The study's task.
        data_folder: The study's prepared data.
        source: Where the data was read from.
        members: The members the kept ensemble and the plain top ensemble use, best first.
        choice: The kept ensemble's weights (over `members`) and temperature.
        skipped: Trials left out, with the reason.
        pool_size: How many trials the members were chosen from.
        val_matrix: The members' validation predictions, stacked (as searched).
        y_val: The validation labels.
        refitted: The members refitted on training + validation data (`refit_ensemble`), if any.
    """

    task: Task
    data_folder: Path
    source: Path
    members: list[Member]
    choice: Choice
    skipped: list[dict[str, Any]]
    pool_size: int
    val_matrix: np.ndarray
    y_val: np.ndarray
    refitted: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The kept ensemble's probabilities for inputs `x` as the task encodes them."""
        return self.choice.predict(self.member_predictions(x))

    def member_predictions(self, x: np.ndarray) -> np.ndarray:
        """Each member's probabilities for `x`, stacked: `[members, n(, classes)]`."""
        return stacked_predictions(self.task, self.members, x)

    def export(self) -> keras.Model:
        """One Keras model of the kept ensemble, from raw inputs (`export_ensemble`)."""
        temperature = None if self.choice.calibration is None else self.choice.temperature
        return export_ensemble(
            self.task,
            self.data_folder,
            self.members,
            [m.model for m in self.members],
            self.choice.weights,
            temperature,
        )


def fit_ensemble(
    config: StudyConfig,
    study: optuna.Study,
    scratch: Path,
    *,
    top: int = 5,
    pool: int = DEFAULT_POOL,
    method: Method = Method.CARUANA,
    calibrate: bool = True,
    data: str | None = None,
    held: contextlib.ExitStack | None = None,
) -> FittedEnsemble:
    """Chooses members, weights and temperature on validation predictions; reads no test data.

    Args:
        scratch: A folder for the members' checkpoints while they load.
        top, pool, method, calibrate: As `build_ensemble` takes them.
        data: Overrides where the study's data is read from.
        held: Where the members' checkpoints stay held against `hpo gc` once chosen, until it
            closes (`build_ensemble` holds them until the ensemble is recorded); by default
            they are held only while they load.

    Raises:
        StoreError: No COMPLETE trial, or none with usable predictions and checkpoint.
        ConfigError: The data differ from those the study's trials saw.
    """
    with open_pool(config, study, scratch, max(pool, top), data) as opened:
        if top > opened.complete:
            from hpo.cli import in_command

            _log.warning(
                "%s, but the study has only %d COMPLETE trials%s; using all of them.",
                f"--top {top}" if in_command() else f"top={top}",
                opened.complete,
                " whose checkpoint hpo gc kept" if removed_checkpoints(study) else "",
            )
        candidates, store, y_val = opened.candidates, opened.store, opened.y_val
        rows, here = check_rows(y_val, PROBE_ROWS), running_on()

        def verify(member: Member) -> None:
            x_val = opened.task.trial_data(opened.data_folder, member.trial.params).x_val
            verify_member(opened.task, x_val, member, rows, here)

        members, kept, failed = _choose(
            candidates, store, scratch, y_val, top, method, calibrate, verify
        )
        if held is not None:  # before the pool's hold ends
            held.enter_context(holding(study, [m.trial.number for m in members], "hpo ensemble"))
    return FittedEnsemble(
        task=opened.task,
        data_folder=opened.data_folder,
        source=opened.source,
        members=members,
        choice=kept,
        skipped=opened.skipped + failed,
        pool_size=len(candidates),
        val_matrix=np.stack([m.val_predictions for m in members]),
        y_val=y_val,
    )


@dataclass(frozen=True)
class StudyPool:
    """Where every ensemble of a study starts: its task and data (checked against the
    fingerprint its trials recorded), its artifact store, and its best trials' verified
    validation predictions (`pool_candidates`); no test data, no checkpoint loaded.

    Attributes:
        complete: The COMPLETE trials with a checkpoint the pool was drawn from.
        skipped: Trials left out of the pool, with the reason.
    """

    task: Task
    source: Path
    data_folder: Path
    store: ArtifactStore
    y_val: np.ndarray
    candidates: list[Candidate]
    skipped: list[dict[str, Any]]
    complete: int


@contextlib.contextmanager
def open_pool(
    config: StudyConfig,
    study: optuna.Study,
    scratch: Path,
    size: int | None = None,
    data: str | None = None,
) -> Iterator[StudyPool]:
    """The study's data and the `size` best trials' validation predictions (default: all),
    their checkpoints held against `hpo gc` until the block ends (`hpo.artifacts.holding`).

    Args:
        scratch: A folder for the fetched predictions.
        data: Overrides where the study's data is read from.

    Raises:
        StoreError: No COMPLETE trial, or none with usable predictions.
        ConfigError: The data differ from those the study's trials saw.
    """
    from hpo.ensemble.regression import is_regression

    task = study_task(config)
    store = open_artifact_store(config.artifact_location, create=False)
    source = provenance.locate_source(task, config, data, study)
    data_folder = task.prepare(config, str(source), search_space(task, config.space).shared)
    provenance.check_fingerprint(study, task.fingerprint(data_folder), source, "the ensemble")
    complete = ranked_trials(study)
    held = {t.number for t in complete[:size]}
    with holding(study, held, "hpo ensemble") as removed:
        # What a collection removed before the hold was recorded is in `removed`.
        ranked = [t for t in complete[:size] if t.number not in removed]
        if not ranked:
            raise StoreError(
                f"hpo gc removed the checkpoints of study {study.study_name!r}'s best trials "
                f"while the ensemble started; there is nothing to ensemble. Run it again."
            )
        y_val = np.asarray(task.trial_data(data_folder, ranked[0].params).y_val)
        candidates, skipped = pool_candidates(
            ranked,
            store,
            len(ranked),
            scratch,
            y_val,
            regression=is_regression(study),
            open_classes=task.open_classes,
        )
        yield StudyPool(task, source, data_folder, store, y_val, candidates, skipped, len(complete))


def refit_ensemble(
    config: StudyConfig, fitted: FittedEnsemble, folder: Path, log: Any = _log.info
) -> FittedEnsemble:
    """The fitted ensemble with each weighted member refitted on training + validation data
    into `folder` (`hpo.ensemble.refit`); its weights, temperature and validation predictions
    stay the searched members'. `log` is called with a line before each refit."""
    weights = fitted.choice.weights
    weighted = [m.trial for m, w in zip(fitted.members, weights, strict=True) if w > 0]
    refits = refit_members(config, fitted.data_folder, weighted, folder, log)
    members = [
        dataclasses.replace(
            m,
            checkpoint=refits[m.trial.number].path,
            model=load_keras_file(refits[m.trial.number].path),
        )
        if m.trial.number in refits
        else m
        for m in fitted.members
    ]
    return dataclasses.replace(
        fitted, members=members, refitted=[r.as_dict() for r in refits.values()]
    )


def _choose(
    candidates: list[Candidate],
    store: ArtifactStore,
    folder: Path,
    y_val: np.ndarray,
    top: int,
    method: Method,
    calibrate: bool,
    verify: Callable[[Member], None],
) -> tuple[list[Member], Choice, list[dict[str, Any]]]:
    """The members the kept ensemble and the plain one use, loaded, the choice over them, and
    the trials skipped because their checkpoint failed.

    A member whose checkpoint does not verify or load, or whose model no longer predicts what
    its trial recorded (`verify`), leaves the pool, and the choice is made again without it
    (the next best trial then joins the plain top ensemble).
    """
    loaded: dict[int, Member] = {}
    skipped: list[dict[str, Any]] = []
    pooled = list(candidates)
    while candidates:
        choice = choose(
            np.stack([c.val_predictions for c in candidates]), y_val, top, method, calibrate
        )
        used = choice.used()
        try:
            for index in used:
                candidate = candidates[index]
                if candidate.trial.number not in loaded:
                    member = load_member(candidate, store, folder)
                    verify(member)
                    loaded[candidate.trial.number] = member
        except CheckpointError as exc:
            skip(skipped, candidate.trial, exc)
            candidates.remove(candidate)
            continue
        members = [loaded[candidates[i].trial.number] for i in used]
        return members, choice.subset(used), skipped
    rank = {c.trial.number: i for i, c in enumerate(pooled)}
    best = min(skipped, key=lambda s: rank.get(s["trial"], len(rank)))
    raise StoreError(
        f"none of the {len(pooled)} COMPLETE trials with usable validation predictions has a "
        f"usable checkpoint, so there is no "
        f"ensemble to build (the warnings above give each reason). The best one: "
        f"{best['reason']}"
    )


def running_on() -> tuple[str | None, str]:
    """This process's Keras backend and device, as a trial records them (`verify_member`)."""
    from hpo.backend import device_name, keras_backend

    return keras_backend(), device_name()


def verify_member(
    task: Task, x_val: np.ndarray, member: Member, rows: np.ndarray, here: tuple[str | None, str]
) -> None:
    """Checks that the loaded member predicts, on validation `rows` (of its trial's validation
    inputs `x_val`), what its trial recorded (its stored validation predictions, which the
    ensemble's weights are fitted on); `here` is where this process computes (`running_on()`).

    A checkpoint names its classes and is built with the code loaded now: a layer, model or
    family module of the user's that changed since the trial (a notebook cell run again,
    `%autoreload`, an edited file) loads, and computes something else. Where the trial ran on
    another backend or device (a GPU's TF32 matrix products, say), the same model's
    predictions differ by more than rounding, and only a gap a changed model makes counts.

    Raises:
        CheckpointError: It predicts otherwise, or not at all.
    """
    trial = member.trial
    ran_on = (trial.user_attrs.get(Attr.BACKEND), trial.user_attrs.get(Attr.DEVICE))
    expected = np.asarray(member.val_predictions[rows], dtype=np.float64)
    cause = (
        "The likeliest cause is a layer, model or family module of yours whose code changed "
        "since the trial trained (a notebook cell run again, %autoreload, an edited file): run "
        f"this with the code as the trials had it, or {_search_anew(task)}."
    )
    try:
        got = np.asarray(predict_member(task, member.model, x_val[rows], trial), np.float64)
        got = got.reshape(expected.shape)
    except Exception as exc:  # the user's code, changed: other outputs, or none
        raise CheckpointError(
            f"trial {trial.number}'s model, loaded, no longer predicts as its trial did "
            f"({type(exc).__name__}: {exception_text(exc, 200)}). {cause}"
        ) from exc
    # Ten times what two computations of one prediction may differ by (a half-precision model
    # batched otherwise than in its trial); more where the trial ran elsewhere.
    same = ran_on == here
    allowed = 10 * tolerance(model_precision(member.model)) if same else _ACROSS_MACHINES
    # On the values' own scale for regression targets.
    allowed_each = allowed * np.maximum(1.0, np.abs(expected))
    gaps = np.abs(got - expected)
    bad = ~(gaps <= allowed_each)  # NaN included
    if bad.any():
        worst = int(np.argmax(np.where(bad, gaps / allowed_each, -1).reshape(len(rows), -1).max(1)))
        elsewhere = f"its trial ran on {ran_on[0]} {ran_on[1]}, this on {here[0]} {here[1]}"
        where = "" if same else f" ({elsewhere}; a gap of up to {allowed:g} was allowed for that)"
        raise CheckpointError(
            f"trial {trial.number}'s model, loaded, no longer predicts what its trial recorded"
            f"{where}: on validation example {int(rows[worst])} it gives "
            f"{np.ravel(got[worst])[:3]} against {np.ravel(expected[worst])[:3]}. {cause}"
        )


def _search_anew(task: Task) -> str:
    """How to search again without the trials whose stored models the changed code no longer
    computes as they did: an hpo.Tuner project has no study file, and is named in Python."""
    if task.name == ARRAYS.name:
        return "search again under a new project_name (or with overwrite=True)"
    return "search again under a new study name"


# How far a model's predictions may move between backends or devices (a GPU's TF32 matrix
# products against a CPU's float32, a resize computed otherwise): well below what a changed
# layer makes of them.
_ACROSS_MACHINES = 0.05


def stacked_predictions(task: Task, members: Sequence[Member], x: np.ndarray) -> np.ndarray:
    """Each member's predictions for inputs `x` as the task encodes them, stacked:
    `[members, n(, classes or targets)]`."""
    return np.stack(
        [
            predict_member(task, m.model, task.member_inputs(x, m.trial.params), m.trial)
            for m in members
        ]
    )


def predict_member(task: Task, model: keras.Model, x: np.ndarray, trial: FrozenTrial) -> np.ndarray:
    """A member's probabilities for inputs `x` (at its own size), as it was evaluated on
    validation: padded to its seq_len if its model depends on padding (recorded by the trial;
    trials from before the rule were all bucketed)."""
    bucketed = trial.user_attrs.get(Attr.PADDING, Padding.BUCKETED.value) != Padding.FIXED.value
    return metrics.as_probabilities(task.predict(model, x, bucketed=bucketed))
