from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import optuna
import pytest
from optuna.artifacts import download_artifact
from optuna.trial import TrialState

from hpo.config import load_study_config
from hpo.contract import Attr, load_keras_file
from hpo.search import main, run_search
from hpo.store import open_artifact_store, open_storage, sha256_file

from ..conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path

    from hpo.config import StudyConfig


def _study(storage_url: str, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=open_storage(storage_url, create=False, heartbeat=False)
    )


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_search_runs_resumes_and_extends(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(write_study(tmp_path, fake_imdb, n_trials=3))
    summary = run_search(config, progress=False)
    assert summary.finished == 3
    assert summary.failed == 0
    study = _study(config.storage_url, config.name)
    assert study.metric_names == ["val_accuracy"]  # the dashboard names the objective
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert {t.params["family"] for t in trials[:2]} == {"conv1d", "sepconv1d"}
    assert trials[0].user_attrs["seeded"] == "family default"
    store = open_artifact_store(config.artifact_dir)
    for trial in trials:
        path = tmp_path / f"check-{trial.number}.keras"
        download_artifact(
            artifact_store=store,
            file_path=str(path),
            artifact_id=trial.user_attrs[Attr.CHECKPOINT_ID],
        )
        assert sha256_file(path) == trial.user_attrs[Attr.CHECKPOINT_SHA256]
        assert load_keras_file(path).count_params() == trial.user_attrs["params_count"]
    out = capsys.readouterr().out
    assert "trial    0 conv1d     COMPLETE val_acc=" in out
    assert not (config.study_dir / "trials").exists() or not any(
        (config.study_dir / "trials").iterdir()
    )

    before = _files(config.artifact_dir)
    again = run_search(config, progress=False)
    assert again.finished == 3
    assert len(_study(config.storage_url, config.name).trials) == 3
    assert _files(config.artifact_dir) == before
    out = capsys.readouterr().out
    assert "nothing to do. Raise n_trials to run more: hpo search --n-trials N (from Python" in out
    assert "hpo.Tuner's max_trials=N" in out  # not a flag to a notebook's user only

    more = run_search(config.with_overrides(n_trials=4), progress=False)
    assert more.finished == 4
    trials = _study(config.storage_url, config.name).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(_files(config.artifact_dir)[k] == v for k, v in before.items())

    # A worker joining a study whose last trial another worker (on another machine) is
    # running: it ran one more, n_trials + 1 finished.
    elsewhere = _study(config.storage_url, config.name).ask()
    elsewhere.set_user_attr(Attr.WORKER, "another-machine:123")
    capsys.readouterr()
    joined = run_search(config.with_overrides(n_trials=5), progress=False)
    assert joined.finished == 4
    assert len(_study(config.storage_url, config.name).trials) == 5
    out = capsys.readouterr().out
    assert "holds 4 finished trials and 1 that other workers are running (n_trials=5)" in out


def test_cli_reports_bad_input_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--study", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--study", "studies/imdb.toml", "--n-trials", "0"])
    assert exc.value.code == 2
    assert "--n-trials: must be a whole number >= 1, got '0'." in capsys.readouterr().err


def test_cli_reports_missing_data_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = write_study(tmp_path, tmp_path / "no-such-data")
    assert main(["--study", str(study)]) == 2
    err = capsys.readouterr().err
    assert "no-such-data" in err
    assert "HPO_IMDB_PATH" in err


