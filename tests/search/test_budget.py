"""The study's wall-clock budget, the per-trial cap and workers that never repeat each other."""

from __future__ import annotations

import re
import time
import types
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from hpo import cost
from hpo.budget import spent_seconds
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.cost import Calibration
from hpo.search import main, run_search
from hpo.store import open_storage
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.tasks.imdb import IMDB

from ..conftest import write_study
from ..training.test_runner import PARAMS, _trial

if TYPE_CHECKING:
    from pathlib import Path

    from hpo.config import StudyConfig


def _study(config: StudyConfig) -> optuna.Study:
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    return optuna.load_study(study_name=config.name, storage=storage)


def _prepared(fake_imdb: Path, tmp_path: Path, extra: str = "") -> tuple[StudyConfig, Path]:
    config = load_study_config(write_study(tmp_path, fake_imdb, extra=extra))
    config = config.with_overrides(
        training=config.training.__class__(max_epochs=20, patience=20, chance_epochs=0)
    )
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    return config, folder


# The tiny model's estimate scaled to nothing, so only the deadline decides.
INSTANT = Calibration(ratios={"*": 1e-9})


@pytest.fixture
def late_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Epochs end 1000 s later than they do, so any deadline within that passes after epoch 1."""
    import hpo.training.callbacks

    clock = types.SimpleNamespace(time=lambda: time.time() + 1000.0)
    monkeypatch.setattr(hpo.training.callbacks, "time", clock)


@pytest.mark.usefixtures("late_epochs")
def test_budget_stops_a_running_trial_after_an_epoch_and_keeps_its_checkpoint(
    fake_imdb: Path, tmp_path: Path
) -> None:
    from hpo.training.runner import train_trial

    config, folder = _prepared(fake_imdb, tmp_path)
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    result = train_trial(
        trial, config, folder, tmp_path / "work", deadline=time.time() + 60, cost_ratios=INSTANT
    )
    attrs = trial.study.trials[0].user_attrs
    assert attrs["epochs"] == 1
    assert "would end past the study's budget" in attrs[Attr.STOP_REASON]
    assert attrs[Attr.CHECKPOINT_ID]
    assert result.value == attrs["val_accuracy"]
    assert attrs[Attr.EPOCH_SECONDS] > 0
    # Each epoch's seconds, for the clock's replays: here the one epoch it ran.
    assert attrs[Attr.EPOCH_DURATIONS] == [pytest.approx(attrs[Attr.EPOCH_SECONDS], abs=0.01)]
    # The work the prior priced, output values included (`hpo.cost.CostFeatures`).
    assert attrs[Attr.COST_FEATURES]["elements_per_example"] > 0
    # The estimate recorded is the one the deadline check used: the prior, at the family's
    # own rates, scaled by INSTANT.
    family = study_task(config).families[PARAMS["family"]]
    features = cost.CostFeatures(**attrs[Attr.COST_FEATURES])
    assert cost.family_rates(family) is not cost.DEFAULT_RATES
    assert attrs[Attr.PRIOR_EPOCH_SECONDS] == pytest.approx(
        features.prior_seconds(cost.family_rates(family)), abs=0.01
    )
    assert attrs[Attr.PRIOR_EPOCH_SECONDS] > 0
    assert attrs[Attr.ESTIMATED_EPOCH_SECONDS] == round(attrs[Attr.PRIOR_EPOCH_SECONDS] * 1e-9, 1)


@pytest.mark.usefixtures("late_epochs")
def test_per_trial_cap_shortens_a_trial(fake_imdb: Path, tmp_path: Path) -> None:
    from hpo.training.runner import train_trial

    config, folder = _prepared(fake_imdb, tmp_path)
    config = config.with_overrides(max_trial_minutes=1.0)
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    train_trial(trial, config, folder, tmp_path / "work", cost_ratios=INSTANT)
    attrs = trial.study.trials[0].user_attrs
    assert attrs["epochs"] == 1
    assert "per-trial cap" in attrs[Attr.STOP_REASON]


def test_a_trial_estimated_past_the_cap_does_not_start(fake_imdb: Path, tmp_path: Path) -> None:
    from hpo.training.runner import train_trial

    config, folder = _prepared(fake_imdb, tmp_path)
    config = config.with_overrides(max_trial_minutes=1.0)
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    with pytest.raises(optuna.TrialPruned, match=r"not started: .* per-trial cap of 1m 00s"):
        train_trial(
            trial, config, folder, tmp_path / "work", cost_ratios=Calibration(ratios={"*": 1e9})
        )
    assert "epochs" not in trial.study.trials[0].user_attrs


def test_a_trial_without_room_for_patience_plus_one_epochs_in_its_cap_does_not_start(
    fake_imdb: Path, tmp_path: Path
) -> None:
    from hpo.training.runner import EstimateJob, estimate_epochs, train_trial

    config, folder = _prepared(fake_imdb, tmp_path)
    config = config.with_overrides(max_trial_minutes=1.0)
    priced = estimate_epochs(EstimateJob(config=config, data_folder=folder, params=[PARAMS]))[0]
    prior = priced.seconds(Calibration())
    assert prior is not None and priced.family == PARAMS["family"]
    # One epoch of 10 s fits the 60 s cap; patience + 1 = 21 (at most max_epochs = 20) do not.
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    with pytest.raises(optuna.TrialPruned, match=r"not started: 20 epoch\(s\) are estimated"):
        train_trial(
            trial,
            config,
            folder,
            tmp_path / "work",
            cost_ratios=Calibration(ratios={"*": 10.0 / prior}),
        )


@pytest.mark.usefixtures("late_epochs")
def test_where_the_cheapest_default_fits_fewer_epochs_in_the_cap_a_trial_needs_room_for_those(
    fake_imdb: Path, tmp_path: Path
) -> None:
    """The CIFAR-10 study on one slow core: its default model's epoch took 312 s, so the
    15-minute cap held 2 of them, not patience + 1 = 4, and every later trial was not started.
    A trial now needs room for as many epochs as the cheapest default model has."""
    from hpo.training.runner import EstimateJob, estimate_epochs, train_trial

    config, folder = _prepared(fake_imdb, tmp_path)
    config = config.with_overrides(max_trial_minutes=1.0)
    priced = estimate_epochs(EstimateJob(config=config, data_folder=folder, params=[PARAMS]))[0]
    ratios = Calibration(ratios={"*": 10.0 / priced.seconds(Calibration())})  # 10 s an epoch
    # The cheapest default takes 25 s an epoch: the 60 s cap holds 2; this trial's 2 fit.
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    train_trial(trial, config, folder, tmp_path / "work", cost_ratios=ratios, cheapest=25.0)
    attrs = trial.study.trials[0].user_attrs
    assert attrs["epochs"] == 1 and "per-trial cap" in attrs[Attr.STOP_REASON]
    # The cheapest takes 2 s: the cap holds 30, more than patience + 1 (at most max_epochs =
    # 20), so the trial needs room for 20 of its own, which it does not have.
    trial = _trial(config.with_overrides(name="other"), PARAMS, optuna.pruners.NopPruner())
    with pytest.raises(optuna.TrialPruned, match=r"not started: 20 epoch\(s\) are estimated"):
        train_trial(trial, config, folder, tmp_path / "work", cost_ratios=ratios, cheapest=2.0)


def test_cap_epochs_is_patience_plus_one_or_what_the_cheapest_default_fits() -> None:
    from hpo.config import StudyConfig, TrainingConfig
    from hpo.training.runner import cap_epochs

    config = StudyConfig(name="s", task="imdb", training=TrainingConfig(max_epochs=12, patience=3))
    assert cap_epochs(config, 900, None) == 4
    assert cap_epochs(config, 900, 100.0) == 4  # 9 fit: patience + 1 is enough
    assert cap_epochs(config, 900, 312.0) == 2
    assert cap_epochs(config, 900, 2000.0) == 1  # not even one: a trial still needs one
    short = StudyConfig(name="s", task="imdb", training=TrainingConfig(max_epochs=2, patience=3))
    assert cap_epochs(short, 900, 1.0) == 2


class _Study:
    """What `Progress` reads of a study, and whether it was told to stop."""

    def __init__(self) -> None:
        self.trials: list[optuna.trial.FrozenTrial] = []
        self.stopped = False

    def get_trials(self, deepcopy: bool = True, states: object = None) -> list[object]:
        return list(self.trials)

    def stop(self) -> None:
        self.stopped = True


def _not_started(number: int) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=TrialState.PRUNED,
        user_attrs={Attr.PRUNE_REASON: "not started: 4 epoch(s) are estimated at 3009 s"},
    )
    trial.number = number
    return trial


@pytest.mark.parametrize(
    ("cheapest", "left", "stops"),
    [
        (312.0, 6400.0, False),  # it fits the 15-minute cap and the budget left: go on
        (None, 6400.0, True),  # nothing is priced: three in a row stop the worker
        (1000.0, 6400.0, True),  # not even one epoch of it fits the cap
        (312.0, 200.0, True),  # nor the budget left
    ],
)
def test_trials_that_do_not_start_stop_a_worker_only_when_the_cheapest_default_does_not_fit(
    cheapest: float | None, left: float, stops: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.config import StudyConfig
    from hpo.search.progress import MAX_NOT_STARTED, Progress

    config = StudyConfig(name="s", task="cifar10", budget=7200.0)  # a 15-minute cap
    progress = Progress(config, None, cheapest=lambda: cheapest, deadline=time.time() + left)
    study = _Study()
    for number in range(MAX_NOT_STARTED):
        study.trials.append(_not_started(number))
        progress(study, study.trials[-1])  # type: ignore[arg-type]
    assert study.stopped is stops
    out = capsys.readouterr().out
    assert ("3 trials in a row were estimated not to fit" in out) is stops
    if stops and cheapest is not None:
        assert "nor does one epoch of the cheapest default model" in out


@pytest.mark.slow
def test_budget_ends_the_search_and_resumed_runs_add_up(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(write_study(tmp_path, fake_imdb, n_trials=100, enqueue=False))
    # Preparing the data and costing the default models come out of the budget: on CI's loaded
    # machine they have taken over 25 s before the first trial.
    budget = 45.0
    started = time.time()
    summary = run_search(config.with_overrides(budget=budget), progress=False)
    elapsed = time.time() - started
    study = _study(config)
    epochs = [t.user_attrs.get(Attr.EPOCH_SECONDS, 0.0) for t in study.trials]
    assert 0 < summary.finished < 100
    # Inside the budget, give or take the guess of one epoch and the last trial's upload.
    assert elapsed <= budget + max(epochs) + 5
    first = spent_seconds(study)
    assert first == pytest.approx(elapsed, abs=3)
    assert all(t.state != TrialState.RUNNING for t in study.trials)

    # A second run only has what is left; once spent, a run does nothing. (What is left must
    # hold an epoch as the trials so far measured it, which a loaded machine stretches.)
    more = max(8.0, 3 * max(epochs))
    run_search(config.with_overrides(budget=first + more), progress=False)
    second = spent_seconds(_study(config))
    # The guess of one epoch, as this run's trials measured theirs too (load stretches them).
    epochs += [t.user_attrs.get(Attr.EPOCH_SECONDS, 0.0) for t in _study(config).trials]
    assert first < second <= first + more + max(epochs) + 5
    assert sum(k.startswith("budget_run:") for k in _study(config).user_attrs) == 2
    count = len(_study(config).trials)
    capsys.readouterr()
    run_search(config.with_overrides(budget=first), progress=False)
    said = capsys.readouterr().out
    assert "has spent its budget" in said
    # From Python, the budget is no --budget flag (an hpo.Tuner's user was told to pass one).
    assert "Give it a larger budget (hpo.Tuner's budget=, or the study file's)" in said
    assert len(_study(config).trials) == count
    # Less left than one epoch (the data preparation eats it): nothing to do, not an error.
    spent = spent_seconds(_study(config))
    run_search(config.with_overrides(budget=spent + 0.2), progress=False)
    assert "less than one epoch of its cheapest default trial" in capsys.readouterr().out
    assert len(_study(config).trials) == count


@pytest.mark.parametrize("value", ["0", "-5", '"2 weeks ago"'])
def test_bad_budget_in_the_study_file_exits_2_naming_the_key(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = write_study(tmp_path, fake_imdb)
    path.write_text(f"budget = {value}\n" + path.read_text())
    assert main(["--study", str(path)]) == 2
    assert "'budget' must be a duration greater than zero" in capsys.readouterr().err
    assert not (tmp_path / "tiny" / "study.db").exists()


@pytest.mark.parametrize("value", ["0", "-5", "2 weeks ago"])
def test_bad_budget_flag_exits_2_naming_the_flag(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    path = write_study(tmp_path, fake_imdb)
    with pytest.raises(SystemExit) as exc:
        main(["--study", str(path), f"--budget={value}"])
    assert exc.value.code == 2
    assert "'--budget' must be a duration greater than zero" in capsys.readouterr().err


def test_a_budget_too_small_for_one_epoch_is_an_error_before_any_trial(
    fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, fake_imdb)
    assert main(["--study", str(path), "--budget", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "the budget is too small" in err
    # It says where the half second went, in tenths: not "0s left" and "estimated at 0s".
    assert re.search(r"costing the default models took \d+(\.\d)?s of 'budget' = 0.5s", err), err
    assert re.search(r"estimated at \d+\.\ds", err), err
    assert "--budget 1m" in err
    assert _study(load_study_config(path)).get_trials(states=(TrialState.COMPLETE,)) == []
    # From Python (hpo.Tuner, hpo.search) the budget is an argument, not a flag.
    from hpo.search.workers import _budget_of

    assert _budget_of(1) == 'budget="1m"'
