"""How to combine: choose members and weights on validation, evaluate once on test, export.

Each step has its module in this package: `selection` (the pool, loading members), `weighting`
and `pool` (two ways of fitting weights), `choice` (which is kept) and `calibration` (its
temperature), `report` (evaluation and report), `figure`, `export`, and `predict` for scoring
new inputs with the export.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo.contract import Attr, CheckpointError
from hpo.data import provenance, testset
from hpo.ensemble.calibration import temperature_slope
from hpo.ensemble.choice import Choice, choose
from hpo.ensemble.report import build_report, record_in_study, write_outputs
from hpo.ensemble.selection import (
    Candidate,
    Member,
    load_member,
    pool_candidates,
    ranked_trials,
    skip,
)
from hpo.ensemble.serving import SAVED_MODEL_NAME, check_formats, export_saved_model
from hpo.ensemble.weighting import Method
from hpo.errors import StoreError
from hpo.store import open_artifact_store, sha256_file
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.training.interface import Padding, tolerance

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras
    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task
from hpo.ensemble.export import (
    EXPORT_NAME,
    TOKENIZER_NAME,
    check_export,
    export_ensemble,
    keras_config_backend,
    takes_text,
)

__all__ = ["DEFAULT_POOL", "EnsembleResult", "build_ensemble", "predict_member", "publish"]

# The pool's size by default: see the README's "Ensemble" section for what a member costs.
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
        formats: Exports besides `ensemble.keras`: "savedmodel" (`hpo.ensemble.serving`).
    """
    check_formats(formats, keras_config_backend())
    task = study_task(config)
    ranked = ranked_trials(study)
    if top > len(ranked):
        _log.warning(
            "--top %d, but the study has only %d COMPLETE trials; using all of them.",
            top,
            len(ranked),
        )
    out_dir = out_dir or Path("ensembles") / f"{config.name}-top{top}"
    store = open_artifact_store(config.artifact_location)
    source = task.locate(config, data or provenance.recorded_source(study))
    data_folder = task.prepare(config, str(source), search_space(task, config.space).shared)
    provenance.check_fingerprint(study, task.fingerprint(data_folder), source, "the ensemble")
    y_val = task.trial_data(data_folder, ranked[0].params).y_val
    with tempfile.TemporaryDirectory(prefix="hpo-ensemble-") as scratch:
        candidates, skipped = pool_candidates(
            ranked, store, max(pool, top), Path(scratch), len(y_val)
        )
        members, kept, failed = _choose(
            candidates, store, Path(scratch), y_val, top, method, calibrate
        )
        skipped += failed
        val_matrix = np.stack([m.val_predictions for m in members])

        models = [m.model for m in members]
        test = task.load_test(config, str(source), data_folder)
        test_data = testset.fingerprint(test.raw, test.y, test.source)
        test_change = testset.change(study.user_attrs.get(testset.TEST_DATA_ATTR), test_data)
        if test_change is not None:
            _log.warning(test_change["message"])
        test_matrix = np.stack(
            [
                predict_member(task, model, task.member_inputs(test.x, m.trial.params), m.trial)
                for model, m in zip(models, members, strict=True)
            ]
        )
        ensemble_test = kept.predict(test_matrix)
        report = build_report(
            config,
            study,
            members,
            skipped,
            method,
            kept,
            len(candidates),
            val_matrix,
            y_val,
            test_matrix,
            test.y,
            task.class_names(data_folder),
        )

        report["out_dir"] = str(out_dir)
        report["test_data"] = test_data.as_dict()
        if test_change is not None:
            report["test_data_changed"] = test_change
        staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            temperature = None if kept.calibration is None else kept.temperature
            export = export_ensemble(task, data_folder, members, models, kept.weights, temperature)
            export.save(staging / EXPORT_NAME)
            # An export takes raw inputs, or (text off TensorFlow) the study's token ids.
            inputs = test.raw if takes_text(export) or not task.padded else test.x
            precisions = {m.trial.user_attrs.get(Attr.PRECISION) for m in members}
            allowed = max(tolerance(p) for p in precisions)
            slope = temperature_slope(kept.blend(test_matrix), kept.temperature)
            report["export"] = check_export(
                staging / EXPORT_NAME, inputs, test.y, ensemble_test, allowed, slope
            )
            if "savedmodel" in formats:
                report["export"]["saved_model"] = export_saved_model(
                    export,
                    staging / SAVED_MODEL_NAME,
                    inputs,
                    test.y,
                    ensemble_test,
                    allowed,
                    slope,
                )
            report["backend"] = str(keras_config_backend())
            if task.tokenizer is not None:
                tokenizer_path = staging / TOKENIZER_NAME
                tokenizer_path.write_text(task.tokenizer(data_folder).to_json())
                report["export"]["tokenizer"] = TOKENIZER_NAME
                report["export"]["tokenizer_sha256"] = sha256_file(tokenizer_path)
            write_outputs(staging, report, test.y, ensemble_test, test_matrix)
            publish(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    record_in_study(study, out_dir, report, top)
    return EnsembleResult(out_dir=out_dir, report=report)


def _choose(
    candidates: list[Candidate],
    store: ArtifactStore,
    folder: Path,
    y_val: np.ndarray,
    top: int,
    method: Method,
    calibrate: bool,
) -> tuple[list[Member], Choice, list[dict[str, Any]]]:
    """The members the kept ensemble and the plain one use, loaded, the choice over them, and
    the trials skipped because their checkpoint failed.

    A member whose checkpoint does not verify or load leaves the pool, and the choice is made
    again without it (the next best trial then joins the plain top ensemble).
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
                    loaded[candidate.trial.number] = load_member(candidate, store, folder)
        except CheckpointError as exc:
            skip(skipped, candidate.trial, exc)
            candidates.remove(candidate)
            continue
        members = [loaded[candidates[i].trial.number] for i in used]
        return members, choice.subset(used), skipped
    rank = {c.trial.number: i for i, c in enumerate(pooled)}
    best = min(skipped, key=lambda s: rank.get(s["trial"], len(rank)))
    raise StoreError(
        f"none of the {len(pooled)} COMPLETE trials has a usable checkpoint, so there is no "
        f"ensemble to build (the warnings above give each reason). The best one: "
        f"{best['reason']}"
    )


def predict_member(task: Task, model: keras.Model, x: np.ndarray, trial: FrozenTrial) -> np.ndarray:
    """A member's probabilities for inputs `x` (at its own size), as it was evaluated on
    validation: padded to its seq_len if its model depends on padding (recorded by the trial;
    trials from before the rule were all bucketed)."""
    bucketed = trial.user_attrs.get(Attr.PADDING, Padding.BUCKETED.value) != Padding.FIXED.value
    return metrics.as_probabilities(task.predict(model, x, bucketed=bucketed))


def publish(staging: Path, out_dir: Path) -> None:
    """Moves a finished output folder into place, replacing any earlier one at `out_dir`."""
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
