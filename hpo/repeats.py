"""What to try: a trial that draws parameters an earlier trial trained is not trained again, and
a run of such trials ends the search, as KerasTuner's Oracle ends it after `max_collisions`.

A space smaller than the trials asked of it (`hp.Choice("units", [8, 16])`, max_trials=5)
would otherwise train the same few configurations again and again, for the whole budget of a
budget-only search. The repeat is pruned at once (Optuna's FAQ, "How can I ignore duplicated
samples?"); the stop is decided from the study's store, so every worker sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo.contract import Attr

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["MAX_REPEATS", "repeat_reason", "repeat_streak", "trained_before", "used_up_note"]

# KerasTuner's `Oracle(max_collisions=20)`: draws in a row that collide with earlier trials,
# after which it decides the space is used up and ends the search.
MAX_REPEATS = 20
_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def trained_before(trial: optuna.Trial) -> FrozenTrial | None:
    """The earliest trial of `trial`'s study that trained on `trial`'s parameters (all of
    them, hpo's own included), or None.

    A COMPLETE trial counts, and a PRUNED one that trained at least one epoch (the pruner
    stopped it, it diverged): its parameters would do the same again. A failed trial does not
    (a failure may be transient), nor one pruned before it trained: a repeat, or one estimated
    not to fit the time left, which may fit once the budget is larger.
    """
    params = trial.params
    for other in trial.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
    ):
        if other.number != trial.number and other.params == params and _trained(other):
            return other
    return None


def _trained(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE or int(trial.user_attrs.get(Attr.EPOCHS) or 0) > 0


def repeat_reason(number: int) -> str:
    """Why a repeat of trial `number` was pruned (its `Attr.PRUNE_REASON`)."""
    # Short enough for `hpo status`, which cuts a note at 50 characters.
    return f"repeats trial {number}: same parameters, not retrained"


def repeat_streak(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The repeats that the study's ended trials end with, in a row, in the order they ended."""
    ended = sorted(
        (t for t in trials if t.state in _ENDED and t.datetime_complete is not None),
        key=lambda t: (t.datetime_complete, t.number),
    )
    streak: list[FrozenTrial] = []
    for trial in reversed(ended):
        if Attr.DUPLICATE_OF not in trial.user_attrs:
            break
        streak.append(trial)
    return streak[::-1]


def used_up_note(trials: Sequence[FrozenTrial]) -> str | None:
    """What to say when the study's last `MAX_REPEATS` ended trials were all repeats (the
    search stops), or None."""
    if len(repeat_streak(trials)) < MAX_REPEATS:
        return None
    return (
        f"The search space looks used up: the last {MAX_REPEATS} trials each drew parameters "
        f"an earlier trial had trained; stopping. Widen the search space to search further."
    )
