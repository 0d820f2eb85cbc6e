"""Benchmark scripts that have a smoke mode: run as a user runs them, on synthetic data."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo.config import load_study_config
from hpo.tasks.imdb import read_split

from .conftest import write_study

ROOT = Path(__file__).resolve().parents[1]
# Where `make test` installs scikit-learn for bench_nbsvm.py, outside the environment (Makefile).
BENCH_PACKAGES = Path(sys.prefix) / "bench-packages"


def _scikit_learn() -> list[Path]:
    """The folders bench_nbsvm.py needs on its path for scikit-learn: none where the
    environment has it (pip install -e '.[bench]'), else `make test`'s BENCH_PACKAGES."""
    if importlib.util.find_spec("sklearn") is not None:
        return []
    if (BENCH_PACKAGES / "sklearn").is_dir():
        return [BENCH_PACKAGES]
    message = f"scikit-learn is not installed; make test installs it in {BENCH_PACKAGES}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run(
    script: str, *args: str | Path, cwd: Path, path: list[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a benchmark script as a user runs it, with `path` before the project on its
    import path; it must succeed."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*(path or []), ROOT]))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def _family_bench(
    script: str, fake_imdb: Path, tmp_path: Path, family: str, epochs: int, *args: str
) -> tuple[Any, str]:
    """Runs a bench of one family's default model on the whole fake IMDB with `args` and
    `--json`; returns what it wrote there and what it printed."""
    study = write_study(tmp_path, fake_imdb, name="bench")
    out = tmp_path / "runs.json"
    result = _run(
        script,
        *("--study", study, "--train-size", "0", "--epochs", str(epochs), "--families", family),
        *(*args, "--json", out),
        cwd=tmp_path,
    )
    return json.loads(out.read_text()), result.stdout


def _fake_report(folder: Path) -> dict[str, object]:
    ensemble = {"accuracy": 0.91, "roc_auc": 0.97, "log_loss": 0.23, "ece": 0.014}
    best = {"accuracy": 0.89, "roc_auc": 0.95, "log_loss": 0.29, "ece": 0.04}
    report = {
        "top": 5,
        "method": "caruana",
        "test_examples": 240,
        "val_examples": 60,
        "members": [{"trial": 11, "family": "conv1d"}],
        "validation": {"ensemble": {"accuracy": 0.9}, "best_member": {"accuracy": 0.88}},
        "test": {"ensemble": ensemble, "best_member": best},
    }
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    return report


def test_nbsvm_smoke_learns_the_study_split_and_shows_the_ensemble(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path, fake_imdb, name="nb")
    report = _fake_report(tmp_path / "ensembles" / "nb-top5")
    out = tmp_path / "rows.json"
    result = _run(
        "bench_nbsvm.py",
        *("--smoke", "--refit", "--study", study, "--json", out),
        cwd=tmp_path,
        path=_scikit_learn(),
    )
    nbsvm, refit, ensemble, best = json.loads(out.read_text())

    train_texts, _, val_texts, _, _ = read_split(load_study_config(study), fake_imdb)
    assert nbsvm["train_examples"] == len(train_texts)
    assert refit["train_examples"] == len(train_texts) + len(val_texts)
    for row in (nbsvm, refit):
        # Three sentiment words among 24 neutral ones: a linear model separates them.
        assert row["accuracy"] >= 0.9
        assert row["log_loss"] < math.log(2)
        assert 0 <= row["ece"] < 0.2
        assert row["fit_s"] > 0 and row["fit_cpu_s"] > 0
    assert nbsvm["val_acc"] >= 0.9
    assert ensemble["accuracy"] == report["test"]["ensemble"]["accuracy"]  # type: ignore[index]
    assert best["log_loss"] == report["test"]["best_member"]["log_loss"]  # type: ignore[index]
    assert "best single: trial 11 (conv1d)" in result.stdout
    assert "NBSVM-bi, training + validation" in result.stdout


def test_headline_report_reads_the_stored_study_and_marks_a_leg_not_run(
    searched: Path, tmp_path: Path
) -> None:
    import optuna

    config = load_study_config(searched)
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    result = _run("bench_headline.py", "--study", searched, "--legs", "report", cwd=tmp_path)
    # hpo's column from the study store; KerasTuner never ran; no ensemble was built.
    assert "| | hpo (Optuna) | KerasTuner Hyperband |" in result.stdout
    assert "| budget | none | not run |" in result.stdout
    assert f"| trials complete | {len(study.trials)} | not run |" in result.stdout
    assert f"| best validation accuracy | {study.best_value:.4f} | not run |" in result.stdout
    assert "| ensemble top-5: test acc / logloss / ECE | - | not run |" in result.stdout


