from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpo.contract import Attr
from hpo.errors import ConfigError
from hpo.search.recovery import requeue
from hpo.space import fit_value, narrow_space
from hpo.study import (
    FamilyPruner,
    _drop_copied_defaults,
    check_space_drift,
    enqueue_defaults,
    sample_params,
    search_space,
)
from hpo.tasks.imdb import IMDB

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def test_space_covers_families_and_shared_parameters() -> None:
    space = search_space(IMDB, {})
    assert set(space.family.choices) == {"conv1d", "sepconv1d", "ngram", "nbsvm"}
    expected = {"optimizer", "learning_rate", "batch_size", "vocab_size", "seq_len"}
    assert expected <= set(space.shared)
    assert "depth_multiplier" in space.families["sepconv1d"]
    assert "depth_multiplier" not in space.families["conv1d"]
    assert space.shared["learning_rate"].log


def test_narrowing_applies_and_validates() -> None:
    space = search_space(IMDB, {"family": ["conv1d"], "seq_len": [200], "dropout": [0.1, 0.2]})
    assert space.family.choices == ("conv1d",)
    assert space.shared["seq_len"] == CategoricalDistribution([200])
    assert space.families["conv1d"]["dropout"] == FloatDistribution(0.1, 0.2)
    with pytest.raises(
        ConfigError, match=r"unknown key 'space.dropuot'. Did you mean 'space.dropout'\?"
    ):
        search_space(IMDB, {"dropuot": [0.1, 0.2]})
    with pytest.raises(ConfigError, match=r"'space.seq_len' must list distinct choices"):
        search_space(IMDB, {"seq_len": [123]})
    with pytest.raises(ConfigError, match=r"'space.blocks' must be \[low, high\] with 1 <= low"):
        search_space(IMDB, {"blocks": [0, 9]})
    # An entry of a family left out of the search is checked too: it was accepted unchecked.
    with pytest.raises(ConfigError, match=r"'space.kernel_size' must be \[low, high\]"):
        search_space(IMDB, {"family": ["ngram"], "kernel_size": [4, 40]})


def test_fit_value_moves_into_the_space() -> None:
    assert fit_value(CategoricalDistribution([10, 20]), 30000) == 20
    assert fit_value(CategoricalDistribution(["max"]), "average") == "max"
    assert fit_value(IntDistribution(3, 9, step=2), 12) == 9
    assert fit_value(FloatDistribution(0.1, 0.2), 0.5) == 0.2
    narrowed = narrow_space(
        {"x": IntDistribution(1, 5)}, {"x": [2, 3], "other": [1]}, where="space"
    )
    assert narrowed == {"x": IntDistribution(2, 3)}


def test_sampling_gives_every_parameter_of_the_family() -> None:
    space = search_space(IMDB, {})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for _ in range(16):
        trial = study.ask()
        params = sample_params(trial, IMDB, space)
        families.add(params["family"])
        assert set(params) == {"family", *space.shared_and(params["family"])}
        study.tell(trial, 0.5)
    assert families == {"conv1d", "sepconv1d", "ngram", "nbsvm"}


def test_a_hypermodel_is_given_the_tasks_data_parameters_not_those_of_hpos_models() -> None:
    import dataclasses
    from types import MappingProxyType

    from hpo.space import TRAINING_SPACE
    from hpo.tasks.images import IMAGES

    class Hypermodel:  # samples while it builds: hpo.models.hypermodel's families
        SPACE: Mapping[str, object] = MappingProxyType({})
        DEFAULTS: Mapping[str, object] = MappingProxyType({})

        def build_trial(self, trial: object, params: object) -> None: ...

        def suggest(self, trial: object, space: object) -> dict[str, object]:
            return {}

    for task, given in ((IMAGES, set()), (IMDB, {"vocab_size", "seq_len"})):
        task = dataclasses.replace(task, families={**task.families, "mine": Hypermodel()})
        space = search_space(task, {"family": ["mine"]})
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        params = sample_params(study.ask(), task, space)
        # The images are read as they are whatever `upscale` and `augment` (hpo's models
        # resize and augment inside), and training parameters are asked as the model needs.
        assert set(params) == {"family", *given}, params
        assert not set(params) & (set(TRAINING_SPACE) | {"upscale", "augment"})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    builtin = sample_params(study.ask(), IMAGES, search_space(IMAGES, {}))
    assert {"upscale", "augment", "batch_size"} <= set(builtin)


