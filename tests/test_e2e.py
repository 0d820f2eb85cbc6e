"""End to end on a real subset: the smoke study, run the way a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hpo.contract import Attr, load_keras_file
from hpo.store import sha256_file

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
OPTUNA = str(Path(sys.executable).with_name("optuna"))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)


def test_smoke_study_end_to_end(real_imdb_subset: Path, tmp_path: Path) -> None:
    real_imdb = real_imdb_subset
    studies = tmp_path / "studies"
    studies.mkdir()
    study_file = studies / "imdb-smoke.toml"
    shutil.copy(ROOT / "studies" / "imdb-smoke.toml", study_file)
    # Three of the shipped study's four trials: three families' defaults (the fourth, nbsvm's,
    # waits; tests/models/test_nbsvm.py searches that family).
    search = (
        sys.executable,
        "-m",
        "hpo.search",
        "--study",
        str(study_file),
        "--data",
        str(real_imdb),
        "--n-trials",
        "3",
    )

    first = _run(*search, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "3 finished, 0 failed" in first.stdout

    url = f"sqlite:///{(studies / 'imdb-smoke' / 'study.db').resolve()}"
    listed = _run(
        OPTUNA, "trials", "--storage", url, "--study-name", "imdb-smoke", "-f", "json", cwd=ROOT
    )
    assert listed.returncode == 0, listed.stderr
    trials = json.loads(listed.stdout)
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    # The three family defaults come first; the median pruner may stop the third.
    assert {t["params"]["family"] for t in trials[:3]} == {"conv1d", "sepconv1d", "ngram"}
    assert {"conv1d", "sepconv1d"} <= {t["params"]["family"] for t in complete}
    artifacts = studies / "imdb-smoke" / "artifacts"
    for trial in complete:
        attrs = trial["user_attrs"]
        stored = artifacts / attrs[Attr.CHECKPOINT_ID]
        assert sha256_file(stored) == attrs[Attr.CHECKPOINT_SHA256]
        checkpoint = shutil.copy(stored, tmp_path / f"trial-{trial['number']}.keras")
        model = load_keras_file(checkpoint)
        assert model.count_params() == attrs["params_count"]
        assert 0.5 < attrs["val_accuracy"] <= 1
        assert attrs["epochs"] >= 1
        assert attrs[Attr.TRAIN_SECONDS] > 0
    before = {p.name: sha256_file(p) for p in artifacts.iterdir()}

    second = _run(*search, cwd=ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nothing to do" in second.stdout
    after = _run(
        OPTUNA, "trials", "--storage", url, "--study-name", "imdb-smoke", "-f", "json", cwd=ROOT
    )
    assert len(json.loads(after.stdout)) == len(trials)
    assert {p.name: sha256_file(p) for p in artifacts.iterdir()} == before

    out = tmp_path / "ensemble"
    ensemble = _run(
        sys.executable,
        "-m",
        "hpo.ensemble",
        "--top",
        "5",
        "--study",
        str(study_file),
        "--data",
        str(real_imdb),
        "--out",
        str(out),
        cwd=ROOT,
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    assert f"only {len(complete)} COMPLETE trials; using all of them" in ensemble.stderr
    assert "on 2000 test examples" in ensemble.stdout
    report = json.loads((out / "report.json").read_text())
    assert len(report["members"]) == len(complete)
    # The export was checked on reviews of both classes (the test files come sorted by class).
    assert report["export"]["checked_classes"] == 2
    assert report["export"]["checked_examples"] == 512
    assert 0.5 < report["test"]["ensemble"]["accuracy"] <= 1
    for name in ("members.csv", "ensemble.png", "ensemble.keras"):
        assert (out / name).stat().st_size > 0

    predicted = _run(
        sys.executable,
        "-m",
        "hpo.predict",
        "--ensemble",
        str(out),
        "A wonderful, moving film with superb acting.",
        "Dull, boring and far too long. Awful.",
        cwd=ROOT,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    lines = predicted.stdout.strip().splitlines()
    assert len(lines) == 2
    assert float(lines[0].split("\t")[0]) > float(lines[1].split("\t")[0])


def test_cifar10_smoke_study_ensemble_and_predict(
    real_cifar10_subset: Path, real_cifar10: Path, tmp_path: Path
) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    study_file = studies / "cifar10-smoke.toml"
    shutil.copy(ROOT / "studies" / "cifar10-smoke.toml", study_file)
    data = ("--data", str(real_cifar10_subset))

    # The shipped study, with a budget whose per-trial cap (an eighth) still leaves its trials
    # their 3 epochs when the test shares a loaded machine: 10 minutes cap them at 75 s, which
    # a CI machine running the suite's other searches beside it can spend on one epoch. Two of
    # its four trials: each family's defaults. (A third, sampled, cost 20-30 s of CPU on the
    # real images; the families' sampled values are built, at their space's corners too, in
    # tests/models/test_image_families.py.)
    search = _run(
        sys.executable,
        "-m",
        "hpo",
        "search",
        "--study",
        str(study_file),
        *data,
        "--budget",
        "30m",
        "--n-trials",
        "2",
        cwd=ROOT,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    assert "2 finished, 0 failed" in search.stdout

    out = tmp_path / "ensemble"
    ensemble = _run(
        sys.executable,
        "-m",
        "hpo",
        "ensemble",
        "--top",
        "2",
        "--study",
        str(study_file),
        "--out",
        str(out),
        cwd=ROOT,
    )
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    assert "on 1000 test examples" in ensemble.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["classes"][:3] == ["airplane", "automobile", "bird"]
    test = report["test"]["ensemble"]
    assert 0.2 < test["accuracy"] <= 1  # chance is 0.1
    assert test["top3_accuracy"] > test["accuracy"]
    assert len(test["per_class_accuracy"]) == 10
    assert report["export"]["checked_classes"] == 10

    # A real test image, as a user would pass it.
    with tarfile.open(real_cifar10) as archive:
        member = archive.getmember("cifar10/test/ship/0001.jpg")
        image = tmp_path / "ship.jpg"
        image.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    predicted = _run(
        sys.executable,
        "-m",
        "hpo.predict",
        "--ensemble",
        str(out),
        str(image),
        str(notes),
        cwd=ROOT,
    )
    # The image prints its top class; the text file is an error of its own (exit code 1).
    assert predicted.returncode == 1, predicted.stderr[-2000:]
    label, probability, name = predicted.stdout.strip().split("\t")
    assert label in report["classes"] and 0.1 < float(probability) <= 1 and name == str(image)
    assert f"{notes}: not an image file" in predicted.stderr
