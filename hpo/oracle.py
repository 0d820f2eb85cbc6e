"""KerasTuner's oracle, read from an hpo study: `tuner.oracle.get_best_trials(1)[0].score`.

In KerasTuner the oracle chooses each trial's values and records its results, and scripts read
the results through it (`get_best_trials`, `trials`, `get_trial`, `objective`). With hpo,
Optuna's sampler chooses and the study store records, so `hpo.Tuner.oracle` gives the study's
trials as KerasTuner `Trial`s to read: their hyperparameters (as `get_best_hyperparameters`
names them), score (the objective at the best epoch), best step (that epoch), status, and
metrics (what Keras logged at each epoch). It runs no trial: a
Tuner subclass's `run_trial` (`oracle.update_trial`) is KerasTuner's own training loop, which
hpo does not run.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any

from hpo.contract import Attr
from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import keras_tuner
    from optuna.trial import FrozenTrial

    from hpo.api import Study
    from hpo.tuner import Tuner

__all__ = ["StudyOracle", "given_values", "trial_hyperparameters"]

# Optuna's trial states as KerasTuner's statuses: a pruned trial was stopped early, as
# Hyperband stops one.
_STATUS = {
    "COMPLETE": "COMPLETED",
    "PRUNED": "STOPPED",
    "FAIL": "FAILED",
    "RUNNING": "RUNNING",
    "WAITING": "IDLE",
}


class StudyOracle:
    """A Tuner's study, read as KerasTuner's `Oracle` (see the module)."""

    def __init__(self, tuner: Tuner) -> None:
        self._tuner = tuner

    @property
    def objective(self) -> keras_tuner.Objective:
        """What ranks the trials, as the study recorded it (a new Tuner of a regression
        study learns that it ranks by `val_loss` only in `search`)."""
        import keras_tuner

        study = self._tuner.study().optuna_study
        name = (study.metric_names or [self._tuner.config.training.objective])[0]
        return keras_tuner.Objective(name, "max" if study.direction.name == "MAXIMIZE" else "min")

    @property
    def max_trials(self) -> int | None:
        """The finished trials the study should hold; None where its budget alone ends the
        search (`hpo.Tuner(budget=...)` without `max_trials`), as in KerasTuner's oracles
        given none."""
        return self._tuner.config.trial_limit

    @property
    def trials(self) -> dict[str, keras_tuner.engine.trial.Trial]:
        """Every trial of the study, by trial id ("00", "01", ...), in order."""
        study = self._tuner.study().optuna_study
        return {t.trial_id: t for t in self._read(study.get_trials(deepcopy=False))}

    def get_trial(self, trial_id: str) -> keras_tuner.engine.trial.Trial:
        """The trial of that id (`trial.trial_id`, or its number).

        Raises:
            ConfigError: The study has no such trial.
        """
        trials = self.trials
        if str(trial_id) in trials:
            return trials[str(trial_id)]
        for trial in trials.values():
            if str(trial_id).isdigit() and int(trial.trial_id) == int(trial_id):
                return trial
        raise ConfigError(
            f"the study has no trial {trial_id!r}; its trials are {list(trials)[:20]}."
        )

    def get_best_trials(self, num_trials: int = 1) -> list[keras_tuner.engine.trial.Trial]:
        """The best completed trials, best first; as KerasTuner's, other trials after them
        where fewer than `num_trials` completed."""
        from optuna.trial import TrialState

        best = self._tuner.best_trials(num_trials)
        if len(best) < num_trials:
            study = self._tuner.study().optuna_study
            rest = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.COMPLETE]
            best += rest[: num_trials - len(best)]
        return self._read(best)

    def _read(self, frozen: Sequence[FrozenTrial]) -> list[keras_tuner.engine.trial.Trial]:
        objective = self.objective  # read from the store once
        given = given_values(self._tuner.study())
        return [self._trial(t, objective, given) for t in frozen]

    def _trial(
        self, frozen: FrozenTrial, objective: keras_tuner.Objective, given: Mapping[str, Any]
    ) -> keras_tuner.engine.trial.Trial:
        from keras_tuner.engine.trial import Trial

        width = max(2, len(str(self.max_trials or 0)))
        hp = trial_hyperparameters(frozen, self._tuner.config.hypermodel.name, given)
        trial = Trial(hp, trial_id=f"{frozen.number:0{width}d}", status=_STATUS[frozen.state.name])
        trial.metrics.register(objective.name, objective.direction)
        for step, value in sorted(frozen.intermediate_values.items()):
            trial.metrics.update(objective.name, value, step=step)
        if frozen.intermediate_values:
            trial.best_step = trial.metrics.get_best_step(objective.name)
        # Every epoch's logs (a trial of an earlier version recorded the best epoch's only).
        history: dict[str, Any] = frozen.user_attrs.get(Attr.HISTORY) or {}
        for name, values in history.items():
            if name != objective.name and isinstance(values, list):
                for step, value in enumerate(values):
                    if isinstance(value, (int, float)):
                        trial.metrics.update(name, value, step=step)
        logs: dict[str, Any] = frozen.user_attrs.get(Attr.METRICS) or {}
        for name, value in logs.items():
            if name not in history and name != objective.name and isinstance(value, (int, float)):
                trial.metrics.update(name, value, step=trial.best_step)
        if frozen.value is not None:
            trial.score = frozen.value
        reason = frozen.user_attrs.get(Attr.FAIL_REASON) or frozen.user_attrs.get(Attr.PRUNE_REASON)
        trial.message = None if reason is None else str(reason)
        return trial


def trial_hyperparameters(
    trial: FrozenTrial, family: str, given: Mapping[str, Any] | None = None
) -> keras_tuner.HyperParameters:
    """A trial's values as `keras_tuner.HyperParameters`, by the names the hypermodel `family`
    gave them: `build_model(hp)` builds the trial's model. They hold every value the trial
    used, as KerasTuner's do: the sampled ones, fixed ones, and the defaults of parameters
    not searched (`tune_new_entries=False`) or declared in the hypermodel's `fit`.

    Args:
        given: What the trial gave its hypermodel beside its values (`given_values`), read
            with `hp.get(name)` as in the trial (`hp.get("input_shape")`), and not among
            `values`.
    """
    from hpo.models.hypermodel import GivenHyperParameters, declare, declared_name

    hp = GivenHyperParameters(given)
    own = {k: v for k, v in trial.params.items() if k != "family"}
    # A parameter of the hypermodel's own is named as it declared it, without the family
    # prefix (`build_model/learning_rate`) or scope (`units[model=cnn]`), and wins over an hpo
    # training parameter of the same name: it comes first, and the first of a name stays. Each
    # is declared as its distribution gives it (its conditions aside), so that `hp.space` and
    # `get_config()` hold it, as KerasTuner's do.
    for name in sorted(own, key=lambda name: "/" not in name):
        declared = declared_name(name.removeprefix(f"{family}/"))
        hp.values.setdefault(declared, own[name])
        declare(hp, declared, trial.distributions[name])
    # What the hypermodel used that Optuna never sampled: fixed values, and the defaults of
    # parameters left out of the search (a trial of an earlier version recorded none),
    # declared as fixed values.
    recorded = trial.user_attrs.get(Attr.HYPERPARAMETERS)
    if isinstance(recorded, dict):  # the store's data: anything else is left out
        hp.values.update(recorded)
        in_space = {p.name for p in hp.space}
        for name, value in recorded.items():
            if isinstance(name, str) and name not in in_space:
                with contextlib.suppress(ValueError, TypeError):
                    hp.Fixed(name, value)
    return hp


def given_values(study: Study) -> dict[str, Any]:
    """What every trial of `study` gives its hypermodel beside the values it samples, for
    `hp.get(name)`: the task's build context, read from the study's data (for `hpo.Tuner`'s
    arrays `input_shape`, or `input_shapes` by input name, and `classes`, or `targets` for
    regression targets). Empty, with a warning naming why, where the data are gone.
    """
    from hpo.data.provenance import SOURCE_ATTR, recorded_source
    from hpo.tasks import get_task

    if study.optuna_study.user_attrs.get(SOURCE_ATTR) is None:
        return {}  # no search of it has read its data yet
    task = get_task(study.config.task)
    try:
        folder = task.locate(study.config, recorded_source(study.optuna_study))
    except ConfigError as exc:
        warnings.warn(
            f"{exc} Until then, hp.get() reads none of the values the data give the "
            f"hypermodel (its input shape and classes).",
            stacklevel=3,
        )
        return {}
    return dict(task.build_context(folder))
