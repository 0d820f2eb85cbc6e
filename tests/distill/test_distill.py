"""`hpo distill` on the tiny study's ensemble: the student is trained on the ensemble's soft
labels, tested once, and its report and export hold real, reproducible numbers."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import shutil
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

import hpo
from hpo import metrics
from hpo.command_options import open_study
from hpo.config import load_study_config
from hpo.contract import load_keras_file
from hpo.distill import DISTILLED_DIR, main
from hpo.distill.build import (
    LATENCY_EXAMPLES,
    LATENCY_REPEATS,
    MAX_LATENCY,
    choose_student,
    distill_ensemble,
    read_ensemble_report,
)
from hpo.distill.command import latency_share
from hpo.distill.report import _goal, format_table
from hpo.distill.student import StudentJob, StudentResult, start_from, train_student
from hpo.distill.teacher import SoftLabels, TeacherMember
from hpo.ensemble import build_ensemble
from hpo.ensemble.predict import main as predict_main
from hpo.ensemble.refit import FoldJob, _retrained, fold_rows, predict_held_out
from hpo.ensemble.selection import ranked_trials
from hpo.errors import ConfigError
from hpo.study import search_space
from hpo.tasks.imdb import IMDB

from ..conftest import _NEGATIVE, _POSITIVE, copy_study_folder, shared_once

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import keras
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig


@pytest.fixture(scope="session")
def distilled(
    searched: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict[str, object]]:
    """A copy of the tiny study, its top-3 ensemble, and `hpo distill` run on it once per test
    run (across pytest-xdist processes): read-only, as `searched` is."""

    def distil(folder: Path) -> Path:
        copy_study_folder(searched.parent, folder / "study")
        study_file = folder / "study" / searched.name
        config, study = open_study(study_file, None, None)
        build_ensemble(config, study, top=3, out_dir=folder / "ensemble")
        args = ["--ensemble", str(folder / "ensemble"), "--study", str(study_file)]
        assert main([*args, "--latency-examples", "120", "--repeats", "2"]) == 0
        return folder

    folder = shared_once(tmp_path_factory, "distilled", distil)
    ensemble = folder / "ensemble"
    report = json.loads((ensemble / DISTILLED_DIR / "report.json").read_text())
    return folder / "study" / searched.name, ensemble, report


def test_distill_reports_the_student_beside_the_ensemble_and_its_best_member(
    distilled: tuple[Path, Path, dict[str, object]],
) -> None:
    study_file, ensemble, report = distilled
    recorded = json.loads((ensemble / "report.json").read_text())
    config = load_study_config(study_file)
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    test = IMDB.load_test(config, None, folder)

    # The soft labels are the ensemble's: their validation scores are the ones it recorded.
    assert report["validation"]["ensemble"] == pytest.approx(
        recorded["validation"]["ensemble"], abs=1e-4
    )
    assert 0.5 < report["soft_labels"]["mean_top_probability"] < 1.0
    # The ensemble and its best member score on test what `hpo ensemble` measured, the best
    # member recomputed here from its own checkpoint.
    for name in ("ensemble", "best_member"):
        assert report["test"][name] == pytest.approx(recorded["test"][name], abs=1e-5)
    assert report["best_member"]["trial"] == recorded["members"][0]["trial"]
    assert report["test_examples"] == len(test.y)
    assert report["test_data"]["sha256"] == recorded["test_data"]["sha256"]
    # It names the ensemble it learned: when it was built, and its export.
    assert report["teacher"]["created"] == recorded["created"]
    assert report["teacher"]["sha256"] == recorded["export"]["sha256"]

    # By default the student is the fastest member's family, with the parameters of its best
    # member by validation among those within a third of the ensemble's latency (the sum).
    members = report["teacher"]["members"]
    assert {m["trial"] for m in members} == {
        m["trial"] for m in recorded["members"] if m["weight"] > 0
    }
    family = min(members, key=lambda m: m["ms_per_1000"])["family"]
    budget = MAX_LATENCY * sum(m["ms_per_1000"] for m in members) * (1 + 1e-9)
    fitting = {m["trial"] for m in members if m["family"] == family and m["ms_per_1000"] <= budget}
    _, study = open_study(study_file, None, None)
    student = report["student"]
    assert student["max_latency"] == pytest.approx(1 / 3, abs=1e-6)
    if fitting:
        chosen = next(t.number for t in ranked_trials(study) if t.number in fitting)
    else:
        chosen = min((m for m in members if m["family"] == family), key=lambda m: m["ms_per_1000"])[
            "trial"
        ]
        assert "none is within 33.3%" in student["chosen"]
    assert student["chosen"].startswith(f"trial {chosen}, ")
    params = next(m["params"] for m in recorded["members"] if m["trial"] == chosen)
    assert student["params"] == params
    assert 1 <= student["best_epoch"] <= student["epochs"] <= config.training.max_epochs

    # The exported student loads, takes raw text and reproduces the report's test scores.
    exported = load_keras_file(ensemble / DISTILLED_DIR / "ensemble.keras")
    p = metrics.as_probabilities(exported.predict(test.raw, verbose=0))
    assert metrics.accuracy(test.y, p) == pytest.approx(report["test"]["student"]["accuracy"])
    assert metrics.log_loss(test.y, p) == pytest.approx(
        report["test"]["student"]["log_loss"], abs=1e-5
    )
    saved = np.load(ensemble / DISTILLED_DIR / "test_predictions.npy")
    assert np.max(np.abs(saved - p)) <= report["export"]["max_tolerance"]
    # It follows the ensemble it was taught by.
    ensemble_p = np.load(ensemble / "test_predictions.npy")
    agreement = report["agreement_with_ensemble"]["student"]
    assert agreement["same_class"] == pytest.approx(
        np.mean((p > 0.5) == (ensemble_p > 0.5)), abs=1e-6
    )
    assert agreement["correlation"] > 0.8

    # All three were timed, and the goal's arithmetic follows from the table.
    latency = report["latency"]["ms_per_1000"]
    assert set(latency) == {"student", "ensemble", "best_member"}
    assert all(v > 0 for v in latency.values())
    goal = report["goal"]
    assert goal["latency_ratio"] == pytest.approx(latency["student"] / latency["ensemble"], 1e-3)
    gain = report["test"]["ensemble"]["accuracy"] - report["test"]["best_member"]["accuracy"]
    if gain > 0:
        kept = report["test"]["student"]["accuracy"] - report["test"]["best_member"]["accuracy"]
        assert goal["gain_kept_accuracy"] == pytest.approx(kept / gain, abs=1e-4)
    else:
        assert goal["gain_kept_accuracy"] is None
        assert goal["met"] is None


@pytest.mark.parametrize(
    ("ensemble", "kept", "met"),
    [
        ((0.90, 0.30), (0.5, 0.5), True),
        ((0.80, 0.30), (None, 0.5), None),
        ((0.85, 0.40), (None, None), None),
    ],
)
def test_a_share_of_the_gain_is_given_only_where_the_ensemble_gains(
    ensemble: tuple[float, float], kept: tuple[float | None, float | None], met: bool | None
) -> None:
    # An ensemble below its best member has no gain to keep: a share of its loss read as one.
    test = {
        "best_member": {"accuracy": 0.85, "log_loss": 0.40},
        "ensemble": dict(zip(("accuracy", "log_loss"), ensemble, strict=True)),
        "student": {"accuracy": 0.875, "log_loss": 0.35},
    }
    goal = _goal(test, {"student": 1.0, "ensemble": 4.0, "best_member": 1.0})
    assert (goal["gain_kept_accuracy"], goal["gain_kept_log_loss"]) == kept
    assert goal["met"] is met


def test_a_best_single_model_the_ensemble_weighs_0_is_not_called_its_member(
    distilled: tuple[Path, Path, dict[str, object]],
) -> None:
    # The gain is measured over the pool's best trial by validation; the ensemble may weigh it 0.
    report = distilled[2]
    best = report["best_member"]["trial"]  # type: ignore[index]
    members = report["teacher"]["members"]  # type: ignore[index]
    others = [m for m in members if m["trial"] != best]
    weighted = {**report, "teacher": {**report["teacher"], "members": [*others, {"trial": best}]}}  # type: ignore[dict-item]
    assert f"best member (trial {best})" in format_table(weighted)
    unweighted = {**report, "teacher": {**report["teacher"], "members": others}}  # type: ignore[dict-item]
    table = format_table(unweighted)
    assert f"best single model (trial {best}, weight 0: not in the ensemble)" in table
    assert f"best member (trial {best})" not in table
    count = len(others)
    assert f"ensemble ({count} member{'s' if count != 1 else ''})" in table


def test_the_distilled_export_serves_with_hpo_predict(
    distilled: tuple[Path, Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, ensemble, _ = distilled
    positive, negative = " ".join(_POSITIVE), " ".join(_NEGATIVE)
    assert predict_main(["--ensemble", str(ensemble / DISTILLED_DIR), positive, negative]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["positive", "negative"]


def test_the_student_learns_the_targets_it_is_given_not_the_labels(
    distilled: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    # Soft labels that contradict the true ones: a student trained on them, not on the labels,
    # ranks the validation reviews the wrong way round.
    study_file, _, report = distilled
    config = load_study_config(study_file)
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    params = dict(report["student"]["params"])
    data = IMDB.trial_data(folder, params)
    targets = tmp_path / "targets.npy"
    np.save(targets, np.where(data.y_train == 1, 0.1, 0.9).astype(np.float32))
    job = StudentJob(config, folder, params, targets, tmp_path, max_epochs=2)
    result = train_student(job)
    student = load_keras_file(result.path)
    p = metrics.as_probabilities(IMDB.predict(student, data.x_val, bucketed=result.bucketed))
    assert metrics.roc_auc(data.y_val, p) < 0.5
    # Training accuracy is against the class each target leans to (not 0 for never equalling
    # a soft target): the student learned the flipped targets.
    assert result.history["accuracy"][-1] > 0.6
    assert result.history["val_accuracy"][result.best_epoch - 1] == max(
        result.history["val_accuracy"]
    )


@pytest.mark.slow
def test_the_test_set_is_read_only_after_the_student_is_trained(
    distilled: tuple[Path, Path, dict[str, object]],
    fake_imdb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # On a copy of the data without its test reviews, the student still trains (on another
    # family, named by --family); only the final evaluation then fails for want of them.
    study_file, ensemble, _ = distilled
    train_only = tmp_path / "train-only" / "aclImdb"
    shutil.copytree(fake_imdb / "train", train_only / "train")
    code = main(
        [
            *("--ensemble", str(ensemble), "--study", str(study_file)),
            *("--family", "sepconv1d", "--data", str(train_only), "--out", str(tmp_path / "o")),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert "Student: sepconv1d" in out
    assert "Student trained:" in out
    assert err.startswith("error: ") and "no test reviews" in err
    assert not (tmp_path / "o").exists()


def test_bad_input_is_named_with_exit_code_2(
    distilled: tuple[Path, Path, dict[str, object]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    study_file, ensemble, _ = distilled
    study = ["--study", str(study_file)]
    assert main(["--ensemble", str(tmp_path / "none"), *study]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "hpo ensemble --top 5" in err
    assert main(["--ensemble", str(ensemble), *study, "--family", "resnet"]) == 2
    err = capsys.readouterr().err
    assert "'resnet' is not a family of study 'tiny'" in err and "conv1d, sepconv1d" in err
    assert "Traceback" not in err
    # --out naming the ensemble it reads: the ensemble was replaced by the student.
    files = sorted(p.name for p in ensemble.iterdir())
    assert main(["--ensemble", str(ensemble), *study, "--out", str(ensemble)]) == 2
    err = capsys.readouterr().err
    assert "holds an ensemble, and this distilled student would replace it whole" in err
    assert sorted(p.name for p in ensemble.iterdir()) == files
    # A refitted ensemble (make ensemble's) is refused with the command that makes one to distil.
    refitted = tmp_path / "refitted"
    shutil.copytree(ensemble, refitted, ignore=shutil.ignore_patterns(DISTILLED_DIR))
    report = json.loads((refitted / "report.json").read_text())
    (refitted / "report.json").write_text(json.dumps({**report, "refit": {"members": []}}))
    assert main(["--ensemble", str(refitted), *study]) == 2
    err = capsys.readouterr().err
    assert "was refitted on training + validation data" in err
    assert f"--out {refitted}-searched (no --refit)" in err and "Traceback" not in err
    # A damaged ensemble folder (its report or test predictions written by something else):
    # named, before the student trains where it can be.
    damaged = tmp_path / "damaged"
    shutil.copytree(ensemble, damaged, ignore=shutil.ignore_patterns(DISTILLED_DIR))
    members = [{**report["members"][0], "trial": "abc"}, *report["members"][1:]]
    (damaged / "report.json").write_text(json.dumps({**report, "members": members}))
    assert main(["--ensemble", str(damaged), *study]) == 2
    assert "is not a report of hpo ensemble" in capsys.readouterr().err
    (damaged / "report.json").write_text(json.dumps(report))
    (damaged / "test_predictions.npy").unlink()
    assert main(["--ensemble", str(damaged), *study]) == 2
    err = capsys.readouterr().err
    assert "test_predictions.npy is missing" in err and "hpo ensemble" in err
    # Truncated, it was found by np.load after the student had trained (a traceback); it is
    # refused by its checksum before any work, as a file of other values is.
    evaluated = (ensemble / "test_predictions.npy").read_bytes()
    for changed in (evaluated[:-100], b"\x80\x04garbage" * 50):
        (damaged / "test_predictions.npy").write_bytes(changed)
        assert main(["--ensemble", str(damaged), *study, "--max-epochs", "1"]) == 2
        printed = capsys.readouterr()
        assert "test_predictions.npy has checksum" in printed.err
        assert "rebuild the ensemble with hpo ensemble" in printed.err
        assert "Traceback" not in printed.err and "Soft labels" not in printed.out
    # A report from before the checksum was recorded: the file is still read safely.
    (damaged / "report.json").write_text(
        json.dumps({k: v for k, v in report.items() if k != "test_predictions"})
    )
    np.save(damaged / "test_predictions.npy", np.full(report["test_examples"], np.nan))
    assert main(["--ensemble", str(damaged), *study, "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "not finite predictions for its" in err and "Traceback" not in err


def _distil_while(
    study_file: Path, ensemble: Path, meanwhile: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> int:
    """`hpo distill` (short) on `ensemble`, calling `meanwhile` as its student starts training;
    its exit code."""
    from hpo.distill import build as distill_build

    train = distill_build._train

    def train_after(job: StudentJob, config: StudyConfig) -> StudentResult:
        meanwhile()
        return train(job, config)

    monkeypatch.setattr(distill_build, "_train", train_after)
    options = ["--max-epochs", "1", "--latency-examples", "50", "--repeats", "1"]
    return main(["--ensemble", str(ensemble), "--study", str(study_file), *options])


def test_an_ensemble_rebuilt_while_it_is_distilled_waits_and_keeps_its_student(
    study_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `hpo distill` took no lock: an `hpo ensemble` rebuilding its ensemble meanwhile and the
    # distillation both exited 0, and the student lay beside an ensemble it did not learn.
    import threading
    import time

    from hpo.ensemble import build as ensemble_build

    config, study = open_study(study_copy, None, None)
    ensemble = tmp_path / "ensemble"
    taught = build_ensemble(config, study, top=2, out_dir=ensemble).report
    lock, at_lock, rebuilt = ensemble_build.folder_lock, threading.Event(), []

    def lock_noted(folder: Path) -> contextlib.AbstractContextManager[None]:
        at_lock.set()
        return lock(folder)

    def rebuild() -> None:
        try:
            build_ensemble(config, study, top=2, out_dir=ensemble)
            rebuilt.append("replaced the ensemble")
        except ConfigError as exc:
            rebuilt.append(str(exc))

    rebuilding = threading.Thread(target=rebuild)

    def rebuild_meanwhile() -> None:
        rebuilding.start()
        assert at_lock.wait(300)  # its ensemble built, to be published
        time.sleep(0.5)

    monkeypatch.setattr(ensemble_build, "folder_lock", lock_noted)
    assert _distil_while(study_copy, ensemble, rebuild_meanwhile, monkeypatch) == 0
    rebuilding.join(60)
    assert (
        f"waiting for another hpo command to finish writing {ensemble}" in capsys.readouterr().err
    )
    # The rebuild waited for the student, then found it in the folder it would have replaced.
    assert len(rebuilt) == 1 and "in distilled/, a student hpo distill made of it" in rebuilt[0]
    now = json.loads((ensemble / "report.json").read_text())
    student = json.loads((ensemble / DISTILLED_DIR / "report.json").read_text())
    assert now["created"] == student["teacher"]["created"] == taught["created"]
    assert student["teacher"]["sha256"] == taught["export"]["sha256"]


def test_a_student_is_not_written_beside_an_ensemble_replaced_unseen_by_the_lock(
    study_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Another machine's `hpo ensemble` on a file system without locks: nothing waits, and the
    # student is checked against the ensemble in the folder before it is published.
    from hpo.distill import build as distill_build

    config, study = open_study(study_copy, None, None)
    ensemble = tmp_path / "ensemble"
    taught = build_ensemble(config, study, top=2, out_dir=ensemble).report
    monkeypatch.setattr(distill_build, "folder_lock", lambda _folder: contextlib.nullcontext())

    def replace() -> None:
        rebuilt = {**taught, "created": "2030-01-01T00:00:00+00:00"}
        (ensemble / "report.json").write_text(json.dumps(rebuilt))

    assert _distil_while(study_copy, ensemble, replace, monkeypatch) == 2
    said = capsys.readouterr().err
    assert f"the ensemble in {ensemble} was replaced while its student was distilled" in said
    assert f"built {taught['created']}, and the folder now holds one built 2030-01-01" in said
    assert not (ensemble / DISTILLED_DIR).exists()
    assert [p.name for p in ensemble.iterdir() if p.name.startswith(".")] == []


def test_a_tuner_s_exported_ensemble_is_named_as_one_hpo_distill_can_not_read(
    tmp_path: Path,
) -> None:
    # Tuner.ensemble().export(path) writes ensemble.keras alone; hpo distill said "Build one
    # first: hpo ensemble --top 5", as if there were no ensemble there.
    from hpo.ensemble import EXPORT_NAME

    (tmp_path / EXPORT_NAME).write_bytes(b"PK")
    with pytest.raises(ConfigError, match=r"alone, as Tuner.ensemble\(\).export\(path\)"):
        read_ensemble_report(tmp_path)
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a report of hpo ensemble"):
        read_ensemble_report(tmp_path)


def test_folds_cut_the_training_rows_once_each_the_same_way_for_a_seed() -> None:
    folds = fold_rows(11, 3, seed=0)
    assert [len(f) for f in folds] == [4, 4, 3]
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(11))
    assert all(np.all(np.diff(f) > 0) for f in folds)
    again = fold_rows(11, 3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    assert not np.array_equal(fold_rows(11, 3, seed=1)[0], folds[0])
    with pytest.raises(ConfigError, match="needs 2 to 11 folds, got 1"):
        fold_rows(11, 1, seed=0)


def test_a_fold_model_learns_without_its_rows_and_predicts_them(searched: Path) -> None:
    config, study = open_study(searched, None, None)
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    trial = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value or 0)
    data = IMDB.trial_data(folder, trial.params)
    held_out = fold_rows(len(data.y_train), 3, config.sampler.seed)[1]
    with _retrained(config, folder, trial, 1, held_out) as fit:
        assert fit.examples == len(data.y_train) - len(held_out)
        np.testing.assert_array_equal(fit.held_out, data.x_train[held_out])
    with _retrained(config, folder, trial, 1, None) as fit:  # --refit's: train + validation
        assert fit.examples == len(data.y_train) + len(data.y_val)
        assert len(fit.held_out) == 0
    p = predict_held_out(FoldJob(config, folder, trial, 1, held_out))
    assert p.shape == (len(held_out),) and np.all((p >= 0) & (p <= 1))


def _distil_again(
    distilled: tuple[Path, Path, dict[str, object]], out: Path, *options: str
) -> dict:
    """`hpo distill` on the `distilled` fixture's ensemble again, with `options`, into `out`
    (a short latency step): its report."""
    study_file, ensemble, _ = distilled
    args = ["--ensemble", str(ensemble), "--study", str(study_file), "--out", str(out)]
    assert main([*args, *options, "--latency-examples", "60", "--repeats", "1"]) == 0
    return json.loads((out / "report.json").read_text())


def test_cross_fitted_soft_labels_replace_the_fitted_ones_on_training_rows_only(
    distilled: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    fitted = distilled[2]
    report = _distil_again(
        distilled, tmp_path / "crossfit", "--cross-fit", "2", "--label-weight", "0.5"
    )
    soft = report["soft_labels"]
    assert soft["cross_fit_folds"] == 2 and soft["cross_fit_seconds"] > 0
    assert soft["label_weight"] == 0.5
    assert fitted["soft_labels"]["cross_fit_folds"] == 0  # the default
    assert fitted["soft_labels"]["label_weight"] == 0
    assert soft["train_examples"] == fitted["soft_labels"]["train_examples"]
    # Other labels for the training rows: no member saw the row it labels.
    assert soft["mean_top_probability"] != fitted["soft_labels"]["mean_top_probability"]
    # The validation labels are still the ensemble's, which its report recorded.
    assert report["validation"]["ensemble"] == fitted["validation"]["ensemble"]
    assert report["test"]["ensemble"] == fitted["test"]["ensemble"]


def test_the_student_is_its_familys_best_member_by_validation_within_the_latency_share() -> None:
    study = optuna.create_study(direction="maximize")
    values = {0: 0.90, 1: 0.91, 2: 0.93, 3: 0.80, 4: 0.95}
    families = {0: "conv1d", 1: "conv1d", 2: "conv1d", 3: "ngram", 4: "sepconv1d"}
    for number, value in values.items():
        study.add_trial(
            optuna.trial.create_trial(
                params={"family": families[number], "units": number},
                distributions={
                    "family": CategoricalDistribution(["conv1d", "ngram", "sepconv1d"]),
                    "units": IntDistribution(0, 4),
                },
                value=value,
            )
        )
    members = [TeacherMember(t, None, 0.25) for t in study.trials[:4]]  # type: ignore[arg-type]

    def choose(
        latency: dict[int, float], family: str | None = None, share: float = 1 / 3
    ) -> tuple[int | None, str]:
        params, chosen, trial = choose_student(None, None, study, members, latency, family, share)  # type: ignore[arg-type]
        assert trial is not None and trial.params == params
        return params["units"], chosen

    # The members take 1,000 ms in all; a third is 333. Trial 0 is the fastest, so conv1d is
    # the family; of its members within 333 ms, trial 1 is the best by validation (2 is better
    # but slower than that).
    assert choose({0: 100.0, 1: 300.0, 2: 400.0, 3: 200.0}) == (
        1,
        "trial 1, the best by validation of the 2 conv1d members (the fastest member's "
        "family) within 33.3% of the ensemble's latency (its members' sum)",
    )
    # A wider share takes trial 2; a narrower one leaves only the fastest.
    assert choose({0: 100.0, 1: 300.0, 2: 400.0, 3: 200.0}, share=0.5)[0] == 2
    assert choose({0: 100.0, 1: 300.0, 2: 400.0, 3: 200.0}, share=0.15) == (
        0,
        "trial 0, the only conv1d member (the fastest member's family) within 15% of the "
        "ensemble's latency (its members' sum)",
    )
    # The fastest member is ngram's, trial 3: the only one of its family.
    assert choose({0: 300.0, 1: 300.0, 2: 300.0, 3: 100.0})[0] == 3
    # A family none of whose members is within the share (380 ms): its fastest member.
    assert choose({0: 500.0, 1: 600.0, 2: 700.0, 3: 100.0}, "conv1d", 0.2) == (
        0,
        "trial 0, the fastest conv1d member; none is within 20% of the ensemble's latency "
        "(its members' sum)",
    )
    # A family with no member: its best trial in the study.
    assert choose({0: 100.0, 1: 100.0, 2: 100.0, 3: 100.0}, "sepconv1d") == (
        4,
        "trial 4, the best sepconv1d trial",
    )


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        *(("max_latency", v) for v in (0, -0.5, math.inf, math.nan, True, "1/3", None)),
        *(("augment", v) for v in (-1, 1.5, True, "2")),
        *(("cross_fit", v) for v in (1, -2, 2.0)),
        *(("label_weight", v) for v in (-0.2, 1.5, math.nan, "0.5")),
        *(("max_epochs", v) for v in (0, -3, 2.5)),
        *(("latency_examples", v) for v in (0, -5)),
        *(("repeats", v) for v in (0, False)),
    ],
)
def test_an_argument_out_of_its_range_is_refused_before_any_work(
    tmp_path: Path, argument: str, value: object
) -> None:
    # Named as Python and the command spell it; before the (missing) ensemble is looked for.
    flag = "--" + argument.replace("_", "-")
    match = rf"^{argument} \({flag}\) takes .*, not .*; use {argument}=\S+ \({flag} \S+\), say"
    with pytest.raises(ConfigError, match=match):
        hpo.distill(tmp_path / "nowhere", **{argument: value})
    with pytest.raises(ConfigError, match=match):
        distill_ensemble(None, None, tmp_path / "nowhere", **{argument: value})  # type: ignore[arg-type]


def test_hpo_distill_is_the_command_from_python_with_the_same_defaults() -> None:
    parameters = inspect.signature(hpo.distill).parameters
    assert parameters["max_latency"].default == MAX_LATENCY
    assert parameters["latency_examples"].default == LATENCY_EXAMPLES
    assert parameters["repeats"].default == LATENCY_REPEATS
    assert "distill" in hpo.__all__ and hpo.distill.__signature__ == inspect.signature(
        hpo.api.distill
    )


@pytest.mark.parametrize("share", [Fraction(1, 3), np.float32(0.5), 2])
def test_a_max_latency_of_any_positive_real_type_is_taken(tmp_path: Path, share: object) -> None:
    # It gets past the check to the next one: the folder has no ensemble.
    with pytest.raises(ConfigError) as refused:
        distill_ensemble(None, None, tmp_path / "nowhere", max_latency=share)  # type: ignore[arg-type]
    assert "positive share" not in str(refused.value)
    assert "nowhere: no such folder" in str(refused.value)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "1e400", "1/0"])
def test_the_max_latency_flag_takes_a_positive_share(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"--max-latency 1/3"):
        latency_share(value)
    assert latency_share("1/3") == pytest.approx(1 / 3)
    assert latency_share("0.5") == 0.5


def test_label_weight_mixes_the_true_labels_into_the_targets() -> None:
    binary = SoftLabels(train=np.array([0.8, 0.3, 0.6]), val=np.zeros(1), temperature=None)
    y = np.array([1, 0, 0])
    np.testing.assert_allclose(binary.targets(y), binary.train, rtol=1e-6)  # weight 0: soft labels
    half = dataclasses.replace(binary, label_weight=0.5).targets(y)
    np.testing.assert_allclose(half, [0.9, 0.15, 0.3])
    np.testing.assert_allclose(dataclasses.replace(binary, label_weight=1.0).targets(y), y)
    three = SoftLabels(
        train=np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]), val=np.zeros(1), temperature=None
    )
    mixed = dataclasses.replace(three, label_weight=0.25).targets(np.array([1, 2]))
    np.testing.assert_allclose(mixed, [[0.45, 0.475, 0.075], [0.15, 0.15, 0.7]])
    np.testing.assert_allclose(mixed.sum(axis=1), 1)


def test_augmented_rows_follow_the_training_rows_in_the_targets() -> None:
    soft = SoftLabels(
        train=np.array([0.8, 0.3]),
        val=np.zeros(1),
        temperature=None,
        label_weight=0.5,
        augmented=np.array([0.7, 0.2, 0.6, 0.4]),
    )
    # The label weight mixes the true labels into the training rows only: an altered copy's
    # target is the ensemble's alone.
    np.testing.assert_allclose(soft.targets(np.array([1, 0])), [0.9, 0.15, 0.7, 0.2, 0.6, 0.4])


def test_validation_targets_of_a_refit_are_mixed_as_the_training_rows_are() -> None:
    soft = SoftLabels(
        train=np.array([0.8]),
        val=np.array([0.6, 0.1]),
        temperature=None,
        augmented=np.array([0.7]),
    )
    np.testing.assert_allclose(soft.val_targets(np.array([1, 0])), [0.6, 0.1], rtol=1e-6)
    mixed = dataclasses.replace(soft, label_weight=0.5).val_targets(np.array([1, 0]))
    np.testing.assert_allclose(mixed, [0.8, 0.05])  # no altered copies: validation rows alone


def test_augmented_copies_are_labelled_by_the_ensemble_and_learned_by_a_refitted_student(
    distilled: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    # One run for both options, which cost a student's training each.
    fitted = distilled[2]
    out = tmp_path / "augmented"
    report = _distil_again(distilled, out, "--augment", "2", "--refit")
    soft = report["soft_labels"]
    assert soft["augment_copies"] == 2
    assert 0.5 < soft["augmented_agree_with_labels"] <= 1.0
    assert fitted["soft_labels"]["augment_copies"] == 0  # the default
    assert fitted["soft_labels"]["augmented_agree_with_labels"] is None
    # The training rows' labels and the validation and test scores of the ensemble are the
    # same as without the copies.
    assert soft["agree_with_labels"] == fitted["soft_labels"]["agree_with_labels"]
    assert report["validation"]["ensemble"] == fitted["validation"]["ensemble"]
    assert report["test"]["ensemble"] == fitted["test"]["ensemble"]

    # --refit: the student trained again for the early-stopped one's best epoch count, at the
    # rates those epochs had, on the training rows, their copies and the validation rows.
    student, refit = report["student"], report["student"]["refit"]
    assert fitted["student"]["refit"] is None  # the default
    assert refit["epochs"] == student["best_epoch"] >= 1
    assert refit["learning_rates"] == student["history"]["learning_rate"][: refit["epochs"]]
    assert refit["examples"] == soft["train_examples"] * 3 + report["val_examples"]
    assert refit["seconds"] > 0
    # The refitted student is the one tested and exported: the early-stopped one, which the
    # validation scores are of, is another model, scored on the same test set beside it.
    early = refit["early_stopped_test"]
    assert early.keys() == report["test"]["student"].keys()
    assert early != report["test"]["student"]
    exported = load_keras_file(out / "ensemble.keras")
    config = load_study_config(distilled[0])
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    test = IMDB.load_test(config, None, folder)
    p = metrics.as_probabilities(exported.predict(test.raw, verbose=0))
    assert metrics.log_loss(test.y, p) == pytest.approx(
        report["test"]["student"]["log_loss"], abs=1e-5
    )
    table = format_table(report)
    assert f"student ({student['family']}, refitted)" in table
    assert f"the student scored test accuracy {early['accuracy']:.4f}" in table


def test_a_student_given_targets_for_other_rows_than_its_inputs_is_refused(
    distilled: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    study_file, _, report = distilled
    config = load_study_config(study_file)
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    params = dict(report["student"]["params"])
    rows = len(IMDB.trial_data(folder, params).y_train)
    targets = tmp_path / "targets.npy"
    np.save(targets, np.full(rows * 2, 0.5, dtype=np.float32))  # rows for one copy
    job = StudentJob(config, folder, params, targets, tmp_path, max_epochs=1, augment=2)
    with pytest.raises(ValueError, match=f"{rows * 2} soft labels for {rows * 3} training"):
        train_student(job)


LABEL_WEIGHT = "--label-weight takes a number from 0 (soft labels only) to 1"
CROSS_FIT = "--cross-fit takes 0 (off) or a number of folds of 2 or more"
AUGMENT = "--augment takes a number of altered copies, 0 (off) or more"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        *(("--label-weight", v, LABEL_WEIGHT) for v in ("-0.1", "1.5", "half", "nan")),
        *(("--cross-fit", v, CROSS_FIT) for v in ("1", "-2", "two")),
        *(("--augment", v, AUGMENT) for v in ("-1", "two", "1.5")),
    ],
)
def test_a_bad_flag_value_exits_2_saying_what_it_takes(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--ensemble", "e", flag, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


WIDE_HYPERMODEL = """
import keras
from keras import layers