def test_defaults_are_enqueued_once_and_fit_the_narrowed_space() -> None:
    space = search_space(IMDB, {"seq_len": [200], "embedding_dim": [32, 64]})
    study = optuna.create_study()
    assert enqueue_defaults(study, IMDB, space) == 4
    assert enqueue_defaults(study, IMDB, space) == 0
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    queued = [t.system_attrs["fixed_params"] for t in waiting]
    by_family = {p["family"]: p for p in queued}
    assert set(by_family) == {"conv1d", "sepconv1d", "ngram", "nbsvm"}
    assert by_family["conv1d"]["seq_len"] == 200
    assert by_family["conv1d"]["embedding_dim"] == 64
    assert by_family["conv1d"]["branches"] == 3
    assert by_family["sepconv1d"]["residual"] is True
    assert by_family["sepconv1d"]["learning_rate"] == pytest.approx(3e-3)
    assert by_family["ngram"]["seq_len"] == 200  # its own default (1600), fitted
    assert by_family["ngram"]["ngram_order"] == 2


def test_defaults_two_workers_queue_at_once_are_trained_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two `hpo search` started together on a new study each found it empty and queued the
    # defaults: a third of a 6-trial study trained the same parameters twice.
    space = search_space(IMDB, {"seq_len": [200]})
    study = optuna.create_study()
    assert enqueue_defaults(study, IMDB, space) == 4
    first = study.get_trials()
    # The other worker, which looked before the first queued anything; one of its copies
    # is taken by a worker before it looks for copies (it trains).
    looked = study.get_trials
    monkeypatch.setattr(study, "get_trials", lambda *a, **k: [] if not calls else looked(*a, **k))
    calls: list[int] = []
    enqueue = study.enqueue_trial

    def queue(params: Any, **kwargs: Any) -> None:
        enqueue(params, **kwargs)
        if not calls:
            calls.append(1)
            taken = study.get_trials()[-1]
            assert study._storage.set_trial_state_values(taken._trial_id, TrialState.RUNNING)

    monkeypatch.setattr(study, "enqueue_trial", queue)
    assert enqueue_defaults(study, IMDB, space) == 4
    monkeypatch.undo()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING] * 4 + [TrialState.RUNNING] + [
        TrialState.FAIL
    ] * 3
    assert [t.system_attrs["fixed_params"] for t in trials[4:]] == [
        t.system_attrs["fixed_params"] for t in first
    ]
    assert trials[5].user_attrs[Attr.FAIL_REASON] == (
        "a copy of trial 1's family defaults, queued by another worker that started on the new "
        "study at the same time; not trained"
    )
    # A retry of a default is no copy: it stays queued.
    retried = study.get_trials()[0]
    study._storage.set_trial_state_values(retried._trial_id, TrialState.RUNNING)
    study._storage.set_trial_state_values(retried._trial_id, TrialState.FAIL)
    requeue(study, retried._trial_id)
    assert study.get_trials()[-1].state == TrialState.WAITING
    assert _drop_copied_defaults(study) == []
    assert study.get_trials()[-1].state == TrialState.WAITING


def test_a_study_from_before_a_family_was_added_resumes_with_its_own_families_listed() -> None:
    before = ["conv1d", "sepconv1d", "ngram"]
    study = optuna.create_study()
    study.add_trial(
        optuna.trial.create_trial(
            params={"family": "ngram"},
            distributions={"family": CategoricalDistribution(before)},
            value=0.8,
        )
    )
    with pytest.raises(ConfigError) as refused:
        check_space_drift(study, search_space(IMDB, {}))
    assert 'family = ["conv1d", "sepconv1d", "ngram"] under [space]' in str(refused.value)
    assert check_space_drift(study, search_space(IMDB, {"family": before})) == []


def test_a_family_pruner_judges_a_trial_against_its_own_family_only() -> None:
    families = CategoricalDistribution(["fast", "slow"])

    def run(study: optuna.Study, family: str, curve: list[float]) -> bool:
        """Runs one trial of `family` through `curve`; whether the pruner stopped it."""
        study.enqueue_trial({"family": family})
        trial = study.ask({"family": families})
        assert trial.params["family"] == family
        for step, value in enumerate(curve):
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return True
        study.tell(trial, curve[-1])
        return False

    def median() -> optuna.pruners.MedianPruner:
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)

    plain = optuna.create_study(direction="maximize", pruner=median())
    by_family = optuna.create_study(direction="maximize", pruner=FamilyPruner(median()))
    for study in (plain, by_family):
        for curve in ([0.88, 0.90], [0.89, 0.91]):
            assert not run(study, "fast", curve)
    # A slow family's good trial: below the fast family's first epoch, so the study-wide median
    # stops it; its own family has no finished trial to judge it by.
    slow = [0.80, 0.86, 0.89]
    assert run(plain, "slow", slow)
    assert not run(by_family, "slow", slow)
    assert not run(by_family, "slow", [0.81, 0.87, 0.88])
    # Once its family has two, a worse one of the family is stopped, and the fast family's
    # trials are still judged by their own.
    assert run(by_family, "slow", [0.70, 0.75])
    assert run(by_family, "fast", [0.85, 0.86])
    assert not run(by_family, "fast", [0.90, 0.92])


