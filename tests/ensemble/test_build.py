from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
import pytest

from hpo.command_options import open_study
from hpo.config import StudyConfig, load_study_config, sqlite_url
from hpo.contract import Attr, CheckpointError, load_keras_file, refuse_unsafe_layers
from hpo.ensemble import EXPORT_NAME, build_ensemble, main, ranked_trials
from hpo.ensemble.build import fit_ensemble
from hpo.ensemble.calibration import apply_temperature, temperature_slope
from hpo.ensemble.export import TOKENIZER_NAME, check_rows
from hpo.ensemble.litert_export import LITERT_NAME
from hpo.ensemble.onnx_export import ONNX_NAME
from hpo.ensemble.serving import SAVED_MODEL_NAME
from hpo.ensemble.weighting import Method
from hpo.errors import ConfigError, DataError
from hpo.search import run_search
from hpo.store import open_storage, sha256_file
from hpo.study import search_space
from hpo.tasks.imdb import IMDB

from ..conftest import _NEGATIVE, _POSITIVE, write_study


def _snapshot(config: StudyConfig) -> list[tuple[int, str, dict[str, object]]]:
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    study = optuna.load_study(study_name=config.name, storage=storage)
    return [(t.number, t.state.name, t.user_attrs) for t in study.trials] + [
        (-1, "study", study.user_attrs)
    ]


def test_ensemble_writes_report_export_and_records_in_study(
    study_copy: Path, tmp_path: Path
) -> None:
    config, study = open_study(study_copy, None, None)
    out = tmp_path / "out"
    result = build_ensemble(config, study, top=3, method=Method.CARUANA, out_dir=out)
    for name in (
        "report.json",
        "members.csv",
        "ensemble.png",
        "ensemble.keras",
        "test_predictions.npy",
    ):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(result.report | {"out_dir": report["out_dir"]}))
    weights = np.array([m["weight"] for m in report["members"]])
    assert np.all(weights >= 0)
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    # The plain top 3 come first; the pool's selection (at most 3) may add others after them.
    ranked = ranked_trials(study)
    assert [m["trial"] for m in report["members"][:3]] == [t.number for t in ranked[:3]]
    assert report["top"] == 3
    assert 1 <= np.count_nonzero(weights) <= 3
    assert report["kept"] in ("pool", "top")
    assert report["pool"]["size"] == 4
    assert set(report["validation"]) == {"ensemble", "top", "pool", "uniform", "best_member"}
    # The test set scores the kept ensemble (and, from the same pass, the plain one), never
    # the pool's selection when it is not kept.
    assert set(report["test"]) == {"ensemble", "top", "uniform", "best_member"}

    # Calibration: fitted on validation, never worse there; ECE before and after, and the best
    # member's, on validation and test.
    calibration = report["calibration"]
    temperature = calibration["temperature"]
    assert calibration["enabled"] and calibration["ece_bins"] == 15
    for split in ("validation", "test"):
        for key in ("before", "after", "best_member"):
            assert set(calibration[split][key]) == {"log_loss", "ece"}
    val = calibration["validation"]
    assert val["after"]["log_loss"] <= val["before"]["log_loss"]
    assert report["validation"]["ensemble"]["log_loss"] == val["after"]["log_loss"]

    # The ensemble's test predictions are the weighted average of its members' predictions.
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    test = IMDB.load_test(config, None, folder)
    member_predictions = []
    for member in report["members"]:
        trial = study.trials[member["trial"]]
        path = tmp_path / f"m{member['trial']}.keras"
        shutil.copy(config.artifact_dir / trial.user_attrs[Attr.CHECKPOINT_ID], path)
        model = load_keras_file(path)
        x = IMDB.member_inputs(test.x, trial.params)
        member_predictions.append(model.predict(x, verbose=0).reshape(-1))
    saved = np.load(out / "test_predictions.npy")
    blended = weights @ np.stack(member_predictions)
    slope = temperature_slope(blended, temperature)
    assert np.all(np.abs(saved - apply_temperature(blended, temperature)) <= 1e-5 * slope)
    assert report["test"]["ensemble"]["accuracy"] == pytest.approx(
        np.mean((saved > 0.5) == test.y), abs=1e-6
    )

    # The exported model, from raw text, reproduces them, its temperature included.
    exported = load_keras_file(out / "ensemble.keras")
    assert exported.get_layer("temperature").temperature == pytest.approx(temperature, rel=1e-5)
    from_raw = exported.predict(test.raw, verbose=0).reshape(-1)
    assert np.all(np.abs(from_raw - saved) <= 1e-5 * slope)
    assert report["export"]["max_abs_difference"] <= report["export"]["max_tolerance"]
    assert report["export"]["checked_classes"] == 2
    assert report["export"]["sha256"] == sha256_file(out / "ensemble.keras")

    from optuna_dashboard import get_note

    reloaded = optuna.load_study(
        study_name=config.name, storage=open_storage(config.storage_url, create=False)
    )
    recorded = reloaded.user_attrs["ensemble_top3"]
    assert recorded["members"] == [m["trial"] for m in report["members"] if m["weight"] > 0]
    assert recorded["test_accuracy"] == report["test"]["ensemble"]["accuracy"]
    assert recorded["temperature"] == temperature
    assert "Ensemble of at most 3 trials" in get_note(reloaded)
    assert any(
        a.filename == "report.json" for a in optuna.artifacts.get_all_artifact_meta(reloaded)
    )


def test_ensemble_is_reproducible(study_copy: Path, tmp_path: Path) -> None:
    config, study = open_study(study_copy, None, None)
    first = build_ensemble(config, study, top=2, out_dir=tmp_path / "a").report
    second = build_ensemble(config, study, top=2, out_dir=tmp_path / "a").report
    assert [m["weight"] for m in first["members"]] == [m["weight"] for m in second["members"]]
    assert first["test"] == second["test"]
    # The same test data has the same fingerprint, so the second run has nothing to warn about.
    assert first["test_data"] == second["test_data"]
    assert "test_data_changed" not in first and "test_data_changed" not in second