def test_a_run_beside_another_with_other_settings_is_refused_and_a_stopped_one_binds_nothing(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of a new study started together (one on TensorFlow, one on JAX) both passed
    the check, made before either had recorded its settings, and trained trials into one
    study. Now the first records its settings before preparing the data and both check again
    after: the run whose settings are not the study's stops before any trial."""
    import dataclasses

    from hpo.config import config_to_dict
    from hpo.data import provenance
    from hpo.errors import ConfigError

    config = load_study_config(write_study(tmp_path, fake_imdb, n_trials=1))
    other = dataclasses.replace(config, training=dataclasses.replace(config.training, max_epochs=7))
    record = provenance.record

    def beside(study: optuna.Study, *args: Any, **kwargs: Any) -> None:
        record(study, *args, **kwargs)
        study.set_user_attr("hpo_config", config_to_dict(other))  # the other run's, meanwhile

    monkeypatch.setattr(provenance, "record", beside)
    with pytest.raises(ConfigError, match=r"settings differ .*training\.max_epochs: 7 -> 2"):
        run_search(config, progress=False)
    study = _study(config.storage_url, config.name)
    assert all(t.state == TrialState.WAITING for t in study.get_trials())
    # No trial has run, so nothing binds the study to the other run's settings: this one's are.
    monkeypatch.setattr(provenance, "record", record)
    assert run_search(config, progress=False).finished == 1
    recorded = _study(config.storage_url, config.name).user_attrs["hpo_config"]
    assert recorded["training"]["max_epochs"] == config.training.max_epochs


def test_a_run_beside_one_preparing_the_study_checks_its_settings_instead_of_taking_them(
    fake_imdb: Path, tmp_path: Path
) -> None:
    """A run started while another of this machine prepared the study (its data, its default
    models: no trial started yet) found no started trial, wrote its settings over the other's,
    and both trained into the study with their own. It checks them against the live run's."""
    import dataclasses

    from hpo.config import config_to_dict
    from hpo.errors import ConfigError
    from hpo.search.turns import RUN_LOCK_NAME, SearchRun, lock_file, searched_here

    config = load_study_config(write_study(tmp_path, fake_imdb, n_trials=1))
    other = dataclasses.replace(config, training=dataclasses.replace(config.training, max_epochs=7))
    storage = open_storage(config.storage_url, create=True)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    study.set_user_attr("hpo_config", config_to_dict(other))  # the live run's
    run_lock = lock_file(config.storage_url, config.study_dir, RUN_LOCK_NAME)
    with SearchRun(run_lock) as alone:  # the other run, preparing
        assert alone and searched_here(run_lock)
        with pytest.raises(ConfigError, match=r"settings differ .*training\.max_epochs: 7 -> 2"):
            run_search(config, progress=False)
    assert not searched_here(run_lock)
    assert _study(config.storage_url, config.name).user_attrs["hpo_config"] == config_to_dict(other)
    # Once it is gone, with no trial started, this run's settings are the study's.
    assert run_search(config, progress=False).finished == 1


def test_space_drift_is_refused_before_any_trial_and_range_changes_are_noted(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, fake_imdb, n_trials=2)
    run_search(load_study_config(path), progress=False)
    original = path.read_text()

    path.write_text(
        original.replace("batch_size = [32]", "batch_size = [64]").replace(
            "n_trials = 2", "n_trials = 3"
        )
    )
    assert main(["--study", str(path)]) == 2
    err = capsys.readouterr().err
    assert "parameter 'batch_size'" in err
    assert "Use a new study name" in err and "batch_size = [32] under [space]" in err
    config = load_study_config(path)
    unchanged = _study(config.storage_url, config.name)
    assert len(unchanged.trials) == 2
    assert unchanged.user_attrs["hpo_config"]["space"]["batch_size"] == [32]

    path.write_text(
        original.replace("learning_rate = [0.003, 0.01]", "learning_rate = [0.004, 0.01]")
    )
    assert main(["--study", str(path), "--n-trials", "3"]) == 0
    assert "note: parameter 'learning_rate' changed" in capsys.readouterr().out
    assert len(_study(config.storage_url, config.name).trials) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--storage", "not a url"], "storage URL 'not a url' is malformed"),
        (
            ["--storage", "mysql://user@localhost/db"],
            "needs a database driver that is not installed",
        ),
        (["--storage", "sqlite://"], "names no SQLite file"),
        (["--timeout", "-3"], None),
        (["--workers", "two"], None),
    ],
)
def test_bad_flags_stop_before_any_work_with_exit_code_2(
    fake_imdb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str | None,
) -> None:
    path = write_study(tmp_path, fake_imdb)
    if message is None:
        with pytest.raises(SystemExit) as exc:
            main(["--study", str(path), *flags])
        assert exc.value.code == 2
        assert f"argument {flags[0]}" in capsys.readouterr().err
    else:
        assert main(["--study", str(path), *flags]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "tiny" / "study.db").exists()
    assert not (tmp_path / "tiny" / "logs").exists()


def test_unwritable_study_folder_is_a_clear_error(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, fake_imdb)
    (tmp_path / "tiny").write_text("a file where the study folder should be")
    assert main(["--study", str(path)]) == 2
    err = capsys.readouterr().err
    assert "the study folder" in err
    assert "is not writable" in err


