from __future__ import annotations

from collections import Counter

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.config import ConfigError, Diversity, StudyConfig, config_from_dict
from hpo.diversity import TOP_TRIALS, DiversitySampler, choose_family
from hpo.study import make_sampler

FAMILIES = ("conv1d", "ngram", "sepconv1d")
DIST = optuna.distributions.CategoricalDistribution(FAMILIES)


def _trial(number: int, family: str, value: float | None, state: TrialState) -> optuna.Trial:
    # A pruned trial keeps its last reported value, as Optuna stores it; a running one has none.
    trial = create_trial(
        params={"family": family},
        distributions={"family": DIST},
        value=value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        state=state,
    )
    trial.number = number
    return trial


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_balanced_picks_the_family_with_fewest_started_trials() -> None:
    trials = [
        _trial(0, "ngram", 0.3, TrialState.COMPLETE),
        _trial(1, "ngram", 0.3, TrialState.PRUNED),
        _trial(2, "conv1d", 0.4, TrialState.COMPLETE),
        _trial(3, "sepconv1d", None, TrialState.RUNNING),
        _trial(4, "conv1d", None, TrialState.FAIL),  # a failed trial took no share
        _trial(5, "sepconv1d", None, TrialState.RUNNING),  # the trial being sampled
    ]
    # conv1d 1 (the failure not counted), ngram 2, sepconv1d 1 (itself not counted)
    picks = {choose_family(Diversity.BALANCED, FAMILIES, trials, 5, _rng()) for _ in range(1)}
    assert picks <= {"conv1d", "sepconv1d"}
    seen = {
        choose_family(Diversity.BALANCED, FAMILIES, trials, 5, np.random.default_rng(seed))
        for seed in range(20)
    }
    assert seen == {"conv1d", "sepconv1d"}  # ties broken at random, both reachable
    trials.append(_trial(6, "sepconv1d", 0.5, TrialState.COMPLETE))
    assert choose_family(Diversity.BALANCED, FAMILIES, trials, 7, _rng()) == "conv1d"


def test_none_leaves_every_choice_to_tpe_and_top_every_other_one() -> None:
    trials = [_trial(0, "ngram", 0.3, TrialState.COMPLETE)]
    assert choose_family(Diversity.NONE, FAMILIES, trials, 1, _rng()) is None
    assert choose_family(Diversity.TOP, FAMILIES, trials, 2, _rng()) is None
    assert choose_family(Diversity.TOP, FAMILIES, trials, 3, _rng()) in {"conv1d", "sepconv1d"}


def test_top_goes_to_the_family_missing_from_the_best_trials() -> None:
    # ngram holds the best TOP_TRIALS places; conv1d has many trials, all worse; sepconv1d has
    # one, also worse. Among the best, conv1d and sepconv1d tie at 0: fewer trials overall wins.
    trials = [_trial(i, "ngram", 0.1 + i / 100, TrialState.COMPLETE) for i in range(TOP_TRIALS)]
    trials += [_trial(20 + i, "conv1d", 0.9, TrialState.COMPLETE) for i in range(5)]
    trials.append(_trial(30, "sepconv1d", 0.8, TrialState.COMPLETE))
    # A pruned trial's last value, however good, is not a finished model: not among the best.
    trials.append(_trial(40, "sepconv1d", 0.01, TrialState.PRUNED))
    assert choose_family(Diversity.TOP, FAMILIES, trials, 31, _rng()) == "sepconv1d"
    # A sepconv1d trial among the best: conv1d is now the one missing there.
    trials.append(_trial(32, "sepconv1d", 0.05, TrialState.COMPLETE))
    assert choose_family(Diversity.TOP, FAMILIES, trials, 33, _rng()) == "conv1d"
    # Maximizing reads the order the other way: conv1d's five and the 0.8 sepconv1d lead, ngram
    # holds the other four places, and sepconv1d's 0.05 is no longer among the best.
    assert choose_family(Diversity.TOP, FAMILIES, trials, 33, _rng(), minimize=False) == "sepconv1d"


def _objective(trial: optuna.Trial) -> float:
    family = trial.suggest_categorical("family", FAMILIES)
    x = trial.suggest_float("x", -1, 1)
    # ngram is best by far: TPE alone learns to sample it nearly always.
    return {"ngram": 0.0, "conv1d": 1.0, "sepconv1d": 1.2}[family] + x * x


