"""How to combine, after the ensemble: the distillation's report and its terminal table."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.contract import Attr
from hpo.distill.teacher import teacher_identity
from hpo.store import redact_url

if TYPE_CHECKING:
    from pathlib import Path

    import optuna

    from hpo.config import StudyConfig
    from hpo.distill.student import StudentResult
    from hpo.distill.teacher import SoftLabels, TeacherMember

__all__ = ["GOAL", "distill_report", "format_table"]

# What a student must achieve to be worth serving instead of the ensemble.
GOAL = {"gain_kept_at_least": 0.5, "latency_ratio_at_most": 1 / 3}
MODELS = ("best_member", "ensemble", "student")


def distill_report(
    *,
    config: StudyConfig,
    study: optuna.Study,
    ensemble_dir: Path,
    recorded: dict[str, Any],
    members: list[TeacherMember],
    member_latency: dict[int, float],
    params: dict[str, Any],
    chosen: str,
    max_latency: float,
    warm_start: dict[str, Any] | None,
    result: StudentResult,
    soft: SoftLabels,
    y_train: np.ndarray,
    y_val: np.ndarray,
    student_val: np.ndarray,
    teacher_val: dict[str, float],
    best_trial: int,
    y_test: np.ndarray,
    early_stopped_test: np.ndarray | None = None,
    predictions: dict[str, np.ndarray],
    latency: dict[str, float],
    latency_examples: int,
    repeats: int,
    batch_size: int,
) -> dict[str, Any]:
    """The student beside the ensemble and its best member: test scores, agreement with the
    ensemble, latency, and whether the goal (`GOAL`) is met.

    Args:
        warm_start: The trial whose weights the student started from, and the rate it started
            at (None: from scratch).
        early_stopped_test: With `--refit`, the test probabilities of the student before its
            refit (the early-stopped one, which the validation scores are of).
        predictions: Test probabilities of "student", "ensemble" and "best_member".
        latency: Milliseconds per 1,000 test inputs of each, measured side by side.
    """
    test = {name: metrics.summary(y_test, predictions[name]) for name in MODELS}
    created, sha256 = teacher_identity(recorded)
    ensemble = predictions["ensemble"]
    return {
        "study": study.study_name,
        "storage": redact_url(config.storage_url),
        "task": config.task,
        "ensemble_dir": str(ensemble_dir),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "student": {
            "family": params["family"],
            "chosen": chosen,
            # The share of the ensemble's latency (its members' sum) a member the student takes
            # its parameters from may have (`choose_student`).
            "max_latency": round(max_latency, 6),
            "warm_start": warm_start,
            "params": params,
            "precision": result.precision,
            "params_count": result.params_count,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "epoch_seconds": result.epoch_seconds,
            "train_seconds": result.train_seconds,
            "stop_reason": result.stop_reason,
            "peak_memory_mb": result.peak_memory_mb,
            "history": result.history,
            # Trained again on training + validation inputs for its best epoch count
            # (`--refit`), and how the early-stopped student scored on test; None: not refitted.
            "refit": (
                None
                if result.refit is None or early_stopped_test is None
                else {
                    **result.refit.as_dict(),
                    "early_stopped_test": metrics.summary(y_test, early_stopped_test),
                }
            ),
        },
        "teacher": {
            # The ensemble in `ensemble_dir` it was distilled from (`teacher_identity`).
            "created": created,
            "sha256": sha256,
            "members": [
                {
                    "trial": m.trial.number,
                    "family": m.trial.params.get("family"),
                    "weight": round(m.weight, 6),
                    "ms_per_1000": member_latency[m.trial.number],
                    "epoch_seconds": m.trial.user_attrs.get(Attr.EPOCH_SECONDS),
                }
                for m in members
            ],
            "temperature": soft.temperature,
        },
        "soft_labels": {
            # 0: the members' own predictions on rows they learned from; K: cross-fitted.
            "cross_fit_folds": soft.folds,
            "cross_fit_seconds": soft.seconds,
            # The true labels' share of the student's targets (0: the soft labels alone).
            "label_weight": soft.label_weight,
            "train_examples": len(soft.train),
            # How far they are from hard labels: 1 would be one-hot.
            "mean_top_probability": round(float(np.mean(_top(soft.train))), 6),
            "agree_with_labels": round(metrics.accuracy(y_train, soft.train), 6),
            # Altered copies of the training inputs the student also learned (`--augment`).
            "augment_copies": 0 if soft.augmented is None else len(soft.augmented) // len(y_train),
            "augmented_agree_with_labels": (
                None
                if soft.augmented is None
                else round(
                    metrics.accuracy(
                        np.tile(y_train, len(soft.augmented) // len(y_train)), soft.augmented
                    ),
                    6,
                )
            ),
        },
        "best_member": {"trial": best_trial},
        "validation": {
            "student": {
                "accuracy": round(metrics.accuracy(y_val, student_val), 6),
                "log_loss": round(metrics.log_loss(y_val, student_val), 6),
            },
            "ensemble": teacher_val,
            "best_member": recorded["validation"]["best_member"],
        },
        "val_examples": len(y_val),
        "test_examples": len(y_test),
        "test": test,
        "agreement_with_ensemble": {
            name: _agreement(predictions[name], ensemble) for name in ("student", "best_member")
        },
        "latency": {
            "ms_per_1000": latency,
            "examples": latency_examples,
            "repeats": repeats,
            "batch_size": batch_size,
            "measured": "side by side in one run: each export from raw test inputs, one warm-up "
            "call each, then rounds that run each once in turn; the median round",
        },
        "goal": _goal(test, latency),
    }


def _top(p: np.ndarray) -> np.ndarray:
    return np.maximum(p, 1 - p) if p.ndim == 1 else p.max(axis=1)


def _agreement(p: np.ndarray, ensemble: np.ndarray) -> dict[str, float]:
    """How closely a model follows the ensemble on test: same predicted class, and the
    correlation of their probabilities."""
    same = float(np.mean(metrics.predicted_class(p) == metrics.predicted_class(ensemble)))
    correlation = float(np.corrcoef(np.ravel(p), np.ravel(ensemble))[0, 1])
    return {"same_class": round(same, 6), "correlation": round(correlation, 6)}


def _goal(test: dict[str, dict[str, float]], latency: dict[str, float]) -> dict[str, Any]:
    """The share of the ensemble's test gain over its best member that the student keeps, in
    accuracy and log-loss, and its latency as a fraction of the ensemble's."""

    def kept(metric: str, better: float) -> float | None:
        # None where the ensemble does not beat its best member: no gain to keep a share of
        # (a share of a loss, such as 5.2, would read as one).
        gain = test["ensemble"][metric] - test["best_member"][metric]
        if gain * better <= 0:
            return None
        return round((test["student"][metric] - test["best_member"][metric]) / gain, 4)

    accuracy, log_loss = kept("accuracy", 1.0), kept("log_loss", -1.0)
    ratio = round(latency["student"] / latency["ensemble"], 4)
    met = (
        None
        if accuracy is None
        else accuracy >= GOAL["gain_kept_at_least"] and ratio <= GOAL["latency_ratio_at_most"]
    )
    return {
        **GOAL,
        "gain_kept_accuracy": accuracy,
        "gain_kept_log_loss": log_loss,
        "latency_ratio": ratio,
        "met": met,
    }


