"""What a running search shows: one line per finished trial, a progress bar, and when to stop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState
from tqdm import tqdm

from hpo.budget import BudgetClock, format_duration
from hpo.contract import Attr, OwnLoss
from hpo.repeats import MAX_REPEATS, repeat_streak

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import optuna
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig


__all__ = ["Progress", "describe_trial"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
NOT_STARTED = "not started"
# Trials in a row that their estimate kept from starting, after which a worker stops, unless
# the study's cheapest default model still fits (then smaller configurations can still run, and
# the sampler learns from the trials that did not start to propose them).
MAX_NOT_STARTED = 3
# Names the trial lines shorten.
_SHORT = {Attr.VAL_ACCURACY: "val_acc"}


class Progress:
    """An Optuna callback: after each trial prints its line, updates the bar, and stops the
    worker when too many trials failed, nothing fits any more, the search space looks used up
    (`hpo.repeats`), or the disk is full. Whether the study has enough trials is decided
    last, in the worker's turn (`hpo.search.turns`)."""

    def __init__(
        self,
        config: StudyConfig,
        bar: tqdm[Any] | None,
        clock: BudgetClock | None = None,
        *,
        cheapest: Callable[[], float | None] | None = None,
        deadline: float | None = None,
    ) -> None:
        """
        Args:
            cheapest: Estimated seconds of one epoch of the study's cheapest default model,
                under the calibration of the moment (None: not known).
            deadline: Unix time at which the study's budget ends, or None.
        """
        self.config = config
        self.bar = bar
        self.clock = clock
        self.cheapest = cheapest
        self.deadline = deadline
        self.consecutive_failures = 0
        self.not_started = 0
        self.failure_stop: str | None = None
        self.config_error: str | None = None
        # The KerasTuner error the user's code stopped the search with (`Attr.FATAL`), if any.
        self.fatal: str | None = None
        self.disk_full: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tqdm.write(describe_trial(trial, self.config.training.objective))
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        if self.bar is not None:
            postfix = {"trials": str(finished)}
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            if complete:
                best = max if self.config.training.maximize else min
                postfix["best"] = f"{best(t.value or 0.0 for t in complete):.4f}"
            if self.clock is not None and self.config.budget is not None:
                spent = self.clock.spent()
                self.bar.n = min(round(spent), round(self.config.budget))
                postfix["spent"] = format_duration(spent)
                postfix["left"] = format_duration(max(0.0, self.config.budget - spent))
            else:
                self.bar.n = min(finished, self.config.n_trials)
            self.bar.set_postfix(postfix)
            self.bar.refresh()
        if trial.state == TrialState.FAIL and Attr.CONFIG_ERROR in trial.user_attrs:
            self.config_error = str(trial.user_attrs[Attr.CONFIG_ERROR])
            self.fatal = trial.user_attrs.get(Attr.FATAL)
            study.stop()
        if trial.state == TrialState.FAIL and Attr.DISK_FULL in trial.user_attrs:
            self.disk_full = str(trial.user_attrs[Attr.DISK_FULL])
            study.stop()
        if trial.state == TrialState.FAIL:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.config.max_failures:
                reason = trial.user_attrs.get(Attr.FAIL_REASON, "unknown error")
                self.failure_stop = (
                    f"{self.consecutive_failures} consecutive trials failed; the last: {reason}"
                )
                study.stop()
        else:
            self.consecutive_failures = 0
        reason = str(trial.user_attrs.get(Attr.PRUNE_REASON, ""))
        self.not_started = self.not_started + 1 if reason.startswith(NOT_STARTED) else 0
        if self.not_started >= MAX_NOT_STARTED:
            seconds = None if self.cheapest is None else self.cheapest()
            if not self._fits(seconds):
                tqdm.write(
                    f"{self.not_started} trials in a row were estimated not to fit in the time "
                    f"left, {_cheapest_note(seconds)}; stopping."
                )
                study.stop()
        if Attr.DUPLICATE_OF in trial.user_attrs and len(repeat_streak(trials)) >= MAX_REPEATS:
            # From the store, so each worker stops on it; the search says why once, at its end.
            study.stop()

    def _fits(self, seconds: float | None) -> bool:
        """Whether one epoch of the cheapest default model (`seconds`) fits in the per-trial
        cap and in the budget left: then some trial can still start."""
        if seconds is None:
            return False
        cap = self.config.trial_cap_seconds
        left = None if self.deadline is None else self.deadline - time.time()
        return all(limit is None or seconds <= limit for limit in (cap, left))


def _cheapest_note(seconds: float | None) -> str:
    if seconds is None:
        return "and the study's default models cannot be costed"
    return (
        f"nor does one epoch of the cheapest default model ({format_duration(seconds)}); "
        f"{larger_budget()} or max_trial_minutes gives trials room"
    )


def larger_budget() -> str:
    """How the caller gives a study more budget: a flag to a command, an argument or a study
    file's key from Python."""
    from hpo.cli import in_command

    if in_command():
        return "a larger --budget"
    return "a larger budget (hpo.Tuner's budget=, or the study file's)"


def describe_trial(trial: FrozenTrial, objective: str = "val_accuracy") -> str:
    """One concise line about a finished trial: its `objective` value first, unless hpo
    measured that itself (a classifier's `val_accuracy`), then what hpo measured: the accuracy
    and its own loss, named for what it is (`val_log_loss`, `val_mse`), not Keras's `val_loss`."""
    attrs = trial.user_attrs
    family = trial.params.get("family", "?")
    parts = [f"trial {trial.number:>4}", f"{family:<10}", f"{trial.state.name:<8}"]
    if trial.state == TrialState.COMPLETE:
        measured = _measured(attrs)
        if objective not in measured:
            parts.append(f"{objective}={trial.value:.4f}")
        parts += [f"{_SHORT.get(name, name)}={value:.4f}" for name, value in measured.items()]
    if Attr.EPOCHS in attrs:
        parts.append(f"epochs={attrs[Attr.EPOCHS]}")
    if Attr.TRAIN_SECONDS in attrs:
        parts.append(f"{attrs[Attr.TRAIN_SECONDS]:.0f}s")
    reason = attrs.get(Attr.PRUNE_REASON) or attrs.get(Attr.FAIL_REASON)
    if reason and trial.state != TrialState.COMPLETE:
        parts.append(f"({reason})")
    if attrs.get(Attr.STOP_REASON) and trial.state == TrialState.COMPLETE:
        parts.append(f"({attrs[Attr.STOP_REASON]})")
    return " ".join(parts)


def _measured(attrs: Mapping[str, Any]) -> dict[str, float]:
    """What hpo measured of a trial's stored model, by name: the accuracy (a classifier's,
    multi-label rows'), then its loss under the name of what it measures (`OwnLoss`). One named
    as the objective measures what the trial's value does."""
    measured = {Attr.VAL_ACCURACY: attrs.get(Attr.VAL_ACCURACY)}
    measured[OwnLoss.of(attrs.get(Attr.LABELS)).value] = attrs.get(Attr.VAL_LOSS)
    return {name: float(value) for name, value in measured.items() if value is not None}
