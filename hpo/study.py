"""What to try: the Optuna study, its sampler, pruner and search space."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    check_distribution_compatibility,
)
from optuna.trial import TrialState

from hpo.config import PrunerKind, did_you_mean
from hpo.contract import Attr
from hpo.errors import ConfigError
from hpo.space import TRAINING_SPACE, fit_value, narrow_space, suggest, suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig
    from hpo.space import Space
    from hpo.tasks import Task

__all__ = [
    "KERAS_SETTINGS",
    "FamilyPruner",
    "SearchSpace",
    "best_trial",
    "check_settings",
    "check_space_drift",
    "create_study",
    "default_params",
    "enqueue_defaults",
    "keras_settings_of",
    "make_pruner",
    "make_sampler",
    "sampler_seed",
    "search_space",
    "shared_space",
]

# Defaults of the parameters every task shares, for enqueued default trials.
TRAINING_DEFAULTS = {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 64}


@dataclass(frozen=True)
class SearchSpace:
    """A task's whole search space after the study file's narrowing.

    Attributes:
        family: The distribution of the family choice.
        shared: Parameters every family has (training and task-level ones).
        families: Each family's own parameters.
    """

    family: CategoricalDistribution
    shared: dict[str, Any]
    families: dict[str, dict[str, Any]]

    def shared_and(self, family: str) -> Space:
        """Every parameter a trial of `family` samples, except the family itself."""
        return {**self.shared, **self.families[family]}


def search_space(task: Task, overrides: Mapping[str, list[Any]]) -> SearchSpace:
    """Builds the task's search space, narrowed by a study file's `[space]` table.

    Raises:
        ConfigError: A `[space]` entry names no parameter, or is outside the default space.
    """
    family = CategoricalDistribution(list(task.families))
    shared_default = {**TRAINING_SPACE, **task.space}
    known = {"family", *shared_default}
    for module in task.families.values():
        known.update(module.SPACE)
    # `family/parameter` narrows a hypermodel's own parameter (checked as it builds).
    hypermodels = {name for name, f in task.families.items() if hasattr(f, "build_trial")}
    unknown = sorted(k for k in set(overrides) - known if k.partition("/")[0] not in hypermodels)
    # A study store's families are not imported: their own parameters are unknown here.
    if any(getattr(f, "STORED", False) for f in task.families.values()):
        unknown = []
    if unknown:
        raise ConfigError(
            f"unknown key 'space.{unknown[0]}'.{did_you_mean(unknown[0], known, 'space.')} "
            f"Parameters of task {task.name!r}: " + ", ".join(sorted(known)) + "."
        )
    if "family" in overrides:
        family = narrow_space({"family": family}, {"family": overrides["family"]}, where="space")[
            "family"
        ]  # type: ignore[assignment]
    families = {
        str(name): narrow_space(task.families[str(name)].SPACE, overrides, where="space")
        for name in family.choices
    }
    # An entry of a family `family` leaves out is checked against that family's space too
    # (out of range is an error whichever families are searched), unless a searched family
    # has a parameter of that name: that one's range is what the entry narrows.
    searched = {name for space in families.values() for name in space}
    for name, module in task.families.items():
        if name not in families:
            own = {k: v for k, v in module.SPACE.items() if k not in searched}
            narrow_space(own, overrides, where="space")
    return SearchSpace(family=family, shared=shared_space(task, overrides), families=families)


def shared_space(task: Task, overrides: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The parameters every family of `task` has (training and task-level ones), narrowed by a
    study file's `[space]` table; its families are neither loaded nor their entries checked
    (`search_space` checks them)."""
    return narrow_space({**TRAINING_SPACE, **task.space}, overrides, where="space")


def sample_params(trial: optuna.Trial, task: Task, space: SearchSpace) -> dict[str, Any]:
    """Asks the trial for a family, the shared parameters and that family's parameters.

    A family that samples while it builds (a KerasTuner hypermodel) may compile itself or pass
    its own batch size, so its training parameters are left to the trial's process, which asks
    for each only if the model leaves it to hpo (`hpo.training.runner.build_model`), and it is
    not given the task's parameters of hpo's own models (`Task.model_space`): no trial differs
    from another in a setting its model ignores.
    """
    family = suggest(trial, "family", space.family)
    shared = space.shared
    if hasattr(task.families[family], "build_trial"):
        # Nor does it build from the task's parameters for hpo's own models (`model_space`).
        left = {*TRAINING_SPACE, *task.model_space}
        shared = {name: dist for name, dist in shared.items() if name not in left}
    shared = suggest_all(trial, shared)
    own = task.families[family].suggest(trial, space.families[family])
    return {"family": family, **shared, **own}