def test_refit_trains_each_weighted_member_on_training_and_validation_for_its_best_epochs(
    searched: Path, fake_imdb: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    result = _run("bench_refit.py", "--study", searched, "--top", "3", "--json", out, cwd=tmp_path)
    rows = json.loads(out.read_text())
    original, refit = rows["original"], rows["refit"]

    train_texts, _, val_texts, _, _ = read_split(load_study_config(searched), fake_imdb)
    assert original["train_examples"] == len(train_texts)
    assert refit["train_examples"] == len(train_texts) + len(val_texts)
    config = load_study_config(searched)
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    assert 1 <= len(refit["members"]) <= 3
    for number, member in refit["members"].items():
        values = study.trials[int(number)].intermediate_values
        best = max(values.values())
        # The epoch the trial's checkpoint holds: its first best validation accuracy.
        assert member["epochs"] == 1 + min(s for s, v in values.items() if v == best)
        assert member["seconds"] > 0
    for row in (original, refit):
        for scores in (row["ensemble"], row["best_member"]):
            # Three sentiment words among neutral ones: learnable well past chance.
            assert scores["accuracy"] > 0.6
            assert 0 <= scores["ece"] <= 1
    assert "refit on training + validation" in result.stdout


def test_allocator_arms_train_the_same_model_side_by_side_and_report_both(
    fake_imdb: Path, tmp_path: Path
) -> None:
    arms, stdout = _family_bench("bench_allocator.py", fake_imdb, tmp_path, "conv1d", 2)
    glibc, hpo = arms["glibc"]["conv1d"], arms["hpo"]["conv1d"]
    assert len(glibc["times"]) == len(hpo["times"]) == 2
    assert all(arm["cpu_user"] > 0 and arm["minor_faults"] > 0 for arm in (glibc, hpo))
    # The allocator changes where memory comes from, not the arithmetic.
    assert glibc["val_accuracy"] == hpo["val_accuracy"]
    assert "conv1d     epoch" in stdout and "kernel" in stdout


def test_step_state_arms_train_the_same_model_and_the_built_one_traces_its_step_once(
    fake_imdb: Path, tmp_path: Path
) -> None:
    runs, stdout = _family_bench(
        "bench_step_state.py", fake_imdb, tmp_path, "conv1d", 1, "--repeats", "1"
    )
    runs = runs["conv1d"]
    [keras_run], [hpo_run] = runs["keras"], runs["hpo"]
    assert (keras_run["train_traces"], hpo_run["train_traces"]) == (2, 1)
    # Built first or by Keras, the state is the same: so are the weights and their accuracy.
    assert keras_run["val_accuracy"] == hpo_run["val_accuracy"]
    assert "conv1d     first epoch" in stdout and "CPU" in stdout


def test_backends_trains_each_backend_and_counts_jaxs_traces_of_its_two_argument_step(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # JAX's training step takes (state, data); the bench's trace counter once took one
    # argument, and every JAX run failed (the GPU check's dry run found it).
    runs, stdout = _family_bench(
        "bench_backends.py", fake_imdb, tmp_path, "ngram", 2, "--backends", "jax"
    )
    run = runs["ngram/jax"]
    assert "error" not in run, run
    assert run["backend"] == "jax" and len(run["times"]) == 2 and run["train_traces"] >= 1
    assert "ngram      jax         steady" in stdout


def test_startup_arms_report_what_each_loaded_and_their_ratios(tmp_path: Path) -> None:
    # json imports _json if it can and runs without it: an optional module as Keras's are.
    out = tmp_path / "runs.json"
    result = _run(
        "bench_startup.py",
        *("--modules", "json", "--hide", "_json", "--path", f"empty={tmp_path}"),
        *("--repeats", "2", "--json", out),
        cwd=tmp_path,
    )
    runs = json.loads(out.read_text())
    assert list(runs) == ["installed", "without:_json", "with:empty"]
    assert all(len(rows) == 2 and all(r["cpu"] > 0 for r in rows) for rows in runs.values())
    assert runs["installed"][0]["loaded"] == {"_json": "loaded"}
    assert runs["without:_json"][0]["loaded"] == {}
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert lines["installed"].split()[3] == "1.00x"
    assert lines["without:_json"].endswith("none of them")


def test_backend_preload_arms_load_tensorflow_in_the_jax_fork_server_only_with_hpos(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs.json"
    result = _run(
        "bench_backend_preload.py", "--children", "1", "--repeats", "1", "--json", out, cwd=tmp_path
    )
    runs = json.loads(out.read_text())
    # Each child: [wall seconds, whether TensorFlow was loaded before its first Keras call].
    assert [[p for _, p in run] for run in runs["bare"]] == [[False]]
    assert [[p for _, p in run] for run in runs["hpo"]] == [[True]]
    assert all(s > 0 for arm in runs.values() for run in arm for s, _ in run)
    assert "hpo / bare:" in result.stdout


def test_nb_counts_arms_compute_the_same_ratios_in_this_tree_and_a_commits(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path, fake_imdb, name="counts")
    out = tmp_path / "runs.json"
    result = _run(
        "bench_nb_counts.py",
        *("--study", study, "--baseline", "HEAD", "--repeats", "1", "--json", out),
        cwd=tmp_path,
    )
    runs = json.loads(out.read_text())
    assert list(runs) == ["baseline", "hpo"]
    [[baseline], [hpo]] = runs.values()
    assert baseline["digest"] == hpo["digest"] and hpo["rows"] == baseline["rows"] > 0
    assert hpo["seconds"] > 0
    assert "hpo / baseline: " in result.stdout and "(same ratios)" in result.stdout


def test_inspect_arms_time_this_tree_against_a_commits_worktree(tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    result = _run(
        "bench_inspect.py",
        "--trials",
        "12",
        "--top",
        "5",
        "--baseline",
        "HEAD",
        "--json",
        out,
        cwd=tmp_path,
    )
    runs = json.loads(out.read_text())
    assert list(runs) == ["baseline", "hpo"]
    assert all(r["rows"] == 5 and r["status"] > 0 and r["report"] > 0 for r in runs["hpo"])
    assert "hpo / baseline: status" in result.stdout
    # The worktree is gone again.
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert "bench-inspect-" not in worktrees.stdout
