from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import keras
import numpy as np
import optuna
import pytest

from hpo._cli import open_study
from hpo.checkpoints import CheckpointError, refuse_unsafe_layers
from hpo.config import StudyConfig, load_study_config
from hpo.ensemble import build_ensemble, main, ranked_trials
from hpo.errors import DataError
from hpo.search import run_search
from hpo.store import open_storage
from hpo.study import search_space
from hpo.tasks.imdb import IMDB
from hpo.weighting import Method

from .conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path


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
    vals = [m["val"]["accuracy"] for m in report["members"]]
    assert len(vals) == 3
    ranked = ranked_trials(study)
    assert [m["trial"] for m in report["members"]] == [t.number for t in ranked[:3]]

    # The ensemble's test predictions are the weighted average of its members' predictions.
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    test = IMDB.load_test(config, None, folder)
    member_predictions = []
    for member in report["members"]:
        trial = study.trials[member["trial"]]
        path = tmp_path / f"m{member['trial']}.keras"
        shutil.copy(config.artifact_dir / trial.user_attrs["checkpoint_artifact_id"], path)
        model = keras.models.load_model(path, safe_mode=True)
        x = IMDB.member_inputs(test.x, trial.params)
        member_predictions.append(model.predict(x, verbose=0).reshape(-1))
    saved = np.load(out / "test_predictions.npy")
    np.testing.assert_allclose(saved, weights @ np.stack(member_predictions), atol=1e-5)
    assert report["test"]["ensemble"]["accuracy"] == pytest.approx(
        np.mean((saved > 0.5) == test.y), abs=1e-6
    )

    # The exported model, from raw text, reproduces them.
    exported = keras.models.load_model(out / "ensemble.keras", safe_mode=True)
    np.testing.assert_allclose(exported.predict(test.raw, verbose=0).reshape(-1), saved, atol=1e-5)
    assert report["export"]["max_abs_difference"] < 1e-4

    from optuna_dashboard import get_note

    reloaded = optuna.load_study(
        study_name=config.name, storage=open_storage(config.storage_url, create=False)
    )
    recorded = reloaded.user_attrs["ensemble_top3"]
    assert recorded["members"] == [m["trial"] for m in report["members"]]
    assert recorded["test_accuracy"] == report["test"]["ensemble"]["accuracy"]
    assert "Ensemble of the top 3" in get_note(reloaded)
    assert any(
        a.filename == "report.json" for a in optuna.artifacts.get_all_artifact_meta(reloaded)
    )


def test_ensemble_is_reproducible(study_copy: Path, tmp_path: Path) -> None:
    config, study = open_study(study_copy, None, None)
    first = build_ensemble(config, study, top=2, out_dir=tmp_path / "a").report
    second = build_ensemble(config, study, top=2, out_dir=tmp_path / "a").report
    assert [m["weight"] for m in first["members"]] == [m["weight"] for m in second["members"]]
    assert first["test"] == second["test"]


def test_a_corrupt_checkpoint_is_skipped_and_the_next_best_takes_its_place(
    study_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, study = open_study(study_copy, None, None)
    ranked = ranked_trials(study)
    best = ranked[0]
    artifact = config.artifact_dir / best.user_attrs["checkpoint_artifact_id"]
    artifact.write_bytes(artifact.read_bytes()[:1000])
    report = build_ensemble(
        config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "o"
    ).report
    assert [m["trial"] for m in report["members"]] == [ranked[1].number, ranked[2].number]
    assert report["skipped"][0]["trial"] == best.number
    assert "checksum" in report["skipped"][0]["reason"]
    assert f"skipping trial {best.number}" in caplog.text


def test_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(CheckpointError, match="Lambda layer"):
        refuse_unsafe_layers(path, 7)


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
    assert "only 4 COMPLETE trials; using all of them" in caplog.text
    assert "ensemble (caruana)" in captured.out
    assert len(json.loads((out / "report.json").read_text())["members"]) == 4


def test_predict_scores_new_text(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.predict import main as predict_main

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "e"
    build_ensemble(config, study, top=2, out_dir=out)
    assert (
        predict_main(["--ensemble", str(out), "great wonderful superb film", "awful terrible dull"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    probabilities = [float(line.split("\t")[0]) for line in lines]
    assert all(0 <= p <= 1 for p in probabilities)
    assert lines[0].split("\t")[1] in {"positive", "negative"}
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great movie\n\nawful movie\n")
    assert predict_main(["--ensemble", str(out), "--file", str(reviews)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
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
