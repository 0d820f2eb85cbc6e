"""The ensemble report's figure: test metrics of members vs ensemble, reliability curves, and
for multi-class tasks the ensemble's confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["save_figure"]


def save_figure(
    path: Path,
    report: dict[str, Any],
    y_test: np.ndarray,
    ensemble: np.ndarray,
    best_member: np.ndarray,
) -> None:
    """Writes a PNG: test accuracy and log-loss per model, a reliability diagram, and (multi-class)
    the ensemble's confusion matrix on the test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"trial {m['trial']}" for m in report["members"]] + [
        "uniform",
        f"top {report['top']}",
        "ensemble",
    ]
    tests = [m["test"] for m in report["members"]] + [
        report["test"]["uniform"],
        report["test"]["top"],
        report["test"]["ensemble"],
    ]
    colors = ["#8da0cb"] * len(report["members"]) + ["#66c2a5", "#a6d854", "#fc8d62"]
    multiclass = ensemble.ndim == 2
    figure, axes = plt.subplots(1, 4 if multiclass else 3, figsize=(21 if multiclass else 15, 4.5))
    for axis, key, label in (
        (axes[0], "accuracy", "test accuracy"),
        (axes[1], "log_loss", "test log-loss"),
    ):
        values = [t[key] for t in tests]
        axis.barh(names, values, color=colors)
        axis.set_xlabel(label)
        low, high = min(values), max(values)
        axis.set_xlim(low - (high - low) * 0.5 - 1e-3, high + (high - low) * 0.2 + 1e-3)
        axis.invert_yaxis()
    axis = axes[2]
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for label, probabilities, color in (
        ("best member", best_member, "#8da0cb"),
        ("ensemble", ensemble, "#fc8d62"),
    ):
        mean_p, rate, _ = metrics.reliability_curve(y_test, probabilities)
        ece = metrics.expected_calibration_error(y_test, probabilities)
        axis.plot(mean_p, rate, marker="o", color=color, label=f"{label} (ECE {ece:.3f})")
    if multiclass:
        axis.set_xlabel("probability of the top class")
        axis.set_ylabel("observed fraction where it is right")
    else:
        axis.set_xlabel("predicted probability of positive")
        axis.set_ylabel("observed fraction positive")
    axis.legend(loc="upper left")
    if multiclass:
        _confusion(
            axes[3],
            report["classes"],
            metrics.confusion_matrix(y_test, ensemble, len(report["classes"])),
        )
    figure.suptitle(
        f"{report['study']}: ensemble of at most {report['top']} trials (kept: {report['kept']}, "
        f"temperature {report['calibration']['temperature']:.3f})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _confusion(axis: Any, classes: list[str], matrix: np.ndarray) -> None:
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    axis.set_xticks(ticks, classes, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(ticks, classes, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title("ensemble on test (row-normalized)")
    if len(classes) <= 12:
        for (row, col), rate in np.ndenumerate(rates):
            color = "white" if rate > 0.5 else "black"
            axis.text(col, row, f"{rate:.2f}", ha="center", va="center", fontsize=7, color=color)