@pytest.mark.slow
def test_a_rerun_on_changed_test_data_warns_and_records_both(
    study_copy: Path,
    fake_imdb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data" / "aclImdb"
    shutil.copytree(fake_imdb, data)
    config, study = open_study(study_copy, None, None)
    first = build_ensemble(
        config, study, top=1, method=Method.UNIFORM, out_dir=tmp_path / "a", data=str(data)
    ).report
    assert first["test_data"]["examples"] == first["test_examples"] == 240
    assert first["test_data"]["source"] == str(data)
    assert "test_data_changed" not in first
    assert study.user_attrs["test_data"]["sha256"] == first["test_data"]["sha256"]

    # One test review gains a word.
    review = data / "test" / "pos" / "0_8.txt"
    review.write_text(review.read_text() + " again")
    out = tmp_path / "b"
    argv = ["--study", str(study_copy), "--top", "1", "--method", "uniform", "--out", str(out)]
    assert main([*argv, "--data", str(data)]) == 0
    second = json.loads((out / "report.json").read_text())
    changed = second["test_data_changed"]
    assert changed["previous"]["sha256"] == first["test_data"]["sha256"]
    assert changed["current"] == second["test_data"]
    assert second["test_data"]["sha256"] != first["test_data"]["sha256"]
    assert second["test_data"]["labels_sha256"] == first["test_data"]["labels_sha256"]
    assert changed["changed"] == ["the inputs"]
    printed = capsys.readouterr().out
    for text in (printed, caplog.text):
        assert first["test_data"]["sha256"] in text
        assert second["test_data"]["sha256"] in text
        assert "240 examples" in text
    assert "Warning: this ensemble is evaluated on other test data" in printed
    # The study now holds the latest test data, which the next ensemble compares with.
    _, reloaded = open_study(study_copy, None, None)
    assert reloaded.user_attrs["test_data"]["sha256"] == second["test_data"]["sha256"]
    assert reloaded.user_attrs["ensemble_top1"]["test_data_sha256"] == second["test_data"]["sha256"]


def test_a_corrupt_checkpoint_is_skipped_and_the_next_best_takes_its_place(
    study_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, study = open_study(study_copy, None, None)
    ranked = ranked_trials(study)
    best = ranked[0]
    artifact = config.artifact_dir / best.user_attrs[Attr.CHECKPOINT_ID]
    artifact.write_bytes(artifact.read_bytes()[:1000])
    report = build_ensemble(
        config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "o"
    ).report
    assert [m["trial"] for m in report["members"][:2]] == [ranked[1].number, ranked[2].number]
    assert best.number not in [m["trial"] for m in report["members"]]
    assert report["skipped"][0]["trial"] == best.number
    reason = report["skipped"][0]["reason"]
    assert f"trial {best.number}: its checkpoint {artifact} has SHA-256" in reason
    assert "Restore it from a backup of the artifact folder" in reason
    assert f"skipping trial {best.number}, the next best takes its place" in caplog.text


def test_when_every_checkpoint_is_damaged_the_ensemble_stops_naming_the_files(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, study = open_study(study_copy, None, None)
    ranked = ranked_trials(study)
    for trial in ranked:
        artifact = config.artifact_dir / trial.user_attrs[Attr.CHECKPOINT_ID]
        artifact.write_bytes(artifact.read_bytes()[:1000])
    before = _snapshot(config)
    out = tmp_path / "none"
    assert main(["--study", str(study_copy), "--top", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    best = config.artifact_dir / ranked[0].user_attrs[Attr.CHECKPOINT_ID]
    usable = f"none of the {len(ranked)} COMPLETE trials with usable validation predictions"
    assert f"{usable} has a usable checkpoint" in err
    assert f"trial {ranked[0].number}: its checkpoint {best} has SHA-256" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert _snapshot(config) == before


def test_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(CheckpointError, match="Lambda layer"):
        refuse_unsafe_layers(path, "trial 7")


def test_bad_input_errors_leave_the_study_unchanged(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(study_copy)
    before = _snapshot(config)
    with pytest.raises(SystemExit) as exc:
        main(["--study", str(study_copy), "--top", "0"])
    assert exc.value.code == 2
    assert "--top: must be a whole number >= 1, got '0'. Use --top 5" in capsys.readouterr().err

    assert main(["--storage", config.storage_url, "--study-name", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err

    missing = tmp_path / "typo" / "study.db"
    assert main(["--storage", f"sqlite:///{missing}", "--study-name", config.name]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not missing.exists()
    assert not missing.parent.exists()

    empty = optuna.create_study(
        study_name="empty", storage=open_storage(config.storage_url, create=False)
    )
    empty.set_user_attr("hpo_config", {"name": "empty"})
    assert main(["--storage", config.storage_url, "--study-name", "empty"]) == 2
    assert "has no COMPLETE trials" in capsys.readouterr().err
    optuna.delete_study(study_name="empty", storage=config.storage_url)
    assert _snapshot(config) == before


def test_an_output_folder_that_holds_other_files_is_refused_before_any_work(
    study_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # hpo replaces its output folder whole: --out naming a folder of the user's, the data, the
    # study's folder, a file or the folder it runs in deleted them (the last two a traceback).
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("my notes")
    notes = tmp_path / "notes.txt"
    notes.write_text("important")
    here = tmp_path / "here"  # an earlier ensemble's folder, to run in
    here.mkdir()
    (here / "report.json").write_text("{}")
    monkeypatch.chdir(here)
    config = load_study_config(study_copy)
    before = _snapshot(config)
    for out, said in [
        (mine, "holds files that hpo did not write"),
        (config.study_dir, "holds files that hpo did not write"),
        (notes, "is a file, and hpo writes a folder there"),
        (Path("."), "is the folder this command runs in"),
        (here / "..", "is the folder this command runs in, or one above it"),
    ]:
        assert main(["--study", str(study_copy), "--out", str(out)]) == 2
        assert said in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "my notes" and (mine / "sub").is_dir()
    assert notes.read_text() == "important"
    assert (here / "report.json").is_file()
    assert _snapshot(config) == before
    # An earlier ensemble's folder is replaced; so is an empty one.
    (tmp_path / "empty").mkdir()
    assert main(["--study", str(study_copy), "--top", "2", "--out", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / EXPORT_NAME).is_file()
    assert main(["--study", str(study_copy), "--top", "2", "--out", str(tmp_path / "empty")]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_output_folder_is_replaced_only_by_an_output_of_its_own_kind(tmp_path: Path) -> None:
    # A typo in --out replaced an ensemble with a trial's export or a distilled student.
    from hpo.ensemble.output_folder import OutputKind, check_out_dir

    reports = {
        OutputKind.ENSEMBLE: {"study": "s", "members": [{"trial": 3}]},
        OutputKind.TRIAL: {"study": "s", "trial": 3},
        OutputKind.DISTILLATION: {"study": "s", "student": {}, "ensemble": {}},
    }
    for held, report in reports.items():
        folder = tmp_path / held.name
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(report))
        assert OutputKind.of(report) is held
        for kind in OutputKind:
            if kind is held:
                assert check_out_dir(folder, kind) == folder
            else:
                with pytest.raises(ConfigError, match=f"holds {held.with_article}, and this"):
                    check_out_dir(folder, kind)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"holds a report\.json hpo did not write"):
        check_out_dir(tmp_path / "other", OutputKind.ENSEMBLE)


def test_an_ensemble_folder_holding_a_distilled_student_or_files_of_yours_is_not_replaced(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new `hpo ensemble` over an ensemble's folder deleted distilled/, the student `hpo
    # distill` writes there by default (hours of work with --cross-fit or --augment).
    from hpo.ensemble.output_folder import OutputKind, check_out_dir

    config = load_study_config(study_copy)
    out = tmp_path / "ensemble"
    (out / "distilled").mkdir(parents=True)
    ensemble = {"study": config.name, "storage": config.storage_url, "members": [{"trial": 0}]}
    (out / "report.json").write_text(json.dumps(ensemble))
    (out / "distilled" / "report.json").write_text(
        json.dumps({"study": config.name, "student": {}})
    )
    before = _snapshot(config)
    assert main(["--study", str(study_copy), "--top", "2", "--out", str(out)]) == 2
    said = capsys.readouterr().err
    assert f"output folder {out} (--out) holds an ensemble and, in distilled/, a student" in said
    assert f"mv {out / 'distilled'} {out}-distilled), or give this ensemble another" in said
    assert (out / "distilled" / "report.json").is_file()
    assert _snapshot(config) == before
    # What hpo writes there is replaced with it: exports `hpo export` added, runs' scratch.
    shutil.move(out / "distilled", tmp_path / "moved")
    for name in [
        SAVED_MODEL_NAME,
        ".export.tmp-7-0123abcd-host",
        ".ensemble.onnx.old-7-0123abcd-h",
    ]:
        (out / name).mkdir()
    # And what a file manager leaves in a folder it showed (macOS's Finder).
    for name in [ONNX_NAME, LITERT_NAME, TOKENIZER_NAME, ".report-0123abcd.json", ".DS_Store"]:
        (out / name).write_text("")
    assert check_out_dir(out, OutputKind.ENSEMBLE) == out
    # Anything else is not, nor the only copy of a student a killed `hpo distill` left.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"files hpo did not write there \(notes\.txt\)"):
        check_out_dir(out, OutputKind.ENSEMBLE)
    (out / "notes.txt").unlink()
    (out / ".distilled.old-7-0123abcd-host").mkdir()
    with pytest.raises(ConfigError, match=r"there \(\.distilled\.old-7-0123abcd-host/\)"):
        check_out_dir(out, OutputKind.ENSEMBLE)


def test_an_ensemble_folder_of_another_study_is_refused_and_a_replaced_one_is_named(
    study_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `hpo ensemble` silently replaced, in its default folder, the ensemble of a study of the
    # same name in another database of the same project, whose record (hpo status: "->
    # ensembles/t-top3") then named this study's ensemble.
    config = load_study_config(study_copy)
    project = tmp_path / "project"
    out = project / "ensemble"
    out.mkdir(parents=True)

    def study_recording(database: Path, out_dir: str, resolved: Path | None = None) -> Path:
        """A study of this one's name whose ensemble of 2 is `out_dir`, as it was given (and
        as the folder it is, where `resolved`; records before had only the former)."""
        database.parent.mkdir(parents=True)
        other = optuna.create_study(study_name=config.name, storage=sqlite_url(database))
        record = {"out_dir": out_dir}
        if resolved is not None:
            record["out_dir_resolved"] = str(resolved)
        other.set_user_attr("ensemble_top2", record)
        return database

    # Run from anywhere: where a command runs decides nothing.
    monkeypatch.chdir(tmp_path)
    other = study_recording(project / "studies" / "tiny" / "study.db", "ensemble")
    # Written from a folder that is not above its database: the folder itself tells.
    shared = study_recording(tmp_path / "shared" / "tiny.db", "../project/ensemble", out)
    created = "2020-01-02T03:04:05+00:00"

    def holding(study: str, storage: str) -> None:
        report = {"study": study, "storage": storage, "created": created, "members": []}
        (out / "report.json").write_text(json.dumps(report))

    refused = [("other", config.storage_url), (config.name, sqlite_url(other))]
    for study, storage in [*refused, (config.name, sqlite_url(shared))]:
        holding(study, storage)
        assert main(["--study", str(study_copy), "--top", "2", "--out", str(out)]) == 2
        said = capsys.readouterr().err
        assert f"holds an ensemble of study {study!r} ({storage}), and this one is" in said
        assert f"of study {config.name!r} ({config.storage_url})" in said
        assert f"with --out, such as {out}-{config.name}." in said
        assert json.loads((out / "report.json").read_text())["created"] == created
    # This study's, from where its folder was before it moved (that database is gone), or
    # from the project this one was copied from (cp -a; its record names its own folder).
    original = study_recording(tmp_path / "original" / "studies" / "tiny" / "study.db", "ensemble")
    for recorded in (tmp_path / "moved" / "study.db", original):
        holding(config.name, sqlite_url(recorded))
        assert main(["--study", str(study_copy), "--top", "2", "--out", str(out)]) == 0
        said = capsys.readouterr().err
        replaced = f"replacing the ensemble in {out} (built {created} from study {config.name!r})"
        assert replaced in said
        assert json.loads((out / "report.json").read_text())["created"] != created


def test_a_trial_export_of_another_study_database_is_refused_and_its_own_replaced(
    tmp_path: Path,
) -> None:
    # No study records its trials' exports: one of another database of the study's name is
    # another study's, which the report's storage (recorded since) tells.
    from hpo.ensemble.output_folder import OutputKind, check_out_dir

    mine, theirs = tmp_path / "mine.db", tmp_path / "theirs.db"
    for database in (mine, theirs):
        optuna.create_study(study_name="tiny", storage=sqlite_url(database))
    out = tmp_path / "exports" / "tiny-trial1"
    out.mkdir(parents=True)
    report = {"study": "tiny", "storage": sqlite_url(theirs), "trial": 1}
    (out / "report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match=r"holds a trial export of study 'tiny'"):
        check_out_dir(out, OutputKind.TRIAL, study="tiny", storage=sqlite_url(mine))
    assert check_out_dir(out, OutputKind.TRIAL, study="tiny", storage=sqlite_url(theirs)) == out


def test_staging_folders_of_killed_runs_on_this_machine_are_removed_by_the_next(
    tmp_path: Path,
) -> None:
    # kill -9 of hpo ensemble, export or distill skipped their cleanup: their staging folders
    # (a refitted ensemble's exports, hundreds of MB) stayed beside --out for good. Only this
    # machine's are swept: a container sharing the host name (`--network host`) and the folder
    # has its own PIDs, and one named by the host alone lost its running export.
    import socket
    import subprocess

    from hpo.ensemble.output_folder import staging_for
    from hpo.scratch import machine_tag

    out = tmp_path / "ensemble"
    out.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    tag = machine_tag()
    left = {
        "killed": tmp_path / f".ensemble.tmp-{gone.pid}-0123abcd-{tag}",
        "running": tmp_path / f".ensemble.tmp-{os.getpid()}-0123abcd-{tag}",
        "elsewhere": tmp_path / f".ensemble.tmp-{gone.pid}-0123abcd-{tag[::-1]}",
        "host only": tmp_path / f".ensemble.tmp-{gone.pid}-0123abcd-{socket.gethostname()}",
        "old": tmp_path / f".ensemble.old-{gone.pid}-0123abcd-{tag}",
    }
    for folder in left.values():
        (folder / "saved_model").mkdir(parents=True)
    out.rename(tmp_path / "moved")
    staging_for(out, "old")
    # Killed between publish's renames: the old copy, the only one there is, is put back.
    assert not left["old"].exists() and (out / "saved_model").is_dir()
    (left["old"] / "saved_model").mkdir(parents=True)
    new = staging_for(out)
    assert new.name.startswith(f".ensemble.tmp-{os.getpid()}-") and not new.exists()
    assert {k for k, f in left.items() if f.exists()} == {
        "running",
        "elsewhere",
        "host only",
        "old",
    }
    staging_for(out, "old")
    assert {k for k, f in left.items() if f.exists()} == {"running", "elsewhere", "host only"}


def _old_and_new_output(folder: Path) -> tuple[Path, Path]:
    """An earlier ensemble's output folder, and a new one staged beside it to replace it."""
    from hpo.ensemble.output_folder import staging_for

    out = folder / "ensemble"
    out.mkdir()
    (out / "report.json").write_text("old")
    staging = staging_for(out)
    staging.mkdir()
    (staging / "report.json").write_text("new")
    return out, staging


def test_publish_puts_the_new_output_on_disk_before_renaming_it_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing was flushed: after a power loss the renamed folder could hold empty files, with
    # the earlier output already gone.
    from hpo.ensemble.output_folder import publish

    out, staging = _old_and_new_output(tmp_path)
    (staging / "saved_model" / "variables").mkdir(parents=True)
    (staging / "saved_model" / "variables" / "data").write_bytes(b"weights")
    events: list[tuple[str, str]] = []
    fsync, rename = os.fsync, os.rename

    def recorded_fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recorded_rename(source: Path, target: Path) -> None:
        events.append(("rename", str(source)))
        rename(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "rename", recorded_rename)
    publish(staging, out)
    assert (out / "report.json").read_text() == "new"
    first_rename = events.index(("rename", str(out)))
    synced = {path for kind, path in events[:first_rename] if kind == "fsync"}
    for name in ("report.json", "saved_model/variables/data", "saved_model", "."):
        assert os.path.normpath(staging / name) in synced, name
    assert events[-1] == ("fsync", str(tmp_path))  # the renames themselves


def test_a_signal_between_publishs_renames_is_held_until_the_new_output_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM or Ctrl-C between the two renames raised there: the staging folder was removed,
    # the earlier ensemble left only in a hidden .ensemble.old-*, and the command said
    # "nothing half-written was left in place".

    from hpo.ensemble import output_folder
    from hpo.ensemble.output_folder import publish

    out, staging = _old_and_new_output(tmp_path)
    renames: list[str] = []
    rename = os.rename

    def signalled(source: Path, target: Path) -> None:
        rename(source, target)
        renames.append(Path(target).name)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    monkeypatch.setattr(output_folder.os, "rename", signalled)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            publish(staging, out)
        assert signal.getsignal(signal.SIGTERM) is interrupt
    finally:
        signal.signal(signal.SIGTERM, before)
    assert renames[1] == "ensemble"
    assert (out / "report.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]


def test_a_signal_as_the_new_ensemble_is_put_in_place_waits_for_the_study_to_record_it(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM after publish's renames, before record_in_study, ended the command with the new
    # ensemble in the folder and the study recording the earlier one (or none): hpo gc, which
    # keeps recorded ensembles' members, could delete the checkpoints of the one in the folder.

    from hpo.ensemble import build

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "out"
    publish = build.publish

    def signalled(staging: Path, out_dir: Path) -> None:
        publish(staging, out_dir)
        os.kill(os.getpid(), signal.SIGTERM)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # And it records under the folder's lock: two runs into one folder record in the order
    # they published (the study named the other run's members, which gc then kept instead).
    import fcntl

    record = build.record_in_study
    locked: list[bool] = []

    def recorded(*args: Any) -> None:
        with open(tmp_path / ".out.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                locked.append(True)
        record(*args)

    monkeypatch.setattr(build, "publish", signalled)
    monkeypatch.setattr(build, "record_in_study", recorded)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_ensemble(config, study, top=2, out_dir=out)
        assert signal.getsignal(signal.SIGTERM) is interrupt
    finally:
        signal.signal(signal.SIGTERM, before)
    report = json.loads((out / "report.json").read_text())
    reloaded = optuna.load_study(
        study_name=config.name, storage=open_storage(config.storage_url, create=False)
    )
    assert reloaded.user_attrs["ensemble_top2"]["created"] == report["created"]
    assert locked == [True]


def test_a_stop_a_library_swallowed_keeps_the_earlier_output(tmp_path: Path) -> None:
    # A KeyboardInterrupt h5py caught while a member loaded let hpo ensemble replace its folder.
    from hpo import _stop
    from hpo.ensemble.output_folder import publish

    out, staging = _old_and_new_output(tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):  # raised, and swallowed as h5py would
            _stop.interrupt(signal.SIGTERM, None)
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            publish(staging, out)
    finally:
        _stop.clear()
    assert (out / "report.json").read_text() == "old"


def test_a_second_rename_that_fails_puts_the_earlier_output_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.ensemble import output_folder
    from hpo.ensemble.output_folder import publish

    out, staging = _old_and_new_output(tmp_path)
    rename = os.rename

    def failing(source: Path, target: Path) -> None:
        if Path(source) == staging:
            raise OSError(5, "Input/output error")
        rename(source, target)

    monkeypatch.setattr(output_folder.os, "rename", failing)
    with pytest.raises(OSError, match="Input/output error"):
        publish(staging, out)
    assert (out / "report.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [staging.name, "ensemble"]


def test_the_output_a_killed_run_left_aside_is_put_back_by_the_next_run(tmp_path: Path) -> None:
    # SIGKILL between publish's renames left ensembles/k-top3 missing, the earlier ensemble
    # only in .k-top3.old-*; the next run left that copy (a whole ensemble) there for good.
    import subprocess
    import time

    from hpo.ensemble.output_folder import OutputKind, check_out_dir, publish, staging_for
    from hpo.scratch import machine_tag

    gone = subprocess.Popen(["true"])
    gone.wait()
    tag = machine_tag()
    out = tmp_path / "ensemble"
    killed = tmp_path / f".ensemble.old-{gone.pid}-0123abcd-{tag}"
    older = tmp_path / f".ensemble.old-{gone.pid}-4567abcd-{tag}"
    running = tmp_path / f".ensemble.old-{os.getpid()}-0123abcd-{tag}"
    elsewhere = tmp_path / f".ensemble.old-{gone.pid}-0123abcd-{tag[::-1]}"

    def left(copy: Path) -> None:
        copy.mkdir()
        (copy / "report.json").write_text(json.dumps({"members": [1], "study": copy.name}))

    # Not a live process's (it may be renaming it now), nor another machine's.
    left(running)
    left(elsewhere)
    assert check_out_dir(out, OutputKind.ENSEMBLE) == out and not out.exists()
    left(older)
    time.sleep(0.01)  # the newer copy is told by its time
    left(killed)
    assert check_out_dir(out, OutputKind.ENSEMBLE, study=killed.name) == out
    assert json.loads((out / "report.json").read_text())["study"] == killed.name
    assert not killed.exists() and older.exists()
    staging = staging_for(out)
    staging.mkdir()
    publish(staging, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ensemble", running.name, elsewhere.name]
    )
    # Where check_out_dir did not run first, publish puts it back, then replaces it.
    shutil.rmtree(out)
    killed.mkdir()
    staging = staging_for(out)
    staging.mkdir()
    publish(staging, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ensemble", running.name, elsewhere.name]
    )


def test_replacing_a_linked_output_folder_leaves_no_link_behind(tmp_path: Path) -> None:
    # `old.is_dir()` followed the link, and rmtree refuses links (silently, with ignore_errors):
    # each replace of a linked ensemble folder left its `.<name>.old-...` link for good.
    import subprocess

    from hpo.ensemble.output_folder import publish, staging_for
    from hpo.scratch import machine_tag

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.json").write_text("{}")
    out = tmp_path / "ensemble"
    out.symlink_to(elsewhere)
    staging = staging_for(out)
    staging.mkdir()
    publish(staging, out)
    assert out.is_dir() and not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "ensemble"]
    assert (elsewhere / "report.json").is_file()  # what the link pointed to is not hpo's to remove
    # A link a killed run left under a staging name goes too, not what it points to.
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp_path / f".ensemble.old-{gone.pid}-0123abcd-{machine_tag()}"
    left.symlink_to(elsewhere)
    staging_for(out, "old")
    assert not os.path.lexists(left) and (elsewhere / "report.json").is_file()


def test_more_than_available_uses_all_and_says_so(
    study_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "all"
    code = main(
        [
            "--storage",
            load_study_config(study_copy).storage_url,
            "--study-name",
            "tiny",
            "--top",
            "9",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "--top 9, but the study has only 4 COMPLETE trials; using all of them" in caplog.text
    assert "top 4 (caruana)" in captured.out
    assert "pool selection of 4" in captured.out
    assert "Temperature" in captured.out
    assert len(json.loads((out / "report.json").read_text())["members"]) == 4
    # From Python the warning names the argument as Python passes it, not the command's flag.
    caplog.clear()
    config = load_study_config(study_copy)
    study = optuna.load_study(study_name="tiny", storage=config.storage_url)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fitted = fit_ensemble(config, study, scratch, top=9, calibrate=False)
    assert len(fitted.members) == 4
    assert "top=9, but the study has only 4 COMPLETE trials" in caplog.text
    assert "--top" not in caplog.text


def test_predict_scores_new_text(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.ensemble.predict import main as predict_main

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "e"
    build_ensemble(config, study, top=2, out_dir=out)
    positive, negative = " ".join(_POSITIVE), " ".join(_NEGATIVE)
    assert predict_main(["--ensemble", str(out), positive, negative]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    probabilities = [float(line.split("\t")[0]) for line in lines]
    labels = [line.split("\t")[1] for line in lines]
    assert probabilities[0] > probabilities[1]
    assert labels == ["positive" if p > 0.5 else "negative" for p in probabilities]
    assert [line.split("\t")[2] for line in lines] == [positive, negative]
    # A review with its own paragraphs and tabs, given as an argument: still one line of three.
    assert predict_main(["--ensemble", str(out), f"{positive}\n\n\t{negative}"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[2] == f"{positive} {negative}"[:67] + "..."
    # A blank argument was dropped, and every line after it answered the input before it.
    assert predict_main(["--ensemble", str(out), positive, " ", negative]) == 2
    assert "input 2 of 3 is blank" in capsys.readouterr().err
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great movie\n\nawful movie\n")
    assert predict_main(["--ensemble", str(out), "--file", str(reviews)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    # Saved by Notepad as "Unicode" (UTF-16): read by its mark; cp1252: named, with the fix.
    reviews.write_bytes("great movie\r\nawful movie\r\n".encode("utf-16"))
    assert predict_main(["--ensemble", str(out), "--file", str(reviews)]) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == [
        "great movie",
        "awful movie",
    ]
    # A line is what an editor shows as one: a form feed or U+2028 inside a review is no break.
    reviews.write_text("great\x0cmovie\nawful\u2028movie\rfine film\n")
    assert predict_main(["--ensemble", str(out), "--file", str(reviews)]) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == [
        "great movie",
        "awful movie",
        "fine film",
    ]
    reviews.write_bytes("café movie\n".encode("cp1252"))
    assert predict_main(["--ensemble", str(out), "--file", str(reviews)]) == 2
    assert "is not UTF-8: byte 3 is b'\\xe9'. Save it as UTF-8" in capsys.readouterr().err
    assert predict_main(["--ensemble", str(tmp_path / "none"), "x"]) == 2
    assert "no ensemble.keras" in capsys.readouterr().err


def test_search_never_reads_the_test_set(fake_imdb: Path, tmp_path: Path) -> None:
    train_only = tmp_path / "train-only" / "aclImdb"
    shutil.copytree(fake_imdb / "train", train_only / "train")
    config = load_study_config(write_study(tmp_path / "s", train_only, n_trials=2))
    summary = run_search(config, progress=False)
    assert summary.finished == 2
    assert summary.failed == 0
    _, study = open_study(config.study_dir.parent / "tiny.toml", None, None)
    with pytest.raises(DataError, match="no test reviews"):
        build_ensemble(config, study, top=2, out_dir=tmp_path / "o")


def test_export_check_rows_cover_every_class() -> None:
    labels = np.array([0] * 600 + [1] * 600)  # test files come sorted by class
    rows = check_rows(labels, 512)
    assert len(rows) == 512
    assert np.bincount(labels[rows]).tolist() == [256, 256]
    assert len(set(rows.tolist())) == 512


def _set_attr(config: StudyConfig, number: int, key: str, value: object) -> None:
    """Rewrites a finished trial's attribute in the SQLite file (Optuna refuses to)."""
    import sqlite3

    with sqlite3.connect(config.study_dir / "study.db") as db:
        changed = db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = ? AND trial_id = "
            "(SELECT trial_id FROM trials WHERE number = ?)",
            (json.dumps(value), key, number),
        ).rowcount
    assert changed == 1


def test_a_member_that_verifies_but_does_not_load_is_skipped(
    study_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, study = open_study(study_copy, None, None)
    best = ranked_trials(study)[0]
    artifact = config.artifact_dir / best.user_attrs[Attr.CHECKPOINT_ID]
    # A well-formed .keras archive naming a class this Keras does not have.
    import zipfile

    with zipfile.ZipFile(artifact, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "NoSuchLayer", "config": {}}))
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    _set_attr(config, best.number, "checkpoint_sha256", sha256_file(artifact))
    config, study = open_study(study_copy, None, None)
    report = build_ensemble(config, study, top=2, out_dir=tmp_path / "e").report
    assert best.number not in [m["trial"] for m in report["members"]]
    assert report["top"] == 2
    assert "cannot load checkpoint" in report["skipped"][0]["reason"]


def test_changed_validation_predictions_are_skipped(study_copy: Path, tmp_path: Path) -> None:
    config, study = open_study(study_copy, None, None)
    best = ranked_trials(study)[0]
    assert best.user_attrs[Attr.PREDICTIONS_SHA256]
    artifact = config.artifact_dir / best.user_attrs[Attr.PREDICTIONS_ID]
    predictions = np.load(artifact)
    with artifact.open("wb") as handle:
        np.save(handle, 1.0 - predictions)  # same shape, other numbers
    report = build_ensemble(config, study, top=2, out_dir=tmp_path / "e").report
    assert best.number not in [m["trial"] for m in report["members"]]
    reason = report["skipped"][0]["reason"]
    assert f"its validation predictions file {artifact} has SHA-256" in reason


def test_a_member_whose_code_changed_since_its_trial_is_skipped_naming_the_cause(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a layer class of the user's redefined since (a notebook cell run again): the
    # checkpoint loads, and its model computes something else than the trial's did.
    from hpo.ensemble import build as hpo_build

    config, study = open_study(study_copy, None, None)
    ranked = ranked_trials(study)
    best = ranked[0]
    loading = hpo_build.load_member

    def changed(candidate, store, folder):  # type: ignore[no-untyped-def]
        member = loading(candidate, store, folder)
        if candidate.trial.number == best.number:
            last = member.model.weights[-1]
            last.assign(last.numpy() + 1.0)
        return member

    monkeypatch.setattr(hpo_build, "load_member", changed)
    report = build_ensemble(
        config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "o"
    ).report
    assert best.number not in [m["trial"] for m in report["members"]]
    assert [m["trial"] for m in report["members"][:2]] == [ranked[1].number, ranked[2].number]
    assert [s["trial"] for s in report["skipped"]] == [best.number]
    reason = report["skipped"][0]["reason"]
    assert f"trial {best.number}'s model, loaded, no longer predicts what its trial" in reason
    assert "whose code changed since the trial trained" in reason


def _verified(
    shift: float,
    ran_on: str | None = None,
    stored: np.ndarray | None = None,
    task_name: str = "imdb",
) -> None:
    """verify_member on a one-unit sigmoid model whose trial stored its predictions (or
    `stored`) plus `shift`, trained on this machine or on the device `ran_on`, in a study of
    the task `task_name`."""
    from types import SimpleNamespace

    from hpo.ensemble.build import running_on, verify_member
    from hpo.ensemble.selection import Member

    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    predicted = model.predict(x, verbose=0)[:, 0]
    task = SimpleNamespace(
        name=task_name, predict=lambda model, x, bucketed: model.predict(x, verbose=0)
    )
    here = running_on()
    attrs = {Attr.BACKEND: here[0], Attr.DEVICE: ran_on or here[1]}
    trial = optuna.trial.create_trial(value=0.5, user_attrs=attrs)
    recorded = (predicted if stored is None else stored) + shift
    member = Member(trial, Path("m.keras"), recorded, model)
    verify_member(task, x, member, np.arange(0, 40, 2), here)  # type: ignore[arg-type]


def test_a_member_is_checked_within_what_its_trials_device_and_precision_allow() -> None:
    _verified(0.0)
    _verified(5e-5)  # rounding: within ten times float32's tolerance
    with pytest.raises(CheckpointError, match="no longer predicts what its trial recorded: on"):
        _verified(1e-3)
    # Trained on a GPU (TF32 products) and ensembled here: only a changed model's gap counts.
    _verified(1e-3, ran_on="gpu:NVIDIA H100 80GB HBM3")
    with pytest.raises(CheckpointError, match=r"its trial ran on \w+ gpu:NVIDIA H100"):
        _verified(0.2, ran_on="gpu:NVIDIA H100 80GB HBM3")
    # A model that no longer gives the trial's shape of predictions: skipped, not a crash.
    with pytest.raises(CheckpointError, match=r"no longer predicts as its trial did \(ValueError"):
        _verified(0.0, stored=np.zeros((40, 3)))


def test_a_changed_member_names_the_way_to_search_anew_in_a_sentence_of_its_own() -> None:
    """The cause ran into what follows it ("... search again in a new study The tuner gives
    the model as it loads now."), and told an hpo.Tuner user of a study, where they name a
    project_name or pass overwrite=True."""
    with pytest.raises(CheckpointError) as of_a_tuner:
        _verified(1e-3, task_name="arrays")
    assert str(of_a_tuner.value).endswith(
        "or search again under a new project_name (or with overwrite=True)."
    )
    with pytest.raises(CheckpointError) as of_a_study_file:
        _verified(1e-3)
    assert str(of_a_study_file.value).endswith("or search again under a new study name.")
    with pytest.raises(CheckpointError, match=r"\(ValueError.*overwrite=True\)\.$"):
        _verified(0.0, stored=np.zeros((40, 3)), task_name="arrays")


def test_stored_checkpoints_carry_no_optimizer_state(searched: Path, tmp_path: Path) -> None:
    import warnings
    import zipfile

    config, study = open_study(searched, None, None)
    trial = ranked_trials(study)[0]
    path = tmp_path / "member.keras"
    shutil.copy(config.artifact_dir / trial.user_attrs[Attr.CHECKPOINT_ID], path)
    with zipfile.ZipFile(path) as archive:
        assert not json.loads(archive.read("config.json")).get("compile_config")
        weights = archive.read("model.weights.h5")
    import io

    import h5py

    with h5py.File(io.BytesIO(weights), "r") as h5:
        assert "optimizer" not in h5
        assert "layers" in h5
    import hpo.models._masking  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.models.load_model(path, safe_mode=True)
    assert not [w for w in caught if "optimizer" in str(w.message)]


def test_predict_refuses_a_changed_export(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.ensemble import predict

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "e"
    report = build_ensemble(config, study, top=2, out_dir=out, calibrate=False).report
    assert not report["calibration"]["enabled"]
    assert report["calibration"]["temperature"] == 1.0
    assert "temperature" not in [layer.name for layer in load_keras_file(out / EXPORT_NAME).layers]
    assert predict.main(["--ensemble", str(out), "A wonderful film."]) == 0
    assert "A wonderful film." in capsys.readouterr().out
    with (out / "ensemble.keras").open("ab") as handle:
        handle.write(b"appended")
    assert predict.main(["--ensemble", str(out), "A wonderful film."]) == 2
    assert "not the" in capsys.readouterr().err


def test_refit_trains_each_weighted_member_on_training_and_validation_and_exports_those(
    study_copy: Path, tmp_path: Path, fake_imdb: Path
) -> None:
    config, study = open_study(study_copy, None, None)
    searched = build_ensemble(config, study, top=3, out_dir=tmp_path / "searched").report
    refit = build_ensemble(config, study, top=3, out_dir=tmp_path / "refit", refit=True).report

    # The choice is made on validation before any refit: the same members and weights.
    assert [(m["trial"], m["weight"]) for m in refit["members"]] == [
        (m["trial"], m["weight"]) for m in searched["members"]
    ]
    weighted = {m["trial"] for m in refit["members"] if m["weight"] > 0}
    refitted = refit["refit"]["members"]
    assert {m["trial"] for m in refitted} == weighted
    from hpo.tasks.imdb import read_split

    train, _, val, _, _ = read_split(config, fake_imdb)
    trials = {t.number: t for t in study.trials}
    for member in refitted:
        values = trials[member["trial"]].intermediate_values
        best = max(values.values())
        assert member["epochs"] == 1 + min(s for s, v in values.items() if v == best)
        assert member["examples"] == len(train) + len(val)
        assert member["seconds"] > 0
    # What the refit bought is reported against the ensemble as searched, which scores on the
    # test set exactly as the ensemble built without --refit.
    assert refit["refit"]["searched_test"]["accuracy"] == pytest.approx(
        searched["test"]["ensemble"]["accuracy"]
    )
    assert refit["refit"]["searched_test"]["log_loss"] == pytest.approx(
        searched["test"]["ensemble"]["log_loss"]
    )
    # Retrained models predict otherwise, and the export reproduces the refitted ones.
    assert refit["test"]["ensemble"]["log_loss"] != searched["test"]["ensemble"]["log_loss"]
    assert refit["export"]["max_abs_difference"] <= refit["export"]["max_tolerance"]


@pytest.mark.parametrize("retrain", ["refit", "cross-fit"])
def test_a_trial_whose_family_the_study_lacks_is_named_before_any_retraining(
    tmp_path: Path, retrain: str
) -> None:
    # A trial whose stored family was changed to "evil:build": "refitting trial 1 failed
    # (KeyError: 'evil:build')", from a trial's process started for nothing.
    from hpo.ensemble.refit import out_of_fold, refit_members

    config = StudyConfig(name="t", study_dir=tmp_path / "t")
    trial = optuna.trial.create_trial(
        value=0.5,
        params={"family": "evil:build"},
        distributions={"family": optuna.distributions.CategoricalDistribution(["evil:build"])},
        intermediate_values={0: 0.5},
    )
    trial.number = 1
    with pytest.raises(
        ConfigError,
        match=r"^trial 1 records model family 'evil:build', which study 't' does not have "
        r"\(its families: .*ngram.*\).*without --(refit|cross-fit 0)\.$",
    ):
        if retrain == "refit":
            refit_members(config, tmp_path, [trial], tmp_path)
        else:
            out_of_fold(config, tmp_path, [trial], 2)
    assert not (tmp_path / "t" / "logs").exists()  # no retraining started


def test_refit_of_a_trial_without_epochs_is_refused_with_the_way_out() -> None:
    from hpo.ensemble.refit import best_epoch
    from hpo.errors import ConfigError

    trial = optuna.trial.create_trial(value=0.5)
    with pytest.raises(ConfigError, match=r"reported no epoch.*without --refit"):
        best_epoch(trial)
    trial = optuna.trial.create_trial(value=0.5, intermediate_values={0: 0.6, 1: 0.7, 2: 0.7})
    assert best_epoch(trial) == 2
    # A minimized objective (validation loss): its lowest epoch.
    trial = optuna.trial.create_trial(value=0.3, intermediate_values={0: 0.4, 1: 0.3, 2: 0.35})
    assert best_epoch(trial, maximize=False) == 2


def test_the_summary_line_says_a_refitted_ensembles_gain_is_over_the_searched_best_member() -> None:
    # Refitted, the members also trained on the validation data; the best member they are
    # compared with is its trial's checkpoint: the line said only "over the best member".
    from hpo.ensemble.command import summary_line

    report = {
        "gain_over_best_member": {"accuracy": -0.0142, "log_loss": 0.0101},
        "test": {"ensemble": {"accuracy": 0.8446, "log_loss": 0.35}},
        "members": [{"weight": 0.7}, {"weight": 0.3}, {"weight": 0.0}],
        "kept": "pool",
        "test_examples": 1000,
    }
    assert summary_line(report) == (
        "Ensemble (pool, 2 members) on 1000 test examples: accuracy 0.8446 (-0.0142 against "
        "the best member), log-loss 0.3500 (+0.0101)."
    )
    refitted = summary_line({**report, "refit": {"members": []}})
    assert "(-0.0142 against the best member, as searched)" in refitted
