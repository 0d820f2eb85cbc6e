"""What to try, and for how long: when a worker ends a trial that runs far past its time.

A trial keeps to its time by itself: it does not start unless its epochs fit, and its epoch clock
stops training before an epoch that would end past its cap or the study's budget
(`hpo.training.callbacks.EpochClock`). A trial that hangs (a user's callback, `fit` or data step
that never returns) never reaches that check, so its worker ends its process once it runs past
both by a grace that no healthy trial needs, and fails it with the reason.

A healthy trial runs over its end by at most the error of its last epoch's guess plus what follows
its last epoch (loading the best checkpoint, predicting the validation set, saving and uploading),
and its clock starts a little after the worker's (a spawned child imports Keras first). A trial
starts only if `hpo.budget.cap_epochs` epochs fit in its cap (`min(max_epochs, patience + 1)`,
fewer where even the cheapest default model's epochs are longer), so none of those is longer
than one such epoch, the grace: a quarter of the cap with the default patience of 3, and never
under `MIN_GRACE_S`, for the fixed costs a short cap leaves no room for.

Time the worker was stopped (SIGSTOP of the search's process group: Ctrl-Z, `docker pause`, a
paused VM) is not the trial hanging: its process was stopped with it. The limit moves later by
that time (`hpo.training.isolation.call_isolated`), and the trial, continued, stops at its next
epoch boundary, whose epoch its clock sees ran past its cap, with its best checkpoint kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpo.budget import cap_epochs, format_duration

if TYPE_CHECKING:
    from hpo.config import StudyConfig

__all__ = ["TrialLimit", "trial_limit"]

# The least grace past a trial's end (seconds): process start, an S3 upload, a busy storage.
MIN_GRACE_S = 60.0


@dataclass(frozen=True)
class TrialLimit:
    """When a trial's process is ended, and why.

    Attributes:
        at: The `time.monotonic()` time after which the trial's process is ended, later by
            any time its worker is stopped meanwhile.
        grace: Seconds between the trial's end (`why`) and `at`.
        why: Which end it ran past, for the reason: "the per-trial cap of 2m 00s".
    """

    at: float
    grace: float
    why: str

    def reason(self, ended: str) -> str:
        """The failed trial's reason, given how its process was ended."""
        return (
            f"hung: still running {format_duration(self.grace)} past {self.why}, more than a "
            f"healthy trial runs over; killed: {ended}"
        )


def trial_limit(
    config: StudyConfig, deadline: float | None, cheapest: float | None = None
) -> TrialLimit | None:
    """The limit of a trial that starts now: its cap or the study's deadline, whichever comes
    first, plus a grace (see the module's docstring); None if it has neither.

    Args:
        config: The study's configuration (`trial_cap_seconds`, `training.patience`).
        deadline: Unix time at which the study's budget ends, or None.
        cheapest: Estimated seconds per epoch of the study's cheapest default model, which
            may let a trial start with longer epochs (`hpo.budget.cap_epochs`).
    """
    cap = config.trial_cap_seconds
    ends = []
    if cap is not None:
        ends.append((cap, f"the per-trial cap of {format_duration(cap)}"))
    if deadline is not None:
        ends.append((deadline - time.time(), "the study's budget"))
    if not ends:
        return None
    left, why = min(ends)
    grace = MIN_GRACE_S
    if cap is not None:
        grace = max(grace, cap / cap_epochs(config, cap, cheapest))
    return TrialLimit(at=time.monotonic() + max(0.0, left) + grace, grace=grace, why=why)