def _config(mode: str, seed: int = 3) -> StudyConfig:
    sampler = {"seed": seed, "startup_trials": 4, "diversity": mode}
    return config_from_dict({"name": "d", "task": "imdb", "sampler": sampler})


def _study(mode: str, n: int, seed: int = 3) -> optuna.Study:
    study = optuna.create_study(sampler=make_sampler(_config(mode, seed)))
    study.optimize(_objective, n_trials=n)
    return study


def _families(mode: str, n: int) -> tuple[Counter[str], list[float]]:
    study = _study(mode, n)
    return Counter(t.params["family"] for t in study.trials), [t.params["x"] for t in study.trials]


def test_a_study_with_each_mode_spreads_its_trials_as_promised() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe, _ = _families("none", 30)
    assert tpe["ngram"] >= 15  # what the diversity modes are for

    balanced, xs = _families("balanced", 30)
    assert balanced == {"ngram": 10, "conv1d": 10, "sepconv1d": 10}
    assert len(set(xs)) == 30  # x is still sampled, not fixed

    top, _ = _families("top", 30)
    # Odd trials go where the best ten lack trials, so the best ten hold every family; the even
    # ones are TPE's, mostly ngram, which still has the most trials.
    assert top["conv1d"] >= 5 and top["sepconv1d"] >= 5
    assert top["ngram"] == max(top.values()) and top["ngram"] < tpe["ngram"]


def test_make_sampler_keeps_families_diverse_by_default_and_plain_tpe_on_request() -> None:
    default = config_from_dict({"name": "d", "task": "imdb"})
    assert default.sampler.diversity is Diversity.BALANCED
    assert isinstance(make_sampler(default), DiversitySampler)
    plain = config_from_dict({"name": "d", "task": "imdb", "sampler": {"diversity": "none"}})
    assert isinstance(make_sampler(plain), optuna.samplers.TPESampler)


def test_an_unknown_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'sampler.diversity' must be one of 'none', 'balanced'"):
        config_from_dict({"name": "d", "task": "imdb", "sampler": {"diversity": "families"}})


def test_the_same_seed_replays_the_same_families_and_another_seed_breaks_ties_otherwise() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def order(seed: int) -> list[str]:
        return [t.params["family"] for t in _study("balanced", 12, seed).trials]

    assert order(5) == order(5)
    assert any(order(5) != order(seed) for seed in (6, 7, 8))


def test_only_the_family_parameter_is_taken_from_tpe() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kinds = ("a", "b", "c")

    def objective(trial: optuna.Trial) -> float:
        family = trial.suggest_categorical("family", FAMILIES)
        kind = trial.suggest_categorical("kind", kinds)  # another categorical: TPE's
        return (0.0 if kind == "a" else 1.0) + (0.1 if family == "ngram" else 0.0)

    config = config_from_dict(
        {
            "name": "d",
            "task": "imdb",
            "sampler": {"seed": 0, "startup_trials": 4, "diversity": "balanced"},
        }
    )
    study = optuna.create_study(sampler=make_sampler(config))
    study.optimize(objective, n_trials=24)
    assert Counter(t.params["family"] for t in study.trials) == dict.fromkeys(FAMILIES, 8)
    # TPE learns that kind "a" is best; a balanced choice would give it 8 of 24.
    assert Counter(t.params["kind"] for t in study.trials)["a"] >= 14


def test_a_maximizing_study_ranks_its_best_trials_from_the_top() -> None:
    sampler = DiversitySampler(optuna.samplers.RandomSampler(seed=0), Diversity.TOP, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # ngram holds the ten highest values, conv1d the lowest; sepconv1d two in the middle.
    for i in range(TOP_TRIALS):
        study.add_trial(_trial(i, "ngram", 0.9 + i / 1000, TrialState.COMPLETE))
    study.add_trial(_trial(0, "sepconv1d", 0.5, TrialState.COMPLETE))
    study.add_trial(_trial(0, "sepconv1d", 0.5, TrialState.COMPLETE))
    study.add_trial(_trial(0, "conv1d", 0.1, TrialState.COMPLETE))
    trial = study.ask()
    assert trial.number % 2 == 1  # the diverse half of the trials
    # Read as minimizing, conv1d and the sepconv1d pair would lead and ngram be missing.
    assert trial.suggest_categorical("family", FAMILIES) == "conv1d"
