"""How to combine, for serving: any trial, or an ensemble already built, in the serving formats.

A trial is exported as a one-member ensemble (`hpo.ensemble.export.export_ensemble`): the same
model from raw text or images to probabilities, and the same checks (`hpo.ensemble.serving`).
Each export must reproduce the trial's recorded validation predictions, on validation inputs
(only the ensemble's evaluation reads the test set). An ensemble's new exports go beside its
`ensemble.keras`, must reproduce its evaluated test predictions, and are added to its
`report.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import TrialState

from hpo._json import read_json
from hpo.artifacts import holding, removed_checkpoints
from hpo.backend import Backend, recorded_backend
from hpo.contract import Attr, CheckpointError, fetch_predictions
from hpo.data import provenance, testset
from hpo.disk import raise_if_full
from hpo.ensemble.calibration import apply_temperature, temperature_slope
from hpo.ensemble.evaluated import load_predictions
from hpo.ensemble.export import (
    EXPORT_NAME,
    across_backends,
    export_ensemble,
    keras_config_backend,
    write_tokenizer,
)
from hpo.ensemble.output_folder import (
    OutputKind,
    check_out_dir,
    folder_lock,
    publish,
    signals_held,
    staging_for,
    synced,
)
from hpo.ensemble.predict import export_backend, load_export, verify_tokenizer
from hpo.ensemble.selection import Candidate, load_member
from hpo.ensemble.serving import (
    Format,
    Reference,
    as_formats,
    check_formats,
    serving_backend,
    write_exports,
)
from hpo.errors import ConfigError, DataError, StoreError
from hpo.scratch import scratch_folder
from hpo.store import open_artifact_store, redact_url
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.training.interface import tolerance

if TYPE_CHECKING:
    from collections.abc import Iterable

    import optuna
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = ["ExportResult", "ensemble_report", "export_built_ensemble", "export_trial"]


@dataclass(frozen=True)
class ExportResult:
    """Where the exports were written, the report that records them, and which were written."""

    out_dir: Path
    report: dict[str, Any]
    written: tuple[Format, ...]


def export_trial(
    config: StudyConfig,
    study: optuna.Study,
    number: int,
    *,
    formats: Iterable[Format | str] = (Format.KERAS,),
    out_dir: Path | None = None,
    data: str | None = None,
) -> ExportResult:
    """Exports one COMPLETE trial, raw inputs to probabilities, in each of `formats`.

    Args:
        number: The trial's number.
        formats: "keras", "savedmodel", "onnx" and/or "litert" (default keras).
        out_dir: The output folder (default `exports/<study>-trial<N>`), replaced if it exists.
        data: Where the data is, if not where the search read it.

    Returns:
        The folder, holding the exports, `tokenizer.json` for text, and `report.json`.

    Raises:
        ConfigError: No such trial, it is not COMPLETE, or its checkpoint was removed.
        StoreError: Its checkpoint or predictions are missing or do not verify.
        HpoError: An export does not reproduce the trial's validation predictions.
    """
    asked = as_formats(formats)
    here = keras_config_backend()
    check_formats(asked, here)
    # The export takes what the study's own exports take, whatever the formats asked: one made
    # on TensorFlow for a SavedModel of a study searched on JAX takes its token ids, as `hpo
    # ensemble`'s does (a raw-text .keras would load on TensorFlow only). Off TensorFlow, the
    # backend here builds no raw-text export.
    made_on = recorded_backend(study.user_attrs.get("hpo_config"), config.training.backend)
    made_for = made_on.value if here == Backend.TENSORFLOW.value else here
    out_dir = check_out_dir(
        out_dir or Path("exports") / f"{config.name}-trial{number}",
        OutputKind.TRIAL,
        study=study.study_name,
        storage=config.storage_url,
    )
    trial = _complete_trial(study, number)
    task, data_folder, _ = _prepare(config, study, data)
    store = open_artifact_store(config.artifact_location, create=False)
    with scratch_folder("export") as scratch:
        try:
            predictions = fetch_predictions(store, trial, Path(scratch))
            with holding(study, [number], "hpo export") as removed:
                if number in removed:  # by a collection since `_complete_trial` looked
                    raise _removed(number, removed[number])
                member = load_member(Candidate(trial, predictions), store, Path(scratch))
        except CheckpointError as exc:
            raise StoreError(f"trial {number} cannot be exported: {exc}") from exc
        model = export_ensemble(
            task, data_folder, [member], [member.model], np.ones(1), made_for=made_for
        )
        validation = task.validation(data_folder)
        reference = Reference(
            raw=validation.raw,
            tokens=validation.x if task.padded else None,
            labels=validation.y,
            expected=np.asarray(predictions, np.float64),
            tolerance=tolerance(trial.user_attrs.get(Attr.PRECISION)),
        )
        report: dict[str, Any] = {
            "study": study.study_name,
            # Where the study is, as an ensemble's report says: another study's export of the
            # same name in the same folder is refused (`check_out_dir`).
            "storage": redact_url(config.storage_url),
            "task": config.task,
            "trial": number,
            "family": trial.params.get("family"),
            "params": trial.params,
            "value": trial.value,
            "backend": made_for,
            "trained_on": trial.user_attrs.get(Attr.BACKEND, "tensorflow"),
            "classes": task.class_names(data_folder),
            "checked_on": "validation",
        }
        staging = staging_for(out_dir)
        staging.mkdir(parents=True)
        try:
            report["export"] = write_exports(model, staging, asked, reference, out_dir)
            report["export"].update(write_tokenizer(task, data_folder, staging))
            (staging / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
            publish(staging, out_dir)
        except Exception as exc:
            raise_if_full(exc, out_dir)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out_dir=out_dir, report=report, written=asked)


def export_built_ensemble(
    config: StudyConfig,
    study: optuna.Study,
    ensemble_dir: Path,
    *,
    formats: Iterable[Format | str],
    data: str | None = None,
) -> ExportResult:
    """Adds exports to an ensemble folder that `hpo ensemble` wrote, and records them in its
    `report.json`.

    `ensemble.keras`, `tokenizer.json` and the evaluated test predictions
    (`test_predictions.npy`) are verified against their recorded checksums, before any work;
    each new export must reproduce those predictions on the test set the ensemble was
    evaluated on, and replaces an earlier export of its format.

    Args:
        formats: "savedmodel", "onnx" and/or "litert"; "keras" is already there and only
            verified.
        data: Where the data is, if not where the search read it.

    Raises:
        ConfigError: The folder is not an ensemble of this study, or its files do not verify.
        DataError: The test set found is not the one the ensemble was evaluated on.
        HpoError: An export does not reproduce the evaluated predictions.
    """
    # The folder as one `hpo ensemble` wrote it, from its report to the report's new entries:
    # another `hpo ensemble --out` replacing it, or another export adding to it, waits.
    asked = as_formats(formats)
    with folder_lock(ensemble_dir):
        report = _export_into(config, study, ensemble_dir, asked, data)
    return ExportResult(out_dir=ensemble_dir, report=report, written=asked)


def _export_into(
    config: StudyConfig,
    study: optuna.Study,
    ensemble_dir: Path,
    formats: Iterable[Format | str],
    data: str | None,
) -> dict[str, Any]:
    """`export_built_ensemble`'s work, under the folder's lock; returns the report written."""
    report_path = ensemble_dir / "report.json"
    report, recorded_study, test_data = ensemble_report(ensemble_dir, formats)
    if recorded_study != study.study_name:
        raise ConfigError(
            f"{ensemble_dir} is an ensemble of study {recorded_study!r}, not of "
            f"{study.study_name!r}; pass the study file it was built from."
        )
    # Checked before any work: an export that takes token ids is served with the tokenizer
    # beside it (its checks below use the study's token ids, not that file), and is checked
    # against the evaluated predictions (a changed file would be blamed on the export).
    verify_tokenizer(ensemble_dir, report)
    expected = load_predictions(ensemble_dir, report)
    asked = as_formats(formats)
    backend = serving_backend(export_backend(ensemble_dir), asked)
    check_formats(asked, backend.value)
    # The task first: a study file's own families are imported (their classes registered)
    # before the ensemble that holds them loads.
    task, data_folder, source = _prepare(config, study, data)
    model, _ = load_export(ensemble_dir, backend)
    test = task.load_test(config, str(source), data_folder)
    if testset.fingerprint(test.raw, test.y, test.source).sha256 != test_data:
        # A test set read from elsewhere than the data is a table's test table, which --data
        # does not replace: `[data] test_path` names it.
        evaluated = report["test_data"].get("source")
        fix = (
            f"pass that data ({evaluated}) with --data"
            if Path(test.source) == source
            else "it is the study file's [data] test_path, which --data does not replace: "
            f"restore the table it was evaluated on ({evaluated}) and point test_path at it"
        )
        raise DataError(
            f"the test set read from {test.source} is not the one {ensemble_dir} was evaluated "
            f"on, so its predictions cannot be checked; {fix}. Or build the ensemble again "
            "with hpo ensemble, to evaluate it on this test set."
        )
    temperature = float(report.get("calibration", {}).get("temperature", 1.0))
    # The slope is taken at the blend before the temperature, recovered from the predictions.
    blend = apply_temperature(expected, 1.0 / temperature)
    reference = Reference(
        raw=test.raw,
        tokens=test.x if task.padded else None,
        labels=test.y,
        expected=expected,
        tolerance=float(report["export"]["tolerance"]),
        slope=temperature_slope(blend, temperature),
    )
    staging = staging_for(ensemble_dir / "export")
    staging.mkdir()
    scratch = report_path.with_name(f".report-{uuid.uuid4().hex[:8]}.json")
    with contextlib.ExitStack() as held:
        held.callback(scratch.unlink, missing_ok=True)
        try:
            entries = write_exports(
                model, staging, set(asked) - {Format.KERAS}, reference, ensemble_dir
            )
            report["export"].update(entries)
            # Written before the exports go in place, so that a full disk stops it with the
            # ensemble untouched, and only renames are left between the exports and the report.
            scratch.write_text(json.dumps(report, indent=2), encoding="utf-8")
            synced(scratch)
            # Ctrl-C or SIGTERM waits until the report records the exports' checksums too:
            # stopped between the two, an export would fail its own report's check.
            held.enter_context(signals_held())
            for entry in entries.values():
                publish(staging / entry["path"], ensemble_dir / entry["path"])
            os.replace(scratch, report_path)
        except Exception as exc:
            # The exports go beside the ensemble they are of: --out does not move them.
            raise_if_full(
                exc,
                ensemble_dir,
                fix="the ensemble and its exports are untouched. Free space on that disk, or "
                "copy the ensemble's folder to a larger one and export it there.",
            )
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


def ensemble_report(
    ensemble_dir: Path, formats: Iterable[Format | str]
) -> tuple[dict[str, Any], str, str]:
    """The report.json `hpo ensemble` wrote in `ensemble_dir`, which `export_built_ensemble`
    needs: it names the study and the test set the new exports (`formats`) are checked on.

    Returns:
        The report, its study's name and its test data's SHA-256.

    Raises:
        ConfigError: There is none, or not one of an ensemble; for a folder that
            `Tuner.ensemble().export` wrote (`ensemble.keras` alone), naming the way to its
            other formats.
    """
    path = ensemble_dir / "report.json"
    if not ensemble_dir.is_dir():
        raise ConfigError(
            f"--ensemble {ensemble_dir}: no such folder. Name a folder hpo ensemble wrote "
            "(ensembles/<study>-top5, say), or build one: hpo ensemble --study FILE."
        )
    try:
        report = read_json(path)
        if isinstance(report, dict) and "trial" in report and "test_data" not in report:
            one = report["trial"]
            raise ConfigError(
                f"{ensemble_dir} is trial {one}'s export (hpo export --trial), whose formats are "
                f"written from the trial's checkpoint: hpo export --trial {one} --study FILE "
                f"--out {ensemble_dir} --format ... writes them all again, the new ones with them."
            )
        return report, report["study"], report["test_data"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if (ensemble_dir / EXPORT_NAME).is_file() and not path.exists():
            asked = tuple(f.value for f in as_formats(formats) if f is not Format.KERAS)
            raise ConfigError(
                f"{ensemble_dir} holds {EXPORT_NAME} but no report.json, so no ensemble report "
                f"for hpo export to check new exports against (the test predictions hpo "
                f"ensemble records); Tuner.ensemble().export(path) writes such a folder, "
                f"{EXPORT_NAME} alone. Write its other formats from Python: "
                f"tuner.ensemble(...).export(path, formats={asked}) in a process on TensorFlow "
                f"(for a search on JAX or PyTorch, the same hpo.Tuner made again in a process "
                f"started with KERAS_BACKEND=tensorflow, which reads the search's trials)."
            ) from exc
        raise ConfigError(
            f"{ensemble_dir} holds no ensemble report ({path}: {exc!r}). Build one "
            "with hpo ensemble --study FILE, or export a trial with --trial N."
        ) from exc


def export_on_tensorflow(
    job: tuple[StudyConfig, str, Path, tuple[str, ...], str | None],
) -> ExportResult:
    """`export_built_ensemble` in a process of its own on TensorFlow, which writes a SavedModel,
    ONNX and LiteRT, for an ensemble made on JAX or PyTorch (`hpo.training.isolation.
    call_isolated` runs it; Keras cannot switch backends in a process).

    Args:
        job: The study's configuration, its name, the ensemble's folder, the formats and the
            data's location (`export_built_ensemble`'s `data`).
    """
    from hpo.backend import use_backend
    from hpo.store import load_existing_study, open_storage

    config, study_name, ensemble_dir, formats, data = job
    use_backend(Backend.TENSORFLOW)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    study = load_existing_study(storage, study_name)
    with across_backends(export_backend(ensemble_dir).value):
        return export_built_ensemble(config, study, ensemble_dir, formats=formats, data=data)


def _complete_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial `number`, COMPLETE and with its checkpoint.

    Raises:
        ConfigError: It does not exist, has not completed, or has no checkpoint any more.
    """
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        numbers = f"0 to {len(trials) - 1}" if trials else "none yet"
        raise ConfigError(
            f"study {study.study_name!r} has no trial {number} (its trials: {numbers}). "
            "hpo status --study FILE lists them."
        )
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise ConfigError(
            f"trial {number} is {trial.state.name}, not COMPLETE; only a finished trial has a "
            "model to export. hpo status --study FILE lists the COMPLETE ones."
        )
    removed = removed_checkpoints(study)
    if number in removed:
        raise _removed(number, removed[number])
    if not trial.user_attrs.get(Attr.CHECKPOINT_ID):
        raise ConfigError(f"trial {number} stored no checkpoint, so there is no model to export.")
    return trial


def _removed(number: int, why: str) -> ConfigError:
    return ConfigError(
        f"trial {number}'s checkpoint was removed by hpo gc ({why}), so there is no model to "
        "export. Export a trial whose checkpoint was kept (the best ones and every ensemble "
        "member are)."
    )


def _prepare(config: StudyConfig, study: optuna.Study, data: str | None) -> tuple[Task, Path, Path]:
    """The study's task, prepared data folder (checked against the search's) and data source."""
    task = study_task(config)
    source = provenance.locate_source(task, config, data, study)
    data_folder = task.prepare(config, str(source), search_space(task, config.space).shared)
    provenance.check_fingerprint(study, task.fingerprint(data_folder), source, "the export")
    return task, data_folder, source