def test_a_trial_line_names_the_objective_unless_it_shows_anyway() -> None:
    from hpo.search.progress import describe_trial

    def trial(value: float, **attrs: Any) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(
            value=value,
            params={"family": "net"},
            distributions={"family": optuna.distributions.CategoricalDistribution(["net"])},
            user_attrs={"val_loss": 0.25, **attrs},
        )

    classifier = trial(0.9, val_accuracy=0.9)
    assert "val_acc=0.9000 val_log_loss=0.2500" in describe_trial(classifier, "val_accuracy")
    assert "val_auc=0.9500 val_acc=" in describe_trial(trial(0.95, val_accuracy=0.9), "val_auc")
    # Soft targets ranked by the accuracy Keras logs: hpo measures none, so the line names it.
    soft = trial(0.16, labels="targets")
    assert describe_trial(soft, "val_accuracy").endswith("val_accuracy=0.1600 val_mse=0.2500")
    # Ranked by Keras's val_loss (of a model compiled with an MAE): the value under that name,
    # hpo's own loss beside it under its own; the line showed hpo's as val_loss, not the value.
    mae = trial(0.8478, val_loss=1.2839, labels="targets")
    assert "COMPLETE val_loss=0.8478 val_mse=1.2839" in describe_trial(mae, "val_loss")
    assert describe_trial(trial(0.25, labels="targets"), "val_mse").count("val_mse=") == 1


def _run_objective(trial: optuna.Trial, config: StudyConfig, folder: Path) -> None:
    """Runs one trial as a worker does, on one thread and without a deadline."""
    from hpo.search import workers
    from hpo.search.turns import StartTurn
    from hpo.study import search_space
    from hpo.tasks import study_task

    task = study_task(config)
    workers._objective(
        trial,
        turn=StartTurn(config.study_dir / "turn.lock", config.n_trials),
        config=config,
        task=task,
        space=search_space(task, config.space),
        data_folder=folder,
        threads=1,
        deadline=None,
    )


