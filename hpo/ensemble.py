"""How to combine: select the best trials, weight them on validation, evaluate once on test, export.

Command line::

    python -m hpo.ensemble --top 5 [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--method caruana|score|uniform] [--out DIR] [--data PATH]
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import TrialState

from hpo._cli import add_study_arguments, open_study, positive_int
from hpo.checkpoints import (
    CheckpointError,
    fetch_checkpoint,
    fetch_predictions,
    load_checkpoint,
    load_keras_file,
)
from hpo.data import provenance
from hpo.ensemble_report import build_report, format_table, record_in_study, write_outputs
from hpo.errors import HpoError, StoreError
from hpo.store import AtomicFileSystemArtifactStore, sha256_file
from hpo.study import search_space
from hpo.tasks import get_task
from hpo.weighting import Method, fit_weights

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    import keras
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = [
    "EnsembleResult",
    "build_ensemble",
    "main",
    "open_study",
    "ranked_trials",
    "select_members",
]

_log = logging.getLogger("hpo.ensemble")
EXPORT_NAME = "ensemble.keras"
EXPORT_CHECK_EXAMPLES = 512
EXPORT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Member:
    """A trial chosen for the ensemble, with its verified checkpoint and validation predictions."""

    trial: FrozenTrial
    checkpoint: Path
    val_predictions: np.ndarray
    model: keras.Model


@dataclass(frozen=True)
class EnsembleResult:
    """Where the ensemble was written and its report."""

    out_dir: Path
    report: dict[str, Any]


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, best validation value first (ties: earlier trial first).

    Raises:
        StoreError: The study has no COMPLETE trial.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StoreError(
            f"study {study.study_name!r} has no COMPLETE trials yet. Run the search first: "
            f"python -m hpo.search --study <file>."
        )
    return sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))


def select_members(
    ranked: Sequence[FrozenTrial],
    store: AtomicFileSystemArtifactStore,
    top: int,
    folder: Path,
    n_val: int,
) -> tuple[list[Member], list[dict[str, Any]]]:
    """Takes the `top` best trials whose checkpoints verify, skipping broken ones.

    Returns:
        The members, best first, and the skipped trials with the reason.

    Raises:
        StoreError: No trial has a usable checkpoint.
    """
    if top > len(ranked):
        _log.warning(
            "--top %d, but the study has only %d COMPLETE trials; using all of them.",
            top,
            len(ranked),
        )
    members: list[Member] = []
    skipped: list[dict[str, Any]] = []
    for trial in ranked:
        if len(members) == top:
            break
        try:
            checkpoint = fetch_checkpoint(store, trial, folder)
            predictions = fetch_predictions(store, trial, folder)
            if len(predictions) != n_val:
                raise CheckpointError(
                    f"trial {trial.number}: {len(predictions)} validation predictions for "
                    f"{n_val} validation examples; it was trained on another split."
                )
            # A checkpoint can pass its checksum and still not load (a layer this version of
            # Keras cannot build, say): that trial is skipped like a missing one.
            model = load_checkpoint(checkpoint, trial.number)
        except CheckpointError as exc:
            _log.warning("skipping trial %d: %s", trial.number, exc)
            skipped.append({"trial": trial.number, "reason": str(exc)})
            continue
        members.append(
            Member(trial=trial, checkpoint=checkpoint, val_predictions=predictions, model=model)
        )
    if not members:
        raise StoreError(f"none of the {len(ranked)} COMPLETE trials has a usable checkpoint.")
    return members, skipped


def build_ensemble(
    config: StudyConfig,
    study: optuna.Study,
    *,
    top: int = 5,
    method: Method = Method.CARUANA,
    out_dir: Path | None = None,
    data: str | None = None,
) -> EnsembleResult:
    """Builds, evaluates, exports and records the ensemble of the `top` best trials.

    Weights are fitted on validation predictions only. The test set is read here, once, for
    the final evaluation; nothing in the search reads it.
    """
    task = get_task(config.task)
    ranked = ranked_trials(study)
    out_dir = out_dir or Path("ensembles") / f"{config.name}-top{top}"
    store = AtomicFileSystemArtifactStore(config.artifact_dir)
    source = task.locate(config, data or provenance.recorded_source(study))
    data_folder = task.prepare(config, str(source), search_space(task, config.space).shared)
    provenance.check_fingerprint(study, task.fingerprint(data_folder), source, "the ensemble")
    y_val = task.trial_data(data_folder, ranked[0].params).y_val
    with tempfile.TemporaryDirectory(prefix="hpo-ensemble-") as scratch:
        members, skipped = select_members(ranked, store, top, Path(scratch), len(y_val))
        val_matrix = np.stack([m.val_predictions for m in members])
        fitted = fit_weights(method, val_matrix, y_val)
        uniform = fit_weights(Method.UNIFORM, val_matrix, y_val)

        models = [m.model for m in members]
        test = task.load_test(config, str(source), data_folder)
        test_matrix = np.stack(
            [
                _predict(task, model, task.member_inputs(test.x, m.trial.params))
                for model, m in zip(models, members, strict=True)
            ]
        )
        ensemble_test = fitted.weights @ test_matrix
        report = build_report(
            config,
            study,
            members,
            skipped,
            method,
            fitted,
            uniform,
            val_matrix,
            y_val,
            test_matrix,
            test.y,
        )

        report["out_dir"] = str(out_dir)
        staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            export = export_ensemble(task, data_folder, members, models, fitted.weights)
            export.save(staging / EXPORT_NAME)
            report["export"] = _check_export(staging / EXPORT_NAME, test.raw, test.y, ensemble_test)
            write_outputs(staging, report, test.y, ensemble_test, test_matrix)
            _publish(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    record_in_study(study, out_dir, report, top)
    return EnsembleResult(out_dir=out_dir, report=report)


def export_ensemble(
    task: Task,
    data_folder: Path,
    members: Sequence[Member],
    models: Sequence[keras.Model],
    weights: np.ndarray,
) -> keras.Model:
    """One functional model: raw inputs -> shared preprocessing -> each member -> weighted average.

    Members with zero weight are left out; members whose preprocessing is equal share it.
    """
    import keras
    from keras import layers

    inputs = task.raw_input()
    preprocessed: dict[Any, Any] = {}
    outputs = []
    for member, model, weight in zip(members, models, weights, strict=True):
        if weight <= 0:
            continue
        key, layer = task.export_preprocessing(data_folder, member.trial.params)
        if key not in preprocessed:
            layer.name = f"preprocess_{len(preprocessed)}"
            preprocessed[key] = layer(inputs)
        model.name = f"trial_{member.trial.number}"
        x = model(preprocessed[key])
        outputs.append(
            layers.Rescaling(float(weight), name=f"weight_trial_{member.trial.number}")(x)
        )
    output = layers.Add(name="weighted_average")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, output, name="ensemble")


def _predict(task: Task, model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(task.predict(model, x), dtype=np.float64).reshape(-1)


def check_rows(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` row indices drawn evenly from every class (test files are sorted by class)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, n // max(1, len(classes)))
    rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=int)


def _check_export(
    path: Path, raw: np.ndarray, labels: np.ndarray, expected: np.ndarray
) -> dict[str, Any]:
    model = load_keras_file(path)
    rows = check_rows(labels, EXPORT_CHECK_EXAMPLES)
    got = np.asarray(model.predict(raw[rows], batch_size=256, verbose=0), dtype=np.float64)
    difference = float(np.max(np.abs(got.reshape(-1) - expected[rows]))) if len(rows) else 0.0
    if difference > EXPORT_TOLERANCE:
        raise HpoError(
            f"the exported ensemble disagrees with the evaluated one by {difference:.2e} "
            f"(tolerance {EXPORT_TOLERANCE:g})"
        )
    return {
        "path": EXPORT_NAME,
        "sha256": sha256_file(path),
        "checked_examples": len(rows),
        "checked_classes": len(np.unique(labels[rows])),
        "max_abs_difference": difference,
    }


def _publish(staging: Path, out_dir: Path) -> None:
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


NEEDS_TENSORFLOW = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--top",
        type=positive_int(" Use --top 5 for the five best trials."),
        default=5,
        help="how many of the best trials (default 5)",
    )
    add_study_arguments(parser)
    parser.add_argument("--method", choices=[m.value for m in Method], default=Method.CARUANA.value)
    parser.add_argument("--out", type=Path, help="output folder (default ensembles/<study>-top<K>)")
    parser.add_argument("--data", help="data set folder or archive (overrides $HPO_IMDB_PATH)")


def run(args: argparse.Namespace) -> int:
    """Builds, evaluates and exports the ensemble, and prints its table."""
    config, study = open_study(args.study, args.storage, args.study_name)
    result = build_ensemble(
        config,
        study,
        top=args.top,
        method=Method(args.method),
        out_dir=args.out,
        data=args.data,
    )
    report = result.report
    print(format_table(report))
    gain = report["gain_over_best_member"]
    print(
        f"\nEnsemble of {report['top']} on {report['test_examples']} test examples: accuracy "
        f"{report['test']['ensemble']['accuracy']:.4f} "
        f"({gain['accuracy']:+.4f} over the best member), "
        f"log-loss {report['test']['ensemble']['log_loss']:.4f} ({gain['log_loss']:+.4f}).\n"
        f"Report, figure and ensemble.keras in {result.out_dir}/"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.ensemble`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("ensemble", argv)


if __name__ == "__main__":
    sys.exit(main())
