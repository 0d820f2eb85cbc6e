"""Families kept diverse for the ensemble: a sampler that chooses each trial's family itself.

TPE learns which family is cheap and good and then samples it nearly always (70 of 100 trials of
one 2-hour IMDB study were `ngram`, four of its top five alike), while the ensemble gains most
from members that err differently. `DiversitySampler` takes the `family` parameter out of TPE's
hands and leaves it every other parameter, which TPE models per family as before:

- "balanced": the family with the fewest trials so far (running ones included, so parallel
  workers spread out too);
- "top": every other trial (odd trial numbers), the family with the fewest trials among the
  study's best `TOP_TRIALS` complete ones; TPE's choice on the others, so a family that cannot
  reach the top costs at most half the trials.

Ties go to the family with fewer trials overall, then to the seeded random generator.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.config import Diversity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = ["FAMILY", "TOP_TRIALS", "DiversitySampler", "choose_family", "wrap"]

FAMILY = "family"
# Twice the default ensemble's members: the trials a `--top 5` ensemble's pool starts from.
TOP_TRIALS = 10
# Trials that took a share of the search: finished, stopped early, or still training.
_STARTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def choose_family(
    mode: Diversity,
    choices: Sequence[Any],
    trials: Sequence[FrozenTrial],
    number: int,
    rng: np.random.Generator,
    *,
    minimize: bool = True,
) -> Any | None:
    """The family trial `number` should train, or None to leave the choice to the base sampler.

    Args:
        mode: The study's `[sampler] diversity`.
        choices: The families the search space allows.
        trials: The study's trials (any states; the trial being sampled is ignored).
        number: The trial being sampled.
        rng: Breaks the last ties.
        minimize: Whether lower values are better (hpo's studies minimize log-loss).
    """
    if mode is Diversity.NONE or (mode is Diversity.TOP and number % 2 == 0):
        return None
    started = [t for t in trials if t.state in _STARTED and t.number != number]
    overall = Counter(t.params.get(FAMILY) for t in started)
    ranks: dict[Any, tuple[int, ...]]
    if mode is Diversity.BALANCED:
        ranks = {choice: (overall[choice],) for choice in choices}
    else:
        complete = [t for t in started if t.state is TrialState.COMPLETE and t.value is not None]
        complete.sort(key=lambda t: float(t.value) if minimize else -float(t.value))  # type: ignore[arg-type]
        best = Counter(t.params.get(FAMILY) for t in complete[:TOP_TRIALS])
        ranks = {choice: (best[choice], overall[choice]) for choice in choices}
    least = min(ranks.values())
    tied = [choice for choice in choices if ranks[choice] == least]
    return tied[int(rng.integers(len(tied)))]


class DiversitySampler(BaseSampler):
    """`base` for every parameter but `family`, which `choose_family` picks (see the module)."""

    def __init__(self, base: BaseSampler, mode: Diversity, seed: int | None = None) -> None:
        self._base = base
        self._mode = mode
        self._rng = np.random.default_rng(seed)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng = np.random.default_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._base.infer_relative_search_space(study, trial)
        space.pop(FAMILY, None)
        return space

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name == FAMILY and isinstance(param_distribution, CategoricalDistribution):
            trials = study._get_trials(deepcopy=False, states=_STARTED, use_cache=True)
            family = choose_family(
                self._mode,
                param_distribution.choices,
                trials,
                trial.number,
                self._rng,
                minimize=study.direction is StudyDirection.MINIMIZE,
            )
            if family is not None:
                return family
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)


def wrap(base: BaseSampler, mode: Diversity, seed: int | None) -> BaseSampler:
    """`base` itself when the family is TPE's to choose, else a `DiversitySampler` around it."""
    return base if mode is Diversity.NONE else DiversitySampler(base, mode, seed)
