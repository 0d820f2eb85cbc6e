"""The ensemble's report: metrics, report.json, members.csv, terminal table, study record."""

from __future__ import annotations

import datetime
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.artifacts import upload_artifact

from hpo import metrics
from hpo.data.testset import TEST_DATA_ATTR
from hpo.ensemble.calibration import ECE_BINS
from hpo.store import delete_study_attr, open_artifact_store, redact_url

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import optuna

    from hpo.config import StudyConfig
    from hpo.ensemble import Member
    from hpo.ensemble.choice import Choice
    from hpo.ensemble.weighting import Method

__all__ = ["build_report", "format_table", "record_in_study", "write_outputs"]


def build_report(
    config: StudyConfig,
    study: optuna.Study,
    members: Sequence[Member],
    skipped: list[dict[str, Any]],
    method: Method,
    choice: Choice,
    pool_size: int,
    val_matrix: np.ndarray,
    y_val: np.ndarray,
    test_matrix: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
) -> dict[str, Any]:
    """Metrics of each member, the kept ensemble, the plain top ensemble, the pool's selection,
    the uniform average and the best member, and the calibration before and after.

    "Best member" is the member with the best validation score, chosen without the test set.
    The pool's selection is scored on test only when it is the kept ensemble: the test set
    never takes part in a choice. Multi-class reports add each model's accuracy per class.
    """

    def val_metrics(p: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": round(metrics.accuracy(y_val, p), 6),
            "log_loss": round(metrics.log_loss(y_val, p), 6),
        }

    def test_metrics(p: np.ndarray) -> dict[str, Any]:
        result: dict[str, Any] = metrics.summary(y_test, p)
        if p.ndim == 2:
            per_class = metrics.per_class_accuracy(y_test, p, len(classes))
            result["per_class_accuracy"] = {
                name: round(value, 6) for name, value in zip(classes, per_class, strict=True)
            }
        return result

    test = {
        "ensemble": test_metrics(choice.predict(test_matrix)),
        "top": test_metrics(metrics.blend(choice.top.weights, test_matrix)),
        "uniform": test_metrics(metrics.blend(choice.uniform, test_matrix)),
        "best_member": test_metrics(test_matrix[0]),
    }
    return {
        "study": study.study_name,
        "storage": redact_url(config.storage_url),
        "artifact_dir": config.artifact_location,
        "task": config.task,
        "method": method.value,
        "top": int(np.count_nonzero(choice.uniform)),
        "kept": choice.chosen.value,
        "caruana_rounds": choice.top.rounds,
        "pool": {
            "size": pool_size,
            "rounds": choice.pool.rounds,
            "fallback": choice.pool.fallback,
            "cross_fitted_val_log_loss": choice.cross_fitted,
        },
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "classes": list(classes),
        "test_examples": len(y_test),
        "val_examples": len(y_val),
        "members": [
            {
                "trial": m.trial.number,
                "family": m.trial.params.get("family"),
                "weight": round(float(w), 6),
                "top_weight": round(float(choice.top.weights[i]), 6),
                "pool_weight": round(float(choice.pool.weights[i]), 6),
                "params": m.trial.params,
                "val": val_metrics(m.val_predictions),
                "test": test_metrics(test_matrix[i]),
            }
            for i, (m, w) in enumerate(zip(members, choice.weights, strict=True))
        ],
        "validation": {
            "ensemble": val_metrics(choice.predict(val_matrix)),
            "top": val_metrics(metrics.blend(choice.top.weights, val_matrix)),
            "pool": val_metrics(metrics.blend(choice.pool.weights, val_matrix)),
            "uniform": val_metrics(metrics.blend(choice.uniform, val_matrix)),
            "best_member": val_metrics(val_matrix[0]),
        },
        "test": test,
        "calibration": _calibration(choice, val_matrix, y_val, test_matrix, y_test),
        "gain_over_best_member": {
            "accuracy": round(test["ensemble"]["accuracy"] - test["best_member"]["accuracy"], 6),
            "log_loss": round(test["ensemble"]["log_loss"] - test["best_member"]["log_loss"], 6),
        },
        "skipped": skipped,
    }