def test_a_minimized_objective_makes_a_minimizing_study_ranked_lowest_first(tmp_path: Path) -> None:
    from hpo.artifacts import best_first
    from hpo.config import StudyConfig, TrainingConfig, config_to_dict
    from hpo.study import check_settings, create_study

    config = StudyConfig(name="s", training=TrainingConfig(objective="val_loss"))
    study = create_study(config, f"sqlite:///{tmp_path / 'study.db'}")
    assert study.direction is optuna.study.StudyDirection.MINIMIZE
    for value in (0.5, 0.3, 0.4):
        study.add_trial(optuna.trial.create_trial(value=value))
    trials = study.get_trials()
    assert [t.value for t in best_first(study, trials)] == [0.3, 0.4, 0.5]
    assert study.best_trial.value == 0.3
    # Another objective would make the trials incomparable: refused, naming it.
    study.set_user_attr("hpo_config", config_to_dict(config))
    with pytest.raises(ConfigError, match=r"val_loss.*val_accuracy"):
        check_settings(study, StudyConfig(name="s"))


def test_a_direction_left_to_the_objective_is_the_same_setting_as_the_one_it_has(
    tmp_path: Path,
) -> None:
    import dataclasses

    from hpo.backend import Backend
    from hpo.config import StudyConfig, TrainingConfig, config_to_dict
    from hpo.directions import Direction
    from hpo.study import check_settings, create_study

    def training(objective: str, direction: Direction | None = None) -> TrainingConfig:
        return TrainingConfig(backend=Backend.TENSORFLOW, objective=objective, direction=direction)

    given = StudyConfig(name="s", training=training("val_loss", Direction.MIN))
    study = create_study(given, f"sqlite:///{tmp_path / 'study.db'}")
    study.set_user_attr("hpo_config", config_to_dict(given))
    check_settings(study, dataclasses.replace(given, training=training("val_loss")))
    with pytest.raises(ConfigError, match=r"training\.objective: 'val_loss' -> 'loss'"):
        check_settings(study, dataclasses.replace(given, training=training("loss")))


def test_changed_settings_are_named_key_by_key_not_as_whole_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from hpo import backend
    from hpo.backend import Backend
    from hpo.config import StudyConfig, TrainingConfig, config_to_dict
    from hpo.study import check_settings, create_study

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(backend, "_claimed", None)  # no earlier test's search claimed it here
    config = StudyConfig(name="s", training=TrainingConfig(backend=Backend.TORCH))
    study = create_study(config, f"sqlite:///{tmp_path / 'study.db'}")
    study.set_user_attr("hpo_config", config_to_dict(config))
    check_settings(study, config)  # the same settings: nothing to say
    changed = dataclasses.replace(
        config,
        training=dataclasses.replace(config.training, backend=Backend.JAX),
        sampler=dataclasses.replace(config.sampler, seed=config.sampler.seed + 1),
    )
    with pytest.raises(ConfigError) as raised:
        check_settings(study, changed)
    seed = config.sampler.seed
    assert f"(sampler.seed: {seed} -> {seed + 1}; training.backend: 'torch' -> 'jax')" in str(
        raised.value
    )
    # How to run on the recorded backend: "unset $KERAS_BACKEND" was the advice, which cannot
    # bring back torch.
    way_back = r'trained on torch: set backend = "torch" under \[training\].*KERAS_BACKEND=torch'
    assert re.search(
        rf"{way_back} \(\$KERAS_BACKEND is unset, which means tensorflow\)", str(raised.value)
    )
    # $KERAS_BACKEND chose the new backend: the message names it.
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(ConfigError, match=rf"{way_back} \(\$KERAS_BACKEND is 'jax'\)"):
        check_settings(study, changed)
    # The value hpo itself set for the run (claim_backend, before the check) is not the user's:
    # unset, it said "$KERAS_BACKEND is 'tensorflow' ...: unset it".
    monkeypatch.setattr(backend, "_claimed", (None, "jax"))  # found unset, wrote jax
    with pytest.raises(ConfigError, match=r"\(\$KERAS_BACKEND is unset, which means tensorflow"):
        check_settings(study, changed)
    # An hpo.Tuner has no study file: $KERAS_BACKEND, set before Keras loads, is the way back.
    from types import SimpleNamespace

    tuner = dataclasses.replace(changed, hypermodel=SimpleNamespace(keras_settings={}))
    with pytest.raises(ConfigError) as raised:
        check_settings(study, tuner)
    assert "study file" not in str(raised.value)
    assert "hpo search" not in str(raised.value)
    assert (
        "Its trials trained on torch and Keras runs here on jax ($KERAS_BACKEND is unset): run "
        "it with KERAS_BACKEND=torch set before Keras is imported (in a notebook, restart the "
        "kernel)." in str(raised.value)
    )
