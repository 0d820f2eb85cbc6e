"""How to combine, after the ensemble: distil it into one model, test that once, export it.

`distill_ensemble` reads the ensemble's soft labels (`teacher`), chooses the student's family and
parameters, trains it in its own process (`student`), and only then reads the test set, once,
to score the student beside the ensemble and its best member and to time all three side by side
(`latency`); the report (`report`) and the student's export go to `<ensemble>/distilled/`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from hpo import metrics
from hpo._json import read_json
from hpo.artifacts import holding
from hpo.backend import keras_backend
from hpo.contract import fetch_checkpoint, load_checkpoint, load_keras_file
from hpo.data import provenance, testset
from hpo.disk import raise_if_full
from hpo.distill.latency import latencies
from hpo.distill.report import GOAL, distill_report
from hpo.distill.student import StudentJob, StudentResult, train_student
from hpo.distill.teacher import (
    TeacherMember,
    augmented_labels,
    check_still_teacher,
    check_teacher,
    cross_fitted,
    soft_labels,
    teacher_members,
)
from hpo.ensemble.build import predict_member
from hpo.ensemble.evaluated import (
    PREDICTIONS_NAME,
    REPORT_KEY,
    load_predictions,
    save_predictions,
)
from hpo.ensemble.export import (
    EXPORT_NAME,
    check_export,
    check_rows,
    export_model,
    takes_text,
    write_tokenizer,
)
from hpo.ensemble.output_folder import (
    OutputKind,
    check_out_dir,
    folder_lock,
    publish,
    replacing,
    staging_for,
)
from hpo.ensemble.predict import load_export
from hpo.ensemble.refit import in_trial_process
from hpo.ensemble.selection import ranked_trials
from hpo.errors import ConfigError, DataError, StoreError
from hpo.scratch import scratch_folder
from hpo.store import open_artifact_store
from hpo.study import default_params, search_space
from hpo.tasks import study_task
from hpo.training.interface import tolerance

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.study import SearchSpace
    from hpo.tasks import Task

__all__ = ["DISTILLED_DIR", "DistillResult", "check_arguments", "distill_ensemble"]

DISTILLED_DIR = "distilled"  # inside the ensemble's folder
LATENCY_EXAMPLES = 1000
LATENCY_REPEATS = 5
# Batches of timed predictions: what `hpo predict` uses.
LATENCY_BATCH = 256
# Validation inputs each member is timed on to find the fastest.
MEMBER_TIMING_EXAMPLES = 512
# The most a student may take to predict, as a share of the ensemble's latency, by default: the
# goal's.
MAX_LATENCY = GOAL["latency_ratio_at_most"]

_log = logging.getLogger("hpo.distill")


@dataclass(frozen=True)
class DistillResult:
    """Where the student was written and its report."""

    out_dir: Path
    report: dict[str, Any]


def distill_ensemble(
    config: StudyConfig,
    study: optuna.Study,
    ensemble_dir: Path,
    *,
    family: str | None = None,
    out_dir: Path | None = None,
    data: str | None = None,
    max_epochs: int | None = None,
    latency_examples: int = LATENCY_EXAMPLES,
    repeats: int = LATENCY_REPEATS,
    cross_fit: int = 0,
    label_weight: float = 0.0,
    augment: int = 0,
    warm_start: bool = False,
    refit: bool = False,
    max_latency: float = MAX_LATENCY,
    progress: Callable[[str], None] = _log.info,
) -> DistillResult:
    """Trains one model of the study on the ensemble's soft labels, tests it once, exports it.

    The student is trained on the ensemble's probabilities for the study's training inputs,
    with the study's validation split (true labels) for early stopping, in its own process.
    The test set is read after it is trained, once: the student, the ensemble and its best
    member (by validation) are scored on it and timed side by side on the same test inputs.

    Args:
        ensemble_dir: A folder `hpo ensemble` wrote (its report.json and ensemble.keras).
        family: The student's family; default the ensemble's fastest member's. Its parameters
            are those of the family's best member by validation within `max_latency`, else of
            its fastest member, else of the family's best trial in the study, else the
            family's defaults (`choose_student`).
        out_dir: Where the report and export go (default `<ensemble_dir>/distilled`).
        data: The data source, as `hpo ensemble --data` takes it.
        max_epochs: The most epochs of the student (default the study's `max_epochs`).
        latency_examples: How many test inputs each model predicts per timed call.
        repeats: Timed rounds (their median counts).
        cross_fit: 0 (default): the soft labels are the members' own predictions on the
            training rows, which they learned from. K >= 2: each training row's come from the
            members' configurations trained from scratch without its fold of K, for their
            trials' best epoch counts (K trainings per member; the validation labels stay the
            ensemble's).
        label_weight: The true labels' share of the student's training targets, from 0 (the
            soft labels alone, the default) to 1 (the labels alone: the student's family trained
            as a trial is, the baseline distillation is measured against).
        augment: Altered copies of the training inputs (`Task.augmented`) the student also
            learns, each labelled by the ensemble alone: inputs no member learned from, on
            which the ensemble's probabilities say what it knows beyond the labels (default 0).
        warm_start: The student starts from the weights of the trial whose parameters it
            takes (its best epoch), at the learning rate that epoch had, instead of from
            scratch: it is that model, trained on the soft labels.
        refit: Once early stopping has chosen the student's epoch count, train it again from
            scratch on the training and validation inputs (the ensemble's soft labels on both,
            and the copies) for that many epochs, at the rates those epochs had: that model is
            the one tested and exported. The validation scores are the early-stopped
            student's, and its test scores are reported beside (`report["student"]["refit"]`).
        max_latency: The members the student may take its parameters from: those whose
            latency is at most this share of the ensemble's (its members' sum; default 1/3).
        progress: Called with a line as each step ends.

    Raises:
        ConfigError: No ensemble in `ensemble_dir`, one of another study, a family the study
            does not search, or an argument out of its range (`check_arguments`).
    """
    max_latency = check_arguments(
        max_latency=max_latency,
        augment=augment,
        cross_fit=cross_fit,
        label_weight=label_weight,
        max_epochs=max_epochs,
        latency_examples=latency_examples,
        repeats=repeats,
    )
    ensemble_dir = Path(ensemble_dir)
    # The teacher stays as it is read until its student is published beside it: `hpo ensemble`
    # replacing it, or `hpo export` adding to it, waits (and this waits for them).
    with folder_lock(ensemble_dir):
        return _distill(
            config,
            study,
            ensemble_dir,
            family=family,
            out_dir=out_dir,
            data=data,
            max_epochs=max_epochs,
            latency_examples=latency_examples,
            repeats=repeats,
            cross_fit=cross_fit,
            label_weight=label_weight,
            augment=augment,
            warm_start=warm_start,
            refit=refit,
            max_latency=max_latency,
            progress=progress,
        )


def check_arguments(
    *,
    max_latency: object = MAX_LATENCY,
    augment: object = 0,
    cross_fit: object = 0,
    label_weight: object = 0.0,
    max_epochs: object = None,
    latency_examples: object = LATENCY_EXAMPLES,
    repeats: object = LATENCY_REPEATS,
) -> float:
    """Refuses a distillation's argument out of its range, before any work, naming it as
    Python and the command spell it; returns `max_latency` as a float.

    Raises:
        ConfigError: The first argument out of its range, and a value it takes.
    """

    def refuse(name: str, flag: str, value: object, takes: str, example: str) -> NoReturn:
        raise ConfigError(
            f"{name} ({flag}) takes {takes}, not {value!r}; use {name}={example} "
            f"({flag} {example}), say."
        )

    def whole(value: object, least: int) -> bool:
        return (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and int(value) >= least
        )

    def real(value: object) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    if not (real(max_latency) and 0 < max_latency < math.inf):  # type: ignore[operator]
        refuse(
            "max_latency",
            "--max-latency",
            max_latency,
            "a positive share of the ensemble's latency",
            "1/3",
        )
    if not whole(augment, 0):
        refuse("augment", "--augment", augment, "a number of altered copies, 0 or more", "2")
    if not (whole(cross_fit, 0) and cross_fit != 1):
        refuse("cross_fit", "--cross-fit", cross_fit, "0 (off) or 2 folds or more", "2")
    if not (real(label_weight) and 0 <= label_weight <= 1):  # type: ignore[operator]
        refuse(
            "label_weight",
            "--label-weight",
            label_weight,
            "a number from 0 (soft labels only) to 1 (true labels only)",
            "0.5",
        )
    if max_epochs is not None and not whole(max_epochs, 1):
        refuse("max_epochs", "--max-epochs", max_epochs, "a number of epochs, 1 or more", "12")
    if not whole(latency_examples, 1):
        refuse(
            "latency_examples",
            "--latency-examples",
            latency_examples,
            "a number of test inputs, 1 or more",
            str(LATENCY_EXAMPLES),
        )
    if not whole(repeats, 1):
        refuse("repeats", "--repeats", repeats, "a number of timed rounds, 1 or more", "5")
    return float(max_latency)  # type: ignore[arg-type]


def _distill(
    config: StudyConfig,
    study: optuna.Study,
    ensemble_dir: Path,
    *,
    family: str | None,
    out_dir: Path | None,
    data: str | None,
    max_epochs: int | None,
    latency_examples: int,
    repeats: int,
    cross_fit: int,
    label_weight: float,
    augment: int,
    warm_start: bool,
    refit: bool,
    max_latency: float,
    progress: Callable[[str], None],
) -> DistillResult:
    """`distill_ensemble`'s work, under the ensemble folder's lock."""
    recorded = read_ensemble_report(ensemble_dir)
    # Before any work: the student is compared with them only after it has trained.
    evaluated = load_predictions(ensemble_dir, recorded)
    if recorded.get("study") != study.study_name:
        raise ConfigError(
            f"the ensemble in {ensemble_dir} was built from study {recorded.get('study')!r}, not "
            f"{study.study_name!r}; pass that study's file: --study FILE."
        )
    if recorded.get("refit"):
        # Its members learned the validation inputs that the student's training stops on and
        # that the soft labels are checked against.
        raise ConfigError(
            f"the ensemble in {ensemble_dir} was refitted on training + validation data (hpo "
            f"ensemble --refit, which make ensemble runs), so its members have seen the "
            f"validation inputs the student is stopped on. Distil the ensemble as searched: hpo "
            f"ensemble --top 5 --study FILE --out {ensemble_dir}-searched (no --refit), then hpo "
            f"distill --ensemble {ensemble_dir}-searched."
        )
    task = study_task(config)
    if augment and task.augmented is None:
        raise ConfigError(
            f"augment (--augment): task {task.name!r} has no way to alter its inputs (text "
            f"tasks have); leave it out."
        )
    space = search_space(task, config.space)
    families = [str(f) for f in space.family.choices]
    if family is not None and family not in families:
        raise ConfigError(
            f"family (--family) {family!r} is not a family of study {study.study_name!r}; it "
            f"searches {', '.join(families)}. Use {families[0]!r}, or leave it out for the "
            f"ensemble's fastest member's."
        )
    out_dir = check_out_dir(
        out_dir or ensemble_dir / DISTILLED_DIR,
        OutputKind.DISTILLATION,
        study=study.study_name,
        storage=config.storage_url,
    )
    if said := replacing(out_dir):
        progress(said)
    export, _ = load_export(ensemble_dir)
    members, temperature = teacher_members(export, study)
    source = provenance.locate_source(task, config, data, study)
    data_folder = task.prepare(config, str(source), space.shared)
    provenance.check_fingerprint(study, task.fingerprint(data_folder), source, "the distillation")

    soft = soft_labels(task, data_folder, members, temperature)
    labels = task.trial_data(data_folder, members[0].trial.params)
    teacher_val = check_teacher(
        soft.val, labels.y_val, recorded["validation"]["ensemble"], ensemble_dir
    )
    progress(
        f"Soft labels: the ensemble's {len(members)} members on {len(soft.train)} training "
        f"inputs (validation accuracy {teacher_val['accuracy']:.4f}, as its report records)."
    )
    # Before the labels that take long (folds, copies): the student, and what it starts from.
    member_latency = _member_latencies(task, data_folder, members, labels.y_val, repeats)
    params, chosen, source_trial = choose_student(
        task, space, study, members, member_latency, family, max_latency
    )
    if warm_start and source_trial is None:
        raise ConfigError(
            f"warm_start (--warm-start): the student's family, {params['family']}, has no "
            f"completed trial in study {study.study_name!r} to start from. Leave it out (the "
            f"student then trains from scratch at the family's defaults), or pick a family "
            f"with a trial: family= (--family)."
        )
    progress(f"Student: {params['family']}, with the parameters of {chosen}.")

    with scratch_folder("distill") as scratch:
        start, start_rate = None, None
        if warm_start:
            assert source_trial is not None
            start = Path(scratch) / "warm_start.keras"
            _member_model(
                config, study, members, source_trial, Path(scratch), WARM_START_ROLE
            ).save(start)
            start_rate = best_epoch_rate(source_trial)
            chosen = f"{chosen}, starting from its weights at its best epoch"
            progress(f"Warm start: the student begins as trial {source_trial.number} ended.")
        if cross_fit:
            soft = cross_fitted(config, data_folder, soft, members, cross_fit, _log.info)
            progress(
                f"Cross-fitted: {cross_fit} folds per member in {soft.seconds:.0f} s; the soft "
                f"labels agree with the training labels on "
                f"{metrics.accuracy(labels.y_train, soft.train):.4f} of rows."
            )
        soft = dataclasses.replace(soft, label_weight=label_weight)
        if augment:
            soft = augmented_labels(task, data_folder, soft, members, augment, config.sampler.seed)
            assert soft.augmented is not None
            progress(
                f"Augmented: {augment} altered copies of the training inputs, labelled by the "
                f"ensemble; its class agrees with the original input's label on "
                f"{metrics.accuracy(np.tile(labels.y_train, augment), soft.augmented):.4f} of "
                f"them."
            )
        targets = Path(scratch) / "soft_labels.npy"
        np.save(targets, soft.targets(labels.y_train).astype(np.float32))
        refit_targets = None
        if refit:
            refit_targets = Path(scratch) / "soft_labels_validation.npy"
            np.save(refit_targets, soft.val_targets(labels.y_val))
        job = StudentJob(
            config=config,
            data_folder=data_folder,
            params=dict(params),
            targets=targets,
            work=Path(scratch),
            max_epochs=max_epochs or config.training.max_epochs,
            augment=augment,
            sampled=source_trial is not None,
            start=start,
            start_rate=start_rate,
            refit_targets=refit_targets,
        )
        result = _train(job, config)
        student = load_keras_file(result.path)
        # With --refit the student learned the validation inputs: its validation scores are
        # the early-stopped student's.
        early_stopped = student if result.refit is None else load_keras_file(result.refit.searched)
        student_data = task.trial_data(data_folder, params)
        student_val = _predict(task, early_stopped, student_data.x_val, result.bucketed)
        progress(
            f"Student trained: {result.epochs} epochs ({result.epoch_seconds:.1f} s each), best "
            f"epoch {result.best_epoch}, validation accuracy "
            f"{metrics.accuracy(labels.y_val, student_val):.4f}."
        )
        if result.refit is not None:
            progress(
                f"Refitted on {result.refit.examples} training and validation inputs (copies "
                f"included) for {result.refit.epochs} epoch(s) in {result.refit.seconds:.0f} s."
            )

        # The final evaluation: the test set is read here, once, after the student is trained.
        test = task.load_test(config, str(source), data_folder)
        test_data = testset.fingerprint(test.raw, test.y, test.source)
        ensemble_test = _ensemble_test(ensemble_dir, recorded, test_data, evaluated)
        best_trial = _best_member(study, recorded)
        best_model = _member_model(
            config, study, members, best_trial, Path(scratch), BEST_MEMBER_ROLE
        )
        best_test = predict_member(
            task, best_model, task.member_inputs(test.x, best_trial.params), best_trial
        )
        student_inputs = task.member_inputs(test.x, params)
        student_test = _predict(task, student, student_inputs, result.bucketed)
        early_stopped_test = (
            None
            if result.refit is None
            else _predict(task, early_stopped, student_inputs, result.bucketed)
        )

        staging = staging_for(out_dir)
        staging.mkdir(parents=True)
        try:
            student_export = export_model(task, data_folder, params, student, "student")
            student_export.save(staging / EXPORT_NAME)
            inputs = test.raw if takes_text(student_export) or not task.padded else test.x
            checked = check_export(
                staging / EXPORT_NAME,
                inputs,
                test.y,
                student_test,
                tolerance(result.precision),
            )
            served = load_keras_file(staging / EXPORT_NAME)
            best_export = export_model(
                task, data_folder, best_trial.params, best_model, "best_member"
            )
            rows = check_rows(test.y, latency_examples, seed=1)
            batch = inputs[rows]
            timed = latencies(
                {
                    name: _timed(model, batch)
                    for name, model in (
                        ("student", served),
                        ("ensemble", export),
                        ("best_member", best_export),
                    )
                },
                len(rows),
                repeats,
            )
            report = distill_report(
                config=config,
                study=study,
                ensemble_dir=ensemble_dir,
                recorded=recorded,
                members=members,
                member_latency=member_latency,
                params=params,
                chosen=chosen,
                max_latency=max_latency,
                warm_start=(
                    {"trial": source_trial.number, "learning_rate": result.start_rate}
                    if warm_start and source_trial
                    else None
                ),
                result=result,
                soft=soft,
                y_train=labels.y_train,
                y_val=labels.y_val,
                student_val=student_val,
                teacher_val=teacher_val,
                best_trial=best_trial.number,
                y_test=test.y,
                early_stopped_test=early_stopped_test,
                predictions={
                    "student": student_test,
                    "ensemble": ensemble_test,
                    "best_member": best_test,
                },
                latency=timed,
                latency_examples=len(rows),
                repeats=repeats,
                batch_size=LATENCY_BATCH,
            )
            report["test_data"] = test_data.as_dict()
            report["out_dir"] = str(out_dir)
            report["backend"] = str(keras_backend())
            report["classes"] = recorded.get("classes") or task.class_names(data_folder)
            report["export"] = checked
            report["export"].update(write_tokenizer(task, data_folder, staging))
            report[REPORT_KEY] = save_predictions(staging, student_test)
            (staging / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
            check_still_teacher(ensemble_dir, recorded)
            publish(staging, out_dir)
        except Exception as exc:
            raise_if_full(exc, out_dir)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return DistillResult(out_dir=out_dir, report=report)


def read_ensemble_report(ensemble_dir: Path) -> dict[str, Any]:
    """The report.json of a folder `hpo ensemble` wrote.

    Raises:
        ConfigError: The folder, its report or its export is missing, or the report is not one.
    """
    report_path = ensemble_dir / "report.json"
    hint = "Build one first: hpo ensemble --top 5 (it writes ensembles/<study>-top5)."
    if not ensemble_dir.is_dir():
        raise ConfigError(f"--ensemble {ensemble_dir}: no such folder. {hint}")
    if (ensemble_dir / EXPORT_NAME).is_file() and not report_path.exists():
        raise ConfigError(
            f"--ensemble {ensemble_dir} holds {EXPORT_NAME} alone, as "
            "Tuner.ensemble().export(path) writes it: hpo distill trains a family of a study "
            "file's on what hpo ensemble --study FILE recorded beside it (report.json: the "
            "members, their validation predictions), and a Tuner's search has neither. Distil "
            "it with your own code (keras.distillation.Distiller, the teacher "
            f"keras.saving.load_model of {EXPORT_NAME}), or search from a study file and run "
            "hpo ensemble on it."
        )
    if not report_path.is_file() or not (ensemble_dir / EXPORT_NAME).is_file():
        raise ConfigError(
            f"--ensemble {ensemble_dir} holds no ensemble (report.json and {EXPORT_NAME}). {hint}"
        )
    try:
        report = read_json(report_path)
        report["validation"]["ensemble"]["log_loss"]
        best = report["members"][0]["trial"]
        if not isinstance(best, int) or isinstance(best, bool):
            raise TypeError(f"its best member's trial is {best!r}, not a trial number")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ConfigError(
            f"{report_path} is not a report of hpo ensemble ({exc!r}). {hint}"
        ) from exc
    return dict(report)


def choose_student(
    task: Task,
    space: SearchSpace,
    study: optuna.Study,
    members: list[TeacherMember],
    member_latency: dict[int, float],
    family: str | None,
    max_latency: float = MAX_LATENCY,
) -> tuple[dict[str, Any], str, FrozenTrial | None]:
    """The student's parameters, whose they are, and that trial (None: the family's defaults).

    The family is `family`, else the ensemble's fastest member's (by measured latency). Its
    parameters are those of the family's best member by validation among those that predict
    within `max_latency` of the ensemble's latency (the sum of its members'), else of the
    family's fastest member, else of the family's best trial in the study, else its defaults.
    Members of one shape time within noise of each other, and the fastest member is not
    always the best of its kind: on the seed-44 teacher of benchmarks/RESULTS.md the fastest
    `ngram` member read 400 tokens of a review, the best one 1,600.
    """
    if family is None:
        fastest = min(members, key=lambda m: member_latency[m.trial.number])
        family = fastest.trial.params.get("family")
        whose = " (the fastest member's family)"
    else:
        whose = ""
    candidates = [m for m in members if m.trial.params.get("family") == family]
    what = f"{family} member" if family else "member"
    if candidates:
        # A member exactly at the share counts (equal members, a float's rounding).
        budget = max_latency * sum(member_latency[m.trial.number] for m in members) * (1 + 1e-9)
        within = f"within {max_latency * 100:.3g}% of the ensemble's latency (its members' sum)"
        fitting = [m for m in candidates if member_latency[m.trial.number] <= budget]
        if not fitting:
            chosen = min(candidates, key=lambda m: member_latency[m.trial.number]).trial
            return (
                dict(chosen.params),
                f"trial {chosen.number}, the fastest {what}{whose}; none is {within}",
                chosen,
            )
        rank = {t.number: i for i, t in enumerate(ranked_trials(study))}
        chosen = min(fitting, key=lambda m: rank.get(m.trial.number, len(rank))).trial
        among = (
            f"the only {what}"
            if len(fitting) == 1
            else f"the best by validation of the {len(fitting)} {what}s"
        )
        return dict(chosen.params), f"trial {chosen.number}, {among}{whose} {within}", chosen
    trials = [t for t in ranked_trials(study) if t.params.get("family") == family]
    if trials:
        best = trials[0]
        return dict(best.params), f"trial {best.number}, the best {family} trial", best
    defaults = next(p for p in default_params(task, space) if p["family"] == family)
    return defaults, f"the {family} family's defaults (no trial of it completed)", None


def best_epoch_rate(trial: FrozenTrial) -> float | None:
    """The learning rate `trial` had at its best epoch (as its metrics record it; the rate a
    plateau had cut), else its sampled one, else None (the student's optimizer keeps its own)."""
    metrics_at_best = trial.user_attrs.get("metrics") or {}
    logged = metrics_at_best.get("learning_rate")
    rate = logged if logged is not None else trial.params.get("learning_rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return None


def _member_latencies(
    task: Task,
    data_folder: Path,
    members: list[TeacherMember],
    y_val: np.ndarray,
    repeats: int,
) -> dict[int, float]:
    """Each member's milliseconds per 1,000 validation inputs, timed side by side as the
    export runs it (full-size inputs, `LATENCY_BATCH` at a time)."""
    rows = check_rows(y_val, MEMBER_TIMING_EXAMPLES, seed=1)
    predictors = {}
    for member in members:
        x = task.trial_data(data_folder, member.trial.params).x_val[rows]
        predictors[str(member.trial.number)] = _timed(member.model, x)
    return {int(n): ms for n, ms in latencies(predictors, len(rows), repeats).items()}


def _timed(model: keras.Model, x: np.ndarray) -> Callable[[], object]:
    return lambda: model.predict(x, batch_size=LATENCY_BATCH, verbose=0)


def _predict(task: Task, model: keras.Model, x: np.ndarray, bucketed: bool) -> np.ndarray:
    return metrics.as_probabilities(task.predict(model, x, bucketed=bucketed))


def _train(job: StudentJob, config: StudyConfig) -> StudentResult:
    """Trains the student in its own process, as a trial is trained."""
    log_path = config.study_dir / "logs" / "distill.log"
    return in_trial_process(train_student, job, log_path, "training the student failed")


def _ensemble_test(
    ensemble_dir: Path,
    recorded: dict[str, Any],
    test_data: testset.Fingerprint,
    predictions: np.ndarray,
) -> np.ndarray:
    """The ensemble's evaluated test predictions (`load_predictions`'s), if they are of this
    test set.

    Raises:
        DataError: The test set differs from the one the ensemble was evaluated on.
    """
    previous = (recorded.get("test_data") or {}).get("sha256")
    if previous is not None and previous != test_data.sha256:
        raise DataError(
            f"the test data ({test_data.examples} examples from {test_data.source}, fingerprint "
            f"{test_data.sha256[:16]}) is not what the ensemble in {ensemble_dir} was evaluated "
            f"on ({previous[:16]}); the scores would not compare. Pass that data (--data), or "
            f"rebuild the ensemble on this one."
        )
    if len(predictions) != test_data.examples:
        raise DataError(
            f"{ensemble_dir / PREDICTIONS_NAME} holds {len(predictions)} predictions for "
            f"{test_data.examples} test examples; rebuild the ensemble with hpo ensemble."
        )
    return predictions


def _best_member(study: optuna.Study, recorded: dict[str, Any]) -> FrozenTrial:
    """The best single model of the ensemble's pool by validation (first in its report),
    which the ensemble may weigh 0: the model the ensemble's gain is measured over."""
    number = recorded["members"][0]["trial"]
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise ConfigError(
            f"the ensemble's best member, trial {number}, is not in study {study.study_name!r}: "
            f"the ensemble was built on another study. Pass that study (--study)."
        )
    return found[0]


BEST_MEMBER_ROLE = (
    "the ensemble's best member, which the student is compared with",
    "Build the ensemble again (hpo ensemble, which records its best member so that hpo gc "
    "keeps it), and distil that one.",
)
WARM_START_ROLE = (
    "which the student would start from (--warm-start)",
    "Leave --warm-start out (the student trains from scratch with its parameters), or pick a "
    "family with a member in the ensemble: --family.",
)


def _member_model(
    config: StudyConfig,
    study: optuna.Study,
    members: list[TeacherMember],
    trial: FrozenTrial,
    folder: Path,
    role: tuple[str, str],
) -> keras.Model:
    """A trial's model: from the export if it is a member there, else its verified checkpoint.

    Args:
        role: What the model is for, and the fix if hpo gc removed its checkpoint (the
            `*_ROLE` pairs).
    """
    for member in members:
        if member.trial.number == trial.number:
            return member.model
    store = open_artifact_store(config.artifact_location, create=False)
    with holding(study, [trial.number], "hpo distill") as removed:
        if trial.number in removed:
            what, fix = role
            raise StoreError(
                f"trial {trial.number}, {what}, has no checkpoint: hpo gc removed it "
                f"({removed[trial.number]}). {fix}"
            )
        return load_checkpoint(fetch_checkpoint(store, trial, folder), trial.number)