def sampler_seed(config: StudyConfig, run: int, worker: int) -> int:
    """The sampler seed of one worker of one run, derived from the study's seed.

    Workers that shared a seed would draw the same parameters (the same startup trials, and the
    same TPE candidates from the same history); giving each worker of each run its own seed,
    derived from (study seed, run number, worker number), keeps them apart and keeps the study
    reproducible from its seed.
    """
    return int(np.random.SeedSequence([config.sampler.seed, run, worker]).generate_state(1)[0])


def make_sampler(config: StudyConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Seeded TPE sampler; `constant_liar` keeps parallel workers away from running trials.

    With `[sampler] diversity`, the family is chosen by `hpo.diversity` and the rest by TPE.
    """
    from hpo.diversity import wrap

    seed = config.sampler.seed if seed is None else seed
    tpe = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=config.sampler.startup_trials, constant_liar=True
    )
    return wrap(tpe, config.sampler.diversity, seed)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; Hyperband's budget is counted in epochs."""
    settings = config.pruner
    if settings.kind is PrunerKind.HYPERBAND:
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=config.training.max_epochs
        )
    if settings.kind is PrunerKind.MEDIAN:
        median = optuna.pruners.MedianPruner(
            n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs
        )
        return FamilyPruner(median) if settings.by_family else median
    return optuna.pruners.NopPruner()


class FamilyPruner(optuna.pruners.BasePruner):
    """An Optuna pruner that sees, of the study, only the trials of the judged trial's family.

    A median over every family compares a trial with the families that learn fastest: in a study
    where one family's first epoch already beats another's best, every trial of the slower
    family is pruned at its first judged epoch, whatever it would have become, and the
    ensemble loses the family. Judged within its family, a trial is pruned for being worse than
    its own kind.
    """

    def __init__(self, pruner: optuna.pruners.BasePruner, key: str = "family") -> None:
        self._pruner, self._key = pruner, key

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        view = _Family(study, trial.params.get(self._key), self._key)
        return self._pruner.prune(view, trial)  # type: ignore[arg-type]


