"""How to combine: select the best trials, weight them on validation, evaluate once on test, export.

Each step has its module in this package: `selection`, `weighting`, `report` (evaluation and
report), `figure`, `export`, and `predict` for scoring new inputs with the export.
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
from hpo.contract import Attr
from hpo.data import provenance, testset
from hpo.ensemble.report import build_report, record_in_study, write_outputs
from hpo.ensemble.weighting import Method, fit_weights
from hpo.store import open_artifact_store, sha256_file
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.training.interface import Padding, tolerance

if TYPE_CHECKING:
    import keras
    import optuna
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
from hpo.ensemble.selection import ranked_trials, select_members

__all__ = ["EnsembleResult", "build_ensemble"]

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
    method: Method = Method.CARUANA,
    out_dir: Path | None = None,
    data: str | None = None,
) -> EnsembleResult:
    """Builds, evaluates, exports and records the ensemble of the `top` best trials.

    Weights are fitted on validation predictions only. The test set is read here, once, for
    the final evaluation; nothing in the search reads it. Its fingerprint goes into the report
    and the study; test data other than the study's previous ensemble's is a warning, recorded
    in the report as `test_data_changed` (see `hpo.data.testset`).
    """
    task = study_task(config)
    ranked = ranked_trials(study)
    out_dir = out_dir or Path("ensembles") / f"{config.name}-top{top}"
    store = open_artifact_store(config.artifact_location)
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
        test_data = testset.fingerprint(test.raw, test.y, test.source)
        test_change = testset.change(study.user_attrs.get(testset.TEST_DATA_ATTR), test_data)
        if test_change is not None:
            _log.warning(test_change["message"])
        test_matrix = np.stack(
            [
                _predict(task, model, task.member_inputs(test.x, m.trial.params), m.trial)
                for model, m in zip(models, members, strict=True)
            ]
        )
        ensemble_test = metrics.blend(fitted.weights, test_matrix)
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
            task.class_names(data_folder),
        )

        report["out_dir"] = str(out_dir)
        report["test_data"] = test_data.as_dict()
        if test_change is not None:
            report["test_data_changed"] = test_change
        staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            export = export_ensemble(task, data_folder, members, models, fitted.weights)
            export.save(staging / EXPORT_NAME)
            # An export takes raw inputs, or (text off TensorFlow) the study's token ids.
            inputs = test.raw if takes_text(export) or not task.padded else test.x
            precisions = {m.trial.user_attrs.get(Attr.PRECISION) for m in members}
            report["export"] = check_export(
                staging / EXPORT_NAME,
                inputs,
                test.y,
                ensemble_test,
                max(tolerance(p) for p in precisions),
            )
            report["backend"] = str(keras_config_backend())
            if task.tokenizer is not None:
                tokenizer_path = staging / TOKENIZER_NAME
                tokenizer_path.write_text(task.tokenizer(data_folder).to_json())
                report["export"]["tokenizer"] = TOKENIZER_NAME
                report["export"]["tokenizer_sha256"] = sha256_file(tokenizer_path)
            write_outputs(staging, report, test.y, ensemble_test, test_matrix)
            _publish(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    record_in_study(study, out_dir, report, top)
    return EnsembleResult(out_dir=out_dir, report=report)


def _predict(task: Task, model: keras.Model, x: np.ndarray, trial: FrozenTrial) -> np.ndarray:
    # A member predicts as it was evaluated on validation: padded to its seq_len if its model
    # depends on padding (recorded by the trial; trials from before the rule were all bucketed).
    bucketed = trial.user_attrs.get(Attr.PADDING, Padding.BUCKETED.value) != Padding.FIXED.value
    return metrics.as_probabilities(task.predict(model, x, bucketed=bucketed))


def _publish(staging: Path, out_dir: Path) -> None:
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