def build(hp):
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(hp.get("vocab_size"), hp.Int("width", 4, 32, step=28), mask_zero=True)(
        inputs
    )
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    rate = hp.Float("lr", 1e-3, 1e-2, sampling="log")
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="binary_crossentropy")
    return model
"""


def test_a_hypermodel_student_is_built_from_its_trials_values_not_its_defaults(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # The student of a [families] hypermodel was built at its defaults (width 4, lr 0.001),
    # while the report named the chosen trial's values (width 32, lr 0.005).
    from hpo.tasks import study_task

    from ..conftest import write_study

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "wide_hm.py").write_text(WIDE_HYPERMODEL)
    path = write_study(folder, fake_imdb, families='["wide"]')
    path.write_text(path.read_text() + '\n[families]\nwide = "wide_hm:build"\n')
    config = load_study_config(path)
    task = study_task(config)
    data_folder = task.prepare(config, None, search_space(task, config.space).shared)
    params = {
        "family": "wide",
        "vocab_size": 10000,
        "seq_len": 200,
        "width": 32,
        "lr": 0.005,
    }
    y_train = task.trial_data(data_folder, params).y_train
    targets = tmp_path / "targets.npy"
    np.save(targets, np.where(y_train == 1, 0.9, 0.1).astype(np.float32))
    widths = {}
    for sampled in (True, False):
        work = tmp_path / f"sampled-{sampled}"
        work.mkdir()
        job = StudentJob(config, data_folder, params, targets, work, max_epochs=1, sampled=sampled)
        result = train_student(job)
        embedding = load_keras_file(result.path).get_layer(index=1)
        widths[sampled] = (embedding.output_dim, result.history["learning_rate"][0])
    assert widths[True] == (32, pytest.approx(0.005))
    assert widths[False] == (4, pytest.approx(0.001))  # a family's defaults: no trial's values


def test_a_warm_started_student_begins_at_its_trials_best_epoch_learning_rate(
    distilled: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    # From Python, as a notebook distils: `hpo.distill`, which the command calls too.
    study_file, ensemble, scratch_report = distilled
    lines: list[str] = []
    result = hpo.distill(
        ensemble,
        study_file,
        warm_start=True,
        out_dir=tmp_path / "warm",
        latency_examples=60,
        repeats=1,
        progress=lines.append,
    )
    assert result.out_dir == tmp_path / "warm"
    report = json.loads((result.out_dir / "report.json").read_text())
    assert result.report == report
    assert any(line.startswith("Warm start: the student begins as trial") for line in lines)
    student = report["student"]
    assert scratch_report["student"]["warm_start"] is None  # the default: from scratch
    _, study = open_study(study_file, None, None)
    trial = next(t for t in study.trials if t.number == student["warm_start"]["trial"])
    assert student["chosen"].startswith(f"trial {trial.number}, ")
    assert student["chosen"].endswith("starting from its weights at its best epoch")
    assert student["params"] == trial.params
    # The rate its best epoch had (which a plateau may have cut), as the student's first epoch.
    rate = trial.user_attrs["metrics"]["learning_rate"]
    assert student["warm_start"]["learning_rate"] == pytest.approx(rate)
    assert student["history"]["learning_rate"][0] == pytest.approx(rate)
    assert f"student ({student['family']}, from trial {trial.number})" in format_table(report)


@pytest.mark.parametrize("source", ["member", "checkpoint"])
def test_a_warm_started_student_is_the_trial_it_starts_from_when_its_rate_is_negligible(
    source: str,
    distilled: tuple[Path, Path, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpo.distill import build

    study_file, ensemble, _ = distilled
    _, study = open_study(study_file, None, None)
    if source == "checkpoint":
        # A trial the ensemble does not hold: its weights come from its checkpoint.
        recorded = {m["trial"] for m in read_ensemble_report(ensemble)["members"]}
        outside = next(t for t in study.trials if t.number not in recorded)

        monkeypatch.setattr(build, "choose_student", _choosing(outside))
    monkeypatch.setattr(build, "best_epoch_rate", lambda trial: 1e-12)
    report = _distil_again(distilled, tmp_path / "warm", "--warm-start", "--max-epochs", "1")
    student = report["student"]
    trial = next(t for t in study.trials if t.number == student["warm_start"]["trial"])
    if source == "checkpoint":
        assert trial.number == outside.number
    assert student["warm_start"]["learning_rate"] == pytest.approx(1e-12)
    # One epoch at a rate of 1e-12 leaves the weights as the trial's best epoch left them (a
    # validation loss no model at chance, as one from scratch starts, would have).
    assert student["history"]["val_accuracy"] == [trial.user_attrs["val_accuracy"]]
    assert student["history"]["val_loss"][0] == pytest.approx(trial.user_attrs["val_loss"])
    assert abs(trial.user_attrs["val_loss"] - np.log(2)) > 0.01


def _dense(seed: int, units: int = 3) -> keras.Model:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(units)(inputs)))


def test_a_student_starts_from_the_weights_of_the_model_under_a_members_probabilities(
    tmp_path: Path,
) -> None:
    from hpo.training.interface import Output, member_model

    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    trained = _dense(1)
    # A member of a model with logits: hpo put a sigmoid on top, which the student has not.
    member = member_model(trained, Output(units=1, from_logits=True), x)
    member.save(tmp_path / "member.keras")
    student = _dense(2)
    assert not np.allclose(student.predict(x, verbose=0), trained.predict(x, verbose=0))
    start_from(student, tmp_path / "member.keras")
    np.testing.assert_allclose(student.predict(x, verbose=0), trained.predict(x, verbose=0))

    with pytest.raises(ConfigError, match=r"--warm-start: the model in .* other shapes"):
        start_from(_dense(3, units=5), tmp_path / "member.keras")


def test_a_warm_start_with_no_trial_to_start_from_is_refused(
    distilled: tuple[Path, Path, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hpo.distill import build

    def defaults(*args: object) -> tuple[dict[str, object], str, None]:
        return {"family": "sepconv1d"}, "the sepconv1d family's defaults", None

    def hours(*args: object) -> None:
        raise AssertionError("the refusal comes before the folds are trained")

    monkeypatch.setattr(build, "choose_student", defaults)
    monkeypatch.setattr(build, "cross_fitted", hours)
    study_file, ensemble, _ = distilled
    out = tmp_path / "warm"
    argv = ["--ensemble", str(ensemble), "--study", str(study_file), "--out", str(out)]
    assert main([*argv, "--warm-start", "--cross-fit", "2"]) == 2
    assert "warm_start (--warm-start): the student's family, sepconv1d, has no completed" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_a_warm_start_from_a_checkpoint_hpo_gc_removed_names_the_trial_and_the_fix(
    searched: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hpo.artifacts import collect_garbage
    from hpo.distill import build
    from hpo.store import open_artifact_store

    copy_study_folder(searched.parent, tmp_path / "study")
    study_file = tmp_path / "study" / searched.name
    config, study = open_study(study_file, None, None)
    ensemble = tmp_path / "ensemble"
    build_ensemble(config, study, top=2, out_dir=ensemble)
    kept = {m["trial"] for m in read_ensemble_report(ensemble)["members"]}
    removed = collect_garbage(study, open_artifact_store(config.artifact_location), keep=1).removed
    outside = next(t for t in study.trials if t.number in removed)
    assert outside.number not in kept

    monkeypatch.setattr(build, "choose_student", _choosing(outside))
    out = tmp_path / "warm"
    argv = ["--ensemble", str(ensemble), "--study", str(study_file), "--out", str(out)]
    assert main([*argv, "--warm-start"]) == 2
    err = capsys.readouterr().err
    assert f"trial {outside.number}, which the student would start from (--warm-start), " in err
    assert "has no checkpoint: hpo gc removed it" in err and "Leave --warm-start out" in err
    assert not out.exists()


def _choosing(trial: FrozenTrial) -> Callable[..., tuple[dict[str, object], str, FrozenTrial]]:
    """A stand-in for `choose_student` that takes `trial`'s parameters, whoever it is."""

    def choose(*args: object) -> tuple[dict[str, object], str, FrozenTrial]:
        return dict(trial.params), f"trial {trial.number}", trial

    return choose