def format_table(report: dict[str, Any]) -> str:
    """The three models' test scores and latency, then the goal's verdict."""
    import pandas as pd

    best, student = report["best_member"]["trial"], report["student"]
    weighted = [m["trial"] for m in report["teacher"]["members"]]
    count = f"{len(weighted)} member{'s' if len(weighted) != 1 else ''}"
    names = {
        # The best single model by validation: of the ensemble's pool, weighted in or not.
        "best_member": (
            f"best member (trial {best})"
            if best in weighted
            else f"best single model (trial {best}, weight 0: not in the ensemble)"
        ),
        "ensemble": f"ensemble ({count})",
        "student": (
            f"student ({student['family']}, from trial {student['warm_start']['trial']}"
            if student.get("warm_start")
            else f"student ({student['family']}"
        )
        + (", refitted)" if student.get("refit") else ")"),
    }
    latency = report["latency"]["ms_per_1000"]
    rows = [
        {
            "model": names[name],
            "val_acc": report["validation"][name]["accuracy"],
            "test_acc": report["test"][name]["accuracy"],
            "test_logloss": report["test"][name]["log_loss"],
            "ms_per_1000": latency[name],
            "vs_ensemble": latency[name] / latency["ensemble"],
        }
        for name in MODELS
    ]
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    goal = report["goal"]
    agreement = report["agreement_with_ensemble"]["student"]
    if goal["met"] is None:
        verdict = "The ensemble does not beat its best member on test: there is no gain to keep."
    else:
        verdict = (
            f"The student keeps {goal['gain_kept_accuracy']:.0%} of the ensemble's accuracy gain "
            f"over its best member at {goal['latency_ratio']:.0%} of its latency: goal (at least "
            f"{goal['gain_kept_at_least']:.0%} at most {goal['latency_ratio_at_most']:.0%}) "
            f"{'met' if goal['met'] else 'missed'}."
        )
    if refit := student.get("refit"):
        verdict += (
            f"\nRefitted on training + validation inputs for {refit['epochs']} epoch(s); early-"
            f"stopped (its val_acc above) the student scored test accuracy "
            f"{refit['early_stopped_test']['accuracy']:.4f}."
        )
    return (
        f"{table}\n\n{verdict}\nThe student predicts the ensemble's class on "
        f"{agreement['same_class']:.1%} of the {report['test_examples']} test examples "
        f"(probability correlation {agreement['correlation']:.3f}); latencies measured side by "
        f"side on {report['latency']['examples']} test inputs."
    )