def _calibration(
    choice: Choice,
    val_matrix: np.ndarray,
    y_val: np.ndarray,
    test_matrix: np.ndarray,
    y_test: np.ndarray,
) -> dict[str, Any]:
    """Log-loss and ECE (15 bins) of the kept ensemble before and after its temperature, and of
    the best member, on validation (where the temperature was fitted) and on test."""

    def scores(labels: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return {
            "log_loss": round(metrics.log_loss(labels, p), 6),
            "ece": round(metrics.expected_calibration_error(labels, p, ECE_BINS), 6),
        }

    return {
        "enabled": choice.calibration is not None,
        "temperature": round(choice.temperature, 6),
        "ece_bins": ECE_BINS,
        **{
            split: {
                "before": scores(labels, choice.blend(matrix)),
                "after": scores(labels, choice.predict(matrix)),
                "best_member": scores(labels, matrix[0]),
            }
            for split, labels, matrix in (
                ("validation", y_val, val_matrix),
                ("test", y_test, test_matrix),
            )
        },
    }


def write_outputs(
    folder: Path,
    report: dict[str, Any],
    y_test: np.ndarray,
    ensemble_test: np.ndarray,
    test_matrix: np.ndarray,
) -> None:
    """Writes the ensemble's test predictions, report.json (which gains their checksum),
    members.csv and the figure."""
    import pandas as pd

    from hpo.ensemble.evaluated import REPORT_KEY, save_predictions
    from hpo.ensemble.figure import save_figure

    report[REPORT_KEY] = save_predictions(folder, ensemble_test)
    (folder / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    rows = [
        {
            "trial": m["trial"],
            "family": m["family"],
            "weight": m["weight"],
            "top_weight": m["top_weight"],
            "val_accuracy": m["val"]["accuracy"],
            "val_log_loss": m["val"]["log_loss"],
            **{f"test_{k}": v for k, v in m["test"].items() if not isinstance(v, dict)},
        }
        for m in report["members"]
    ]
    pd.DataFrame(rows).to_csv(folder / "members.csv", index=False)
    save_figure(folder / "ensemble.png", report, y_test, ensemble_test, test_matrix[0])


def format_table(report: dict[str, Any]) -> str:
    """A short terminal table: each member, the uniform average, the plain top ensemble, the
    pool's selection and the kept ensemble; then how it was chosen and calibrated."""
    import pandas as pd

    # Binary reports carry ROC AUC, multi-class ones top-3 accuracy.
    second, column = (
        ("roc_auc", "test_auc")
        if "roc_auc" in report["test"]["ensemble"]
        else ("top3_accuracy", "test_top3")
    )

    def row(
        model: str, weight: float | None, val: dict[str, Any], test: dict[str, Any] | None
    ) -> dict[str, Any]:
        test = test or {}
        return {
            "model": model,
            "weight": weight,
            "val_acc": val["accuracy"],
            "val_logloss": val["log_loss"],
            "test_acc": test.get("accuracy"),
            column: test.get(second),
            "test_logloss": test.get("log_loss"),
            "test_ece": test.get("ece"),
        }

    validation, test, top = report["validation"], report["test"], report["top"]
    calibration = report["calibration"]
    rows = [
        row(f"trial {m['trial']} ({m['family']})", m["weight"], m["val"], m["test"])
        for m in report["members"]
    ]
    rows += [
        row(f"uniform average of top {top}", None, validation["uniform"], test["uniform"]),
        row(f"top {top} ({report['method']})", None, validation["top"], test["top"]),
        row(f"pool selection of {report['pool']['size']}", None, validation["pool"], None),
        row(
            f"ensemble: {report['kept']}"
            + (f", T={calibration['temperature']:.3f}" if calibration["enabled"] else ""),
            1.0,
            validation["ensemble"],
            test["ensemble"],
        ),
    ]
    table = pd.DataFrame(rows).to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4f}")
    crossed = report["pool"]["cross_fitted_val_log_loss"]
    lines = [
        table,
        f"\nKept the {'pool selection' if report['kept'] == 'pool' else f'top {top}'}: "
        f"cross-fitted validation log-loss {crossed['pool']:.4f} (pool) vs "
        f"{crossed['top']:.4f} (top {top}).",
    ]
    if calibration["enabled"]:
        val, on_test = calibration["validation"], calibration["test"]
        lines.append(
            f"Temperature {calibration['temperature']:.3f} (fitted on validation): log-loss "
            f"{val['before']['log_loss']:.4f} -> {val['after']['log_loss']:.4f} on validation, "
            f"{on_test['before']['log_loss']:.4f} -> {on_test['after']['log_loss']:.4f} on test; "
            f"ECE ({calibration['ece_bins']} bins) {val['before']['ece']:.4f} -> "
            f"{val['after']['ece']:.4f} on validation, {on_test['before']['ece']:.4f} -> "
            f"{on_test['after']['ece']:.4f} on test (best member "
            f"{on_test['best_member']['ece']:.4f})."
        )
    return "\n".join(lines)


def _record(study: optuna.Study, top: int, summary: dict[str, Any]) -> None:
    """Records `summary` as the latest ensemble of `top` (`ensemble_top<top>`), keeping an
    earlier one of another folder as `ensemble_top<top>:<its folder>`: one record per size made
    a second folder's ensemble replace the first's, whose members `hpo gc` then removed from
    under that ensemble. A kept record of this folder goes: this one replaces it."""
    key = f"ensemble_top{top}"
    folder = summary["out_dir_resolved"]
    attrs = study.user_attrs  # read from the store once
    recorded = attrs.get(key)
    if isinstance(recorded, dict) and recorded.get("out_dir_resolved") not in (None, folder):
        study.set_user_attr(f"{key}:{recorded['out_dir_resolved']}", recorded)
    study.set_user_attr(key, summary)
    if f"{key}:{folder}" in attrs:
        delete_study_attr(study, f"{key}:{folder}")


def record_in_study(study: optuna.Study, out_dir: Path, report: dict[str, Any], top: int) -> None:
    """Records the ensemble in the study: a user attribute, the report as an artifact, a note.

    The study's `test_data` attribute becomes this ensemble's test fingerprint, which the next
    ensemble of the study compares its own with.
    """
    from optuna_dashboard import save_note

    test = report["test"]
    summary = {
        "out_dir": str(out_dir),
        # The folder itself, wherever this ran: what another study's ensemble would replace
        # is told by it (`hpo.ensemble.output_folder.check_out_dir`).
        "out_dir_resolved": os.path.realpath(out_dir),
        "method": report["method"],
        "kept": report["kept"],
        # Its members trained again on training + validation data (`--refit`): its scores are
        # those models', not the study's checkpoints'.
        "refit": bool(report.get("refit")),
        "temperature": report["calibration"]["temperature"],
        # The exported ensemble's members; report.json also lists the plain top ensemble's.
        "members": [m["trial"] for m in report["members"] if m["weight"] > 0],
        "weights": [m["weight"] for m in report["members"] if m["weight"] > 0],
        # The pool's best by validation, which the ensemble may weigh 0: `hpo distill` loads
        # its checkpoint to compare a student with it, so `hpo gc` keeps it too.
        "best_member": report["members"][0]["trial"],
        "test_accuracy": test["ensemble"]["accuracy"],
        "test_log_loss": test["ensemble"]["log_loss"],
        "best_member_test_accuracy": test["best_member"]["accuracy"],
        "test_data_sha256": report["test_data"]["sha256"],
        "created": report["created"],
    }
    _record(study, top, summary)
    study.set_user_attr(
        TEST_DATA_ATTR,
        {**report["test_data"], "out_dir": str(out_dir), "created": report["created"]},
    )
    store = open_artifact_store(report["artifact_dir"])
    upload_artifact(
        artifact_store=store, file_path=str(out_dir / "report.json"), study_or_trial=study
    )
    rows = "\n".join(
        f"| {m['trial']} | {m['family']} | {m['weight']:.3f} | "
        f"{m['val']['accuracy']:.4f} | {m['test']['accuracy']:.4f} |"
        for m in report["members"]
    )
    changed = report.get("test_data_changed")
    warning = (
        f"**Other test data than the previous ensemble's**: {', '.join(changed['changed'])} "
        "(see `test_data_changed` in report.json).\n\n"
        if changed
        else ""
    )
    save_note(
        study,
        f"## Ensemble of at most {top} trials (kept: {report['kept']}, temperature "
        f"{report['calibration']['temperature']:.3f})\n\n"
        f"Test accuracy **{test['ensemble']['accuracy']:.4f}** (best member "
        f"{test['best_member']['accuracy']:.4f}), log-loss {test['ensemble']['log_loss']:.4f} "
        f"(best member {test['best_member']['log_loss']:.4f}) on {report['test_examples']} test "
        f"examples (fingerprint `{report['test_data']['sha256'][:16]}`). Written to "
        f"`{out_dir}`.\n\n"
        + warning
        + "| trial | family | weight | val accuracy | test accuracy |\n"
        "| --- | --- | --- | --- | --- |\n" + rows + "\n",
    )