class _Family:
    """What Optuna's percentile pruners read of a study (its direction and its trials), the
    trials narrowed to one family."""

    def __init__(self, study: optuna.Study, family: Any, key: str) -> None:
        self._study, self._family, self._key = study, family, key

    @property
    def direction(self) -> optuna.study.StudyDirection:
        return self._study.direction

    def get_trials(
        self, deepcopy: bool = True, states: Sequence[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [
            t
            for t in self._study.get_trials(deepcopy=deepcopy, states=states)
            if t.params.get(self._key) == self._family
        ]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best COMPLETE trial (Optuna's `best_trial`), or None before there is one."""
    try:
        return study.best_trial
    except ValueError:
        return None


def create_study(
    config: StudyConfig,
    storage: BaseStorage | str,
    *,
    load_only: bool = False,
    seed: int | None = None,
) -> optuna.Study:
    """Creates the study, or loads it if it exists, with the configured sampler and pruner.

    Args:
        seed: The sampler's seed (see `sampler_seed`); default: the study's seed.
    """
    if load_only:
        return optuna.load_study(
            study_name=config.name,
            storage=storage,
            sampler=make_sampler(config, seed),
            pruner=make_pruner(config),
        )
    return optuna.create_study(
        study_name=config.name,
        storage=storage,
        sampler=make_sampler(config, seed),
        pruner=make_pruner(config),
        direction="maximize" if config.training.maximize else "minimize",
        load_if_exists=True,
    )


# The settings that make a study's trials comparable; a run with others is refused. The space
# has its own check (`check_space_drift`) and the data its fingerprint (`hpo.data.provenance`);
# budgets, counts and workers may change from run to run.
TRIAL_SETTINGS = ("task", "families", "sampler", "pruner", "training")


def _direction_filled(settings: dict[str, Any]) -> dict[str, Any]:
    """A study's settings (`config_to_dict`) with the training direction filled in from the
    objective's known direction where it is left out."""
    from hpo.directions import known_direction

    training = settings.get("training")
    if not isinstance(training, dict) or training.get("direction") is not None:
        return settings
    objective = training.get("objective")
    known = known_direction(objective) if isinstance(objective, str) else None
    if known is None:
        return settings
    return {**settings, "training": {**training, "direction": known.value}}


def check_settings(study: optuna.Study, config: StudyConfig) -> None:
    """Refuses a run whose trial-defining settings differ from those the study recorded.

    Raises:
        ConfigError: Names each differing key with the recorded and the new value.
    """
    from hpo.config import config_from_dict, config_to_dict

    recorded = study.user_attrs.get("hpo_config")
    if not isinstance(recorded, dict):
        return
    # Read back through the current StudyConfig, so a setting added since (with its default)
    # is not mistaken for a change.
    with contextlib.suppress(ConfigError):
        recorded = config_to_dict(config_from_dict(recorded))
    # Studies from before backends were recorded all trained on TensorFlow.
    training = recorded.get("training")
    if isinstance(training, dict) and "backend" not in training:
        recorded = {**recorded, "training": {**training, "backend": "tensorflow"}}
    current = config_to_dict(config)
    # A direction left out is the objective's own: "val_loss" left to its direction ranks as
    # "val_loss" given "min" does.
    recorded, current = _direction_filled(recorded), _direction_filled(current)
    changes = [
        change
        for key in TRIAL_SETTINGS
        for change in _changes(key, recorded.get(key), current.get(key))
    ]
    # The Keras settings an `hpo.Tuner` session built its models under (`image_data_format`):
    # a model built under the other reads an image's rows as its channels.
    before = study.user_attrs.get(KERAS_SETTINGS)
    after = keras_settings_of(config)
    if isinstance(before, dict) and after is not None:
        # A setting one side lacks was Keras's default there (Keras not imported yet).
        shared = sorted(before.keys() & after.keys())
        changes += _changes("keras", {k: before[k] for k in shared}, {k: after[k] for k in shared})
    if changes:
        tuner = after is not None
        # An hpo.Tuner adds its own ways out (its project, overwrite=True).
        ways_out = (
            ""
            if tuner
            else f" Restore them, join the study with its recorded settings (hpo search "
            f"--storage URL --study-name {study.study_name}), or start a new study (a new "
            f"'name')."
        )
        raise ConfigError(
            f"this run's settings differ from those study {study.study_name!r} recorded, so its "
            f"trials would not be comparable ({'; '.join(changes)})."
            f"{_backend_advice(recorded, current, tuner=tuner)}{ways_out}"
        )


def _backend_advice(recorded: dict[str, Any], current: dict[str, Any], *, tuner: bool) -> str:
    """Where the backend changed, a sentence on how to run on the recorded one: what chose
    this run's, and what chooses the recorded one (for a study file: its [training] backend or
    $KERAS_BACKEND; for an `hpo.Tuner`: $KERAS_BACKEND, before Keras loads); else nothing."""
    from hpo.backend import BACKEND_VAR, given_backend_var

    before = (recorded.get("training") or {}).get("backend")
    after = (current.get("training") or {}).get("backend")
    if before == after or not isinstance(before, str):
        return ""
    given = given_backend_var()
    now = f"${BACKEND_VAR} is {given!r}" if given else f"${BACKEND_VAR} is unset"
    if tuner:
        return (
            f" Its trials trained on {before} and Keras runs here on {after} ({now}): run it "
            f"with {BACKEND_VAR}={before} set before Keras is imported (in a notebook, restart "
            f"the kernel)."
        )
    return (
        f' Its trials trained on {before}: set backend = "{before}" under [training] in the '
        f"study file, or, where the file names none, run with {BACKEND_VAR}={before} ({now}"
        f"{', which means tensorflow' if not given else ''})."
    )


# The study attribute that records the Keras settings of an `hpo.Tuner`'s session.
KERAS_SETTINGS = "keras_settings"


def keras_settings_of(config: StudyConfig) -> dict[str, Any] | None:
    """The Keras settings an in-memory hypermodel carries to its trials (`hpo.Tuner`), or None
    for a study file's families, which each trial's process builds under Keras's own."""
    settings = getattr(config.hypermodel, "keras_settings", None)
    return dict(settings) if isinstance(settings, dict) else None


def _changes(key: str, before: object, after: object) -> list[str]:
    """`key: before -> after`, or for two tables each key of theirs that differs
    (`training.backend: 'torch' -> 'jax'`), not the whole tables."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            f"{key}.{name}: {before.get(name)!r} -> {after.get(name)!r}"
            for name in sorted({*before, *after}, key=str)
            if before.get(name) != after.get(name)
        ]
    return [f"{key}: {before!r} -> {after!r}"]


def check_space_drift(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Compares the space with the one the study's earlier trials were sampled from.

    Optuna cannot mix a parameter's categorical choices, type or log scale within one study;
    a changed numeric range is fine and only noted.

    Returns:
        Notes on parameters whose range changed.

    Raises:
        ConfigError: A parameter changed incompatibly; the study needs a new name.
    """
    recorded: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    current: dict[str, BaseDistribution] = {"family": space.family, **space.shared}
    for own in space.families.values():
        current.update(own)
    notes = []
    for name, new in current.items():
        old = recorded.get(name)
        if old is None or old == new:
            continue
        try:
            check_distribution_compatibility(old, new)
        except ValueError as exc:
            restore = "restore the earlier one"
            if isinstance(old, CategoricalDistribution) and isinstance(
                new, CategoricalDistribution
            ):
                # New choices (a family added to hpo since the study began, say): the study
                # resumes with its own choices listed in the study file.
                listed = ", ".join(json.dumps(c) for c in old.choices)
                restore = f"list the study's own choices in its study file: {name} = [{listed}]"
                restore += " under [space]"
            raise ConfigError(
                f"the search space changed incompatibly for study {study.study_name!r}: "
                f"parameter {name!r} was {old} and is now {new} ({exc}). Use a new study name "
                f"(the 'name' key) for the new space, or {restore}."
            ) from exc
        notes.append(f"parameter {name!r} changed from {old} to {new}; earlier trials are kept.")
    return notes


def enqueue_defaults(study: optuna.Study, task: Task, space: SearchSpace) -> int:
    """Queues one trial per family with its hand-made defaults, fitted into the narrowed space.

    Seeding a search with known-good settings gives the sampler a strong start and makes sure
    every family is tried. Only a study without trials is seeded.

    Returns:
        How many trials were queued.
    """
    if study.get_trials(deepcopy=False):
        return 0
    defaults = default_params(task, space)
    for params in defaults:
        study.enqueue_trial(params, user_attrs={Attr.SEEDED: FAMILY_DEFAULT})
    _drop_copied_defaults(study)
    return len(defaults)


FAMILY_DEFAULT = "family default"  # Attr.SEEDED of the trials `enqueue_defaults` queues


def _drop_copied_defaults(study: optuna.Study) -> list[int]:
    """Fails the copies of the family defaults that workers started at once on a new study
    queued (each found it empty): each one still waiting is taken, as a worker takes a queued
    trial (so one that a worker has just taken is left to train), and marked FAIL naming the
    first, which trains. A retry of a default (`hpo.search.recovery.requeue`) is no copy.

    Returns:
        The numbers of the copies failed.
    """
    storage = study._storage
    first: dict[str, int] = {}
    dropped = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.system_attrs
        if trial.user_attrs.get(Attr.SEEDED) != FAMILY_DEFAULT or "failed_trial" in attrs:
            continue
        key = json.dumps(attrs.get("fixed_params"), sort_keys=True, default=str)
        if key not in first:
            first[key] = trial.number
        elif trial.state == TrialState.WAITING and fail_queued(
            storage,
            trial._trial_id,
            f"a copy of trial {first[key]}'s family defaults, queued by another worker "
            f"that started on the new study at the same time; not trained",
        ):
            dropped.append(trial.number)
    return dropped


def fail_queued(storage: BaseStorage, trial_id: int, reason: str) -> bool:
    """Marks a queued (WAITING) trial FAIL with `reason`, untrained. It is taken first as a
    worker takes a queued trial, so that one a worker has just taken (and trains) is left to it.

    Returns:
        Whether this call failed it (not, when a worker took it first).
    """
    if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
        return False
    storage.set_trial_user_attr(trial_id, Attr.FAIL_REASON, reason)
    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    return True


def default_params(task: Task, space: SearchSpace) -> list[dict[str, Any]]:
    """Each family's hand-made default parameters, fitted into the (narrowed) space."""
    shared_defaults = {**TRAINING_DEFAULTS, **task.defaults}
    result = []
    for family in space.family.choices:
        values = {**shared_defaults, **task.families[str(family)].DEFAULTS}
        params = {
            name: fit_value(dist, values[name])
            for name, dist in space.shared_and(str(family)).items()
        }
        result.append({"family": family, **params})
    return result
