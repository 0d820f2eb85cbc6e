"""The ensemble's report: metrics, report.json, members.csv, terminal table, study record."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.artifacts import upload_artifact

from hpo import metrics
from hpo.data.testset import TEST_DATA_ATTR
from hpo.store import open_artifact_store, redact_url

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import optuna

    from hpo.config import StudyConfig
    from hpo.ensemble import Member
    from hpo.ensemble.weighting import Method, Weights

__all__ = ["build_report", "format_table", "record_in_study", "write_outputs"]


def build_report(
    config: StudyConfig,
    study: optuna.Study,
    members: Sequence[Member],
    skipped: list[dict[str, Any]],
    method: Method,
    fitted: Weights,
    uniform: Weights,
    val_matrix: np.ndarray,
    y_val: np.ndarray,
    test_matrix: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
) -> dict[str, Any]:
    """Metrics of each member, the weighted ensemble, the uniform average and the best member.

    "Best member" is the member with the best validation score, chosen without the test set.
    Multi-class reports add each model's accuracy per class.
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

    ensemble_test = metrics.blend(fitted.weights, test_matrix)
    test = {
        "ensemble": test_metrics(ensemble_test),
        "uniform": test_metrics(metrics.blend(uniform.weights, test_matrix)),
        "best_member": test_metrics(test_matrix[0]),
    }
    return {
        "study": study.study_name,
        "storage": redact_url(config.storage_url),
        "artifact_dir": config.artifact_location,
        "task": config.task,
        "method": method.value,
        "top": len(members),
        "caruana_rounds": fitted.rounds,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "classes": list(classes),
        "test_examples": len(y_test),
        "val_examples": len(y_val),
        "members": [
            {
                "trial": m.trial.number,
                "family": m.trial.params.get("family"),
                "weight": round(float(w), 6),
                "params": m.trial.params,
                "val": val_metrics(m.val_predictions),
                "test": test_metrics(test_matrix[i]),
            }
            for i, (m, w) in enumerate(zip(members, fitted.weights, strict=True))
        ],
        "validation": {
            "ensemble": val_metrics(metrics.blend(fitted.weights, val_matrix)),
            "uniform": val_metrics(metrics.blend(uniform.weights, val_matrix)),
            "best_member": val_metrics(val_matrix[0]),
        },
        "test": test,
        "gain_over_best_member": {
            "accuracy": round(test["ensemble"]["accuracy"] - test["best_member"]["accuracy"], 6),
            "log_loss": round(test["ensemble"]["log_loss"] - test["best_member"]["log_loss"], 6),
        },
        "skipped": skipped,
    }


def write_outputs(
    folder: Path,
    report: dict[str, Any],
    y_test: np.ndarray,
    ensemble_test: np.ndarray,
    test_matrix: np.ndarray,
) -> None:
    """Writes report.json, members.csv, the ensemble's test predictions and the figure."""
    import pandas as pd

    from hpo.ensemble.figure import save_figure

    (folder / "report.json").write_text(json.dumps(report, indent=2))
    rows = [
        {
            "trial": m["trial"],
            "family": m["family"],
            "weight": m["weight"],
            "val_accuracy": m["val"]["accuracy"],
            "val_log_loss": m["val"]["log_loss"],
            **{f"test_{k}": v for k, v in m["test"].items() if not isinstance(v, dict)},
        }
        for m in report["members"]
    ]
    pd.DataFrame(rows).to_csv(folder / "members.csv", index=False)
    np.save(folder / "test_predictions.npy", ensemble_test.astype(np.float32))
    save_figure(folder / "ensemble.png", report, y_test, ensemble_test, test_matrix[0])


def format_table(report: dict[str, Any]) -> str:
    """A short terminal table: each member, the uniform average and the weighted ensemble."""
    import pandas as pd

    # Binary reports carry ROC AUC, multi-class ones top-3 accuracy.
    second, column = (
        ("roc_auc", "test_auc")
        if "roc_auc" in report["test"]["ensemble"]
        else ("top3_accuracy", "test_top3")
    )

    def row(model: str, weight: float, val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "weight": weight,
            "val_acc": val["accuracy"],
            "test_acc": test["accuracy"],
            column: test[second],
            "test_logloss": test["log_loss"],
            "test_ece": test["ece"],
        }

    rows = [
        row(f"trial {m['trial']} ({m['family']})", m["weight"], m["val"], m["test"])
        for m in report["members"]
    ]
    for name, label in (
        ("uniform", "uniform average"),
        ("ensemble", f"ensemble ({report['method']})"),
    ):
        rows.append(row(label, 1.0, report["validation"][name], report["test"][name]))
    return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}")


def record_in_study(study: optuna.Study, out_dir: Path, report: dict[str, Any], top: int) -> None:
    """Records the ensemble in the study: a user attribute, the report as an artifact, a note.

    The study's `test_data` attribute becomes this ensemble's test fingerprint, which the next
    ensemble of the study compares its own with.
    """
    from optuna_dashboard import save_note

    test = report["test"]
    summary = {
        "out_dir": str(out_dir),
        "method": report["method"],
        "members": [m["trial"] for m in report["members"]],
        "weights": [m["weight"] for m in report["members"]],
        "test_accuracy": test["ensemble"]["accuracy"],
        "test_log_loss": test["ensemble"]["log_loss"],
        "best_member_test_accuracy": test["best_member"]["accuracy"],
        "test_data_sha256": report["test_data"]["sha256"],
        "created": report["created"],
    }
    study.set_user_attr(f"ensemble_top{top}", summary)
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
        f"## Ensemble of the top {top} trials ({report['method']})\n\n"
        f"Test accuracy **{test['ensemble']['accuracy']:.4f}** (best member "
        f"{test['best_member']['accuracy']:.4f}), log-loss {test['ensemble']['log_loss']:.4f} "
        f"(best member {test['best_member']['log_loss']:.4f}) on {report['test_examples']} test "
        f"examples (fingerprint `{report['test_data']['sha256'][:16]}`). Written to "
        f"`{out_dir}`.\n\n"
        + warning
        + "| trial | family | weight | val accuracy | test accuracy |\n"
        "| --- | --- | --- | --- | --- |\n" + rows + "\n",
    )