def test_a_trial_stopped_as_it_starts_fails_with_the_reason(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM or Ctrl-C that lands while a trial samples its parameters (right after the last
    trial ended) fails it with the same reason as one stopped mid-training."""
    from hpo.search import workers

    config = load_study_config(write_study(tmp_path, fake_imdb))

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "sample_params", interrupted)
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(KeyboardInterrupt):
        _run_objective(trial, config, tmp_path)
    assert study.trials[0].user_attrs[Attr.FAIL_REASON] == workers.INTERRUPTED
    # Stopped before it had parameters: nothing to queue again.
    assert len(study.trials) == 1


def test_the_sigterm_that_follows_ctrl_c_into_a_helper_does_not_cut_its_record_off(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C with --workers 2: a helper stops on the SIGINT, and the search's process sends it
    SIGTERM as well, which landed while it queued its trial again and recorded why: the trial
    ended FAIL without its reason, and not queued again (its family default never trained)."""
    from hpo.search import recovery, workers

    config = load_study_config(write_study(tmp_path, fake_imdb))
    study = optuna.create_study()
    trial = study.ask()
    monkeypatch.setattr(workers, "sample_params", lambda t, *_: t.suggest_int("units", 1, 2))

    def stopped(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the SIGINT of Ctrl-C, in the trial

    monkeypatch.setattr(workers, "call_isolated", stopped)
    requeue = workers.requeue

    def sigterm_meanwhile(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # the search's process, to its helpers
        return requeue(*args, **kwargs)

    monkeypatch.setattr(workers, "requeue", sigterm_meanwhile)
    before = signal.getsignal(signal.SIGTERM)
    recovery.raise_keyboard_interrupt_on_sigterm()  # as in a helper
    try:
        with pytest.raises(KeyboardInterrupt):
            _run_objective(trial, config, tmp_path)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert study.trials[0].user_attrs[Attr.FAIL_REASON] == workers.INTERRUPTED
    assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]  # queued again


def test_an_error_of_the_worker_itself_is_the_trials_fail_reason(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised in the worker, not in the trial's process (an OverflowError while
    stating a limit), was reported as "unknown error"."""
    from hpo.search import workers

    config = load_study_config(write_study(tmp_path, fake_imdb))

    def overflows(*_: object) -> None:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(workers, "trial_limit", overflows)
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(OverflowError):
        _run_objective(trial, config, tmp_path)
    reason = study.trials[0].user_attrs[Attr.FAIL_REASON]
    assert reason == "OverflowError: cannot convert float infinity to integer"


def test_a_trial_stopped_while_it_trains_leaves_no_scratch_folder(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C during a trial: its process, ended as it unwound, left trials/00000/ (39 MB of
    # checkpoints) for good; its retry runs under a new number.
    from hpo.search import workers
    from hpo.training.runner import scratch_folder

    config = load_study_config(write_study(tmp_path, fake_imdb))
    study = optuna.create_study()
    trial = study.ask()
    work = scratch_folder(config, trial.number)

    def training(*_: object, **__: object) -> None:
        work.mkdir(parents=True)
        (work / "training.keras").write_bytes(bytes(1000))
        raise KeyboardInterrupt  # the trial's process ended, its folder still there

    monkeypatch.setattr(workers, "sample_params", lambda t, *_: t.suggest_int("units", 1, 2))
    monkeypatch.setattr(workers, "call_isolated", training)
    with pytest.raises(KeyboardInterrupt):
        _run_objective(trial, config, tmp_path)
    assert study.trials[0].user_attrs[Attr.FAIL_REASON] == workers.INTERRUPTED
    assert not work.exists()


def test_the_next_search_removes_the_scratch_folder_a_killed_trial_left(study_copy: Path) -> None:
    from hpo.training.runner import scratch_folder

    config = load_study_config(study_copy)
    left = scratch_folder(config, 1)  # trial 1 is COMPLETE: its process was killed after
    left.mkdir(parents=True)
    (left / "best.keras").write_bytes(bytes(1000))
    assert run_search(config, progress=False).finished == 4  # nothing to do
    assert not left.exists()


def test_a_search_whose_logs_folder_cannot_be_written_says_so_before_preparing(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # "the child process exited with exit code 1 before reporting a result, while starting
    # (before writing lg2/logs/prepare.log)": the reason, only with --verbose.
    from hpo.errors import ConfigError

    config = load_study_config(write_study(tmp_path, fake_imdb))
    logs = config.study_dir / "logs"
    logs.parent.mkdir(parents=True)
    logs.write_text("")
    with pytest.raises(ConfigError, match=f"the log folder {logs} cannot be written"):
        run_search(config, progress=False)
    assert not (config.study_dir / "cache").exists()  # nothing was prepared


def test_a_study_file_searched_in_another_store_is_inspected_from_that_store(
    study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `hpo search --study F --storage URL` ended with "Inspect: hpo status --study F", which
    # looks for the study beside F ("no study database"); it is read from the store by name.
    from hpo.search.command import main

    config = load_study_config(study_copy)
    assert main(["--study", str(study_copy), "--storage", config.storage_url]) == 0
    out = capsys.readouterr().out
    assert f"Inspect: hpo status --storage {config.storage_url} --study-name tiny" in out


def test_a_worker_joining_by_storage_reads_the_recorded_data_source_not_the_study_files_path(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first machine's study file said data.path = "../data", relative to where it ran: a
    # worker joining from another folder without --data stopped on "the study file's data.path
    # points at ../data", though it has no study file and the study recorded its data source.
    from hpo.command_options import joining_config
    from hpo.search.command import main

    config = load_study_config(study_copy)
    study = optuna.load_study(study_name="tiny", storage=config.storage_url)
    recorded = dict(study.user_attrs["hpo_config"])
    recorded["data"] = {**recorded["data"], "path": "../data"}
    study.set_user_attr("hpo_config", recorded)
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert joining_config(config.storage_url, "tiny", elsewhere).data.path is None
    assert main(["--storage", config.storage_url, "--study-name", "tiny", "--n-trials", "5"]) == 0
    finished = optuna.load_study(study_name="tiny", storage=config.storage_url).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED)
    )
    assert len(finished) == 5


def test_an_interrupted_run_names_a_resume_with_the_flags_that_shaped_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "Run the same command again to resume: hpo search --study F" dropped --n-trials: the run
    # it named counted to the study file's n_trials and retired the trial it interrupted.
    import shlex

    import hpo.api
    from hpo.search.command import main

    runs: list[dict[str, object]] = []

    def interrupted(study: object, **kwargs: object) -> None:
        runs.append({"study": study, **kwargs})
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.api, "search", interrupted)
    argv = ["--study", "my s.toml", "--n-trials", "11", "--budget", "30m", "--timeout", "90.5"]
    argv += ["--workers", "2", "--trials-per-gpu", "3", "--data", "my data", "--tensorboard"]
    assert main(argv) == 130
    resume = capsys.readouterr().err.split("Run the same command again to resume: ")[1].strip()
    assert resume == (
        "hpo search --study 'my s.toml' --n-trials 11 --budget 1800 --timeout 90.5 --workers 2 "
        "--trials-per-gpu 3 --data 'my data' --tensorboard"
    )
    assert main(shlex.split(resume)[2:]) == 130
    assert runs[1] == runs[0]


def test_a_notebooks_progress_bar_shares_the_trial_lines_stream() -> None:
    # In a notebook the bar (stderr) and the trial lines (stdout) alternated streams, and the
    # notebook started a new output, a new bar, at each switch: 7 outputs a trial.
    import io
    import sys

    from ipykernel.iostream import OutStream

    from hpo.search.workers import _kernel_stream

    assert OutStream.__module__ == "ipykernel.iostream"
    kernels = type("Stream", (io.StringIO,), {"__module__": OutStream.__module__})
    assert _kernel_stream(kernels())
    assert not _kernel_stream(io.StringIO()) and not _kernel_stream(sys.__stdout__)
