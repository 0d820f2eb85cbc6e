"""The median pruner's start-up rule, replayed on a finished study's own learning curves.

For each setting (`startup_trials` x `warmup_epochs` x judged within the study or within the
trial's family, `by_family`), the study's trials are replayed one at a time in the order they
started, as one worker ran them: each reports its recorded validation values epoch by epoch to
Optuna's `MedianPruner` with that setting (what hpo's `[pruner]` builds), which may stop it
before the run did. Printed side by side in one run: the trials the
setting stops earlier than the run, the epochs and training time that frees, and which of the
run's five best trials (the ensemble's candidates) it would have lost. The run's own setting
comes first and must reproduce the run's median-pruner decisions (`agrees`), which shows the
replay replays.

Limits, printed with the table:
- A trial the run stopped cannot go further here: its later values are unknown. Under a setting
  that prunes less it stops where the run stopped it (counted in `unknown`).
- The time freed would have gone to other trials, which a replay cannot know: it is the budget
  a setting frees, not the study it would have made.

Usage:
    python benchmarks/bench_pruner_replay.py --study studies/cifar10.toml
        [--startup 1 2 3 5] [--warmup 0 1 2] [--within study family]
    python benchmarks/bench_pruner_replay.py --storage sqlite:///PATH/study.db --study-name NAME
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NamedTuple

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hpo.budget import format_duration
from hpo.command_options import add_study_arguments, open_study
from hpo.config import PrunerKind
from hpo.contract import Attr
from hpo.study import FamilyPruner

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optuna.trial import FrozenTrial

TOP = 5


class Replayed(NamedTuple):
    """One setting's replay."""

    startup: int
    warmup: int
    by_family: bool
    stopped_earlier: list[int]  # trial numbers stopped before the run stopped them
    epochs_saved: int
    seconds_saved: float
    top_lost: list[int]  # of the run's best TOP trials, those stopped earlier
    agrees: bool  # the setting prunes exactly the trials the run's median pruner pruned
    unknown: int  # trials the run pruned that this setting would have let go on


def curves(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that trained (reported at least one epoch), in the order they started."""
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    trained = [t for t in trials if t.intermediate_values and t.state in finished]
    return sorted(trained, key=lambda t: (t.datetime_start is None, t.datetime_start, t.number))


def top_trials(trials: Sequence[FrozenTrial], n: int = TOP) -> list[int]:
    """The numbers of the run's best `n` COMPLETE trials by value."""
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    return [t.number for t in sorted(complete, key=lambda t: -(t.value or 0.0))[:n]]


def pruned_by_median(trial: FrozenTrial) -> bool:
    """Whether the run's pruner stopped it after an epoch: not the chance-level rule (its
    reason says so), nor the estimate that it would not fit (it reported no epoch)."""
    reason = str(trial.user_attrs.get(Attr.PRUNE_REASON, ""))
    return (
        trial.state is TrialState.PRUNED
        and bool(trial.intermediate_values)
        and "chance level" not in reason
    )


def replay(
    trials: Sequence[FrozenTrial], startup: int, warmup: int, by_family: bool = False
) -> Replayed:
    """Replays the trials' curves (`curves` order) through a `MedianPruner(startup, warmup)`,
    judging each trial within its family (`hpo.study.FamilyPruner`) if `by_family`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(
        n_startup_trials=startup, n_warmup_steps=warmup
    )
    if by_family:
        pruner = FamilyPruner(pruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    families = CategoricalDistribution(sorted({str(t.params.get("family")) for t in trials}))
    best = set(top_trials(trials))
    earlier: list[int] = []
    pruned_here: set[int] = set()
    epochs_saved, seconds_saved, unknown = 0, 0.0, 0
    for recorded in curves(trials):
        values = sorted(recorded.intermediate_values.items())
        study.enqueue_trial({"family": str(recorded.params.get("family"))})
        trial = study.ask({"family": families})
        stop = None
        for step, value in values:
            trial.report(value, step)
            if trial.should_prune():
                stop = step
                break
        last = values[-1][0]
        if stop is not None and stop < last:
            earlier.append(recorded.number)
            pruned_here.add(recorded.number)
            epochs_saved += last - stop
            seconds_saved += (last - stop) * float(recorded.user_attrs.get(Attr.EPOCH_SECONDS, 0))
            study.tell(trial, state=TrialState.PRUNED)
        elif stop is not None or recorded.state is TrialState.PRUNED:
            if stop is not None:
                pruned_here.add(recorded.number)
            elif pruned_by_median(recorded):
                unknown += 1
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, recorded.value)
    by_median = {t.number for t in curves(trials) if pruned_by_median(t)}
    return Replayed(
        startup,
        warmup,
        by_family,
        earlier,
        epochs_saved,
        round(seconds_saved, 1),
        sorted(best & set(earlier)),
        by_median == pruned_here,
        unknown,
    )


def table(results: Sequence[Replayed], run: tuple[int, int, bool] | None) -> str:
    """The settings side by side, the run's own marked."""
    lines = [
        "| startup trials | warmup epochs | judged within | stopped earlier | epochs freed "
        f"| training time freed | top-{TOP} lost | same decisions as the run | unknown |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        own = " (the run's)" if (r.startup, r.warmup, r.by_family) == run else ""
        lost = ", ".join(f"trial {n}" for n in r.top_lost) or "none"
        within = "its family" if r.by_family else "the study"
        lines.append(
            f"| {r.startup}{own} | {r.warmup} | {within} | {len(r.stopped_earlier)} | "
            f"{r.epochs_saved} | "
            f"{format_duration(r.seconds_saved)} | {lost} | {'yes' if r.agrees else 'no'} | "
            f"{r.unknown} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_study_arguments(parser)
    parser.add_argument("--startup", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--warmup", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--within",
        nargs="+",
        choices=["study", "family"],
        default=["study", "family"],
        help="judge each trial against the whole study's trials, its family's, or both",
    )
    args = parser.parse_args(argv)
    config, study = open_study(args.study, args.storage, args.study_name)
    trials = study.get_trials(deepcopy=False)
    run = None
    if config.pruner.kind is PrunerKind.MEDIAN:
        pruner = config.pruner
        run = (pruner.startup_trials, pruner.warmup_epochs, pruner.by_family)
    settings = [
        (s, w, within == "family")
        for within in args.within
        for s in args.startup
        for w in args.warmup
    ]
    if run is not None:
        settings = [run, *(s for s in settings if s != run)]
    trained = curves(trials)
    seconds = sum(
        len(t.intermediate_values) * float(t.user_attrs.get(Attr.EPOCH_SECONDS, 0)) for t in trained
    )
    print(
        f"Study {study.study_name!r}: {len(trained)} trials trained {format_duration(seconds)} "
        f"in all; the run's top {TOP}: {', '.join(map(str, top_trials(trials)))}."
    )
    print(table([replay(trials, s, w, f) for s, w, f in settings], run))
    print(
        "\nA trial the run stopped cannot go further in a replay (`unknown`: the run pruned it, "
        "this setting would not have); the time freed would have gone to other trials, which "
        "a replay cannot know."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
