"""benchmarks/bench_pruner_replay.py: the median pruner's settings replayed on recorded curves."""

from __future__ import annotations

import datetime
import importlib.util
from pathlib import Path

import optuna
from optuna.trial import TrialState

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pruner_replay.py"
spec = importlib.util.spec_from_file_location("bench_pruner_replay", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

T0 = datetime.datetime(2026, 1, 1)


def _trial(
    number: int,
    curve: list[float],
    state: TrialState = TrialState.COMPLETE,
    reason: str = "",
    start: int | None = None,
    family: str = "conv1d",
) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state,
        value=max(curve) if state is TrialState.COMPLETE else None,
        intermediate_values=dict(enumerate(curve)),
        params={"family": family},
        distributions={"family": optuna.distributions.CategoricalDistribution([family])},
        user_attrs={"epoch_seconds": 60.0, **({"prune_reason": reason} if reason else {})},
    )
    trial.number = number
    trial.datetime_start = T0 + datetime.timedelta(minutes=number if start is None else start)
    return trial


GOOD = [[0.60, 0.70, 0.75], [0.62, 0.71, 0.74], [0.61, 0.72, 0.76]]


def _study() -> list[optuna.trial.FrozenTrial]:
    # Three good trials, then a hopeless one that ran 4 epochs, then four better and better.
    trials = [_trial(i, curve) for i, curve in enumerate(GOOD)]
    trials.append(_trial(3, [0.20, 0.25, 0.30, 0.31]))
    trials += [_trial(4 + i, [v + 0.05 + 0.02 * i for v in GOOD[i % 3]]) for i in range(4)]
    return trials


def test_a_hopeless_trial_is_stopped_once_enough_trials_finished_and_the_time_it_frees() -> None:
    trials = _study()
    early = bench.replay(trials, startup=2, warmup=0)
    assert early.stopped_earlier == [3]
    assert early.epochs_saved == 3 and early.seconds_saved == 180.0  # stopped after epoch 1
    assert early.top_lost == []  # not among the five best
    assert early.agrees is False  # the run let it finish
    # With 5 start-up trials only 3 had finished when it ran: nothing is stopped.
    late = bench.replay(trials, startup=5, warmup=0)
    assert late.stopped_earlier == [] and late.epochs_saved == 0 and late.agrees
    # Warm-up epochs are never judged: it is stopped after its third epoch, not its first.
    warm = bench.replay(trials, startup=2, warmup=2)
    assert warm.stopped_earlier == [3] and warm.epochs_saved == 1


def test_a_good_trial_that_starts_slowly_is_counted_as_lost() -> None:
    trials = _study()
    trials[3] = _trial(3, [0.30, 0.60, 0.95])  # slow start, best of all
    early = bench.replay(trials, startup=2, warmup=0)
    assert early.top_lost == [3] and bench.top_trials(trials)[0] == 3
    assert bench.replay(trials, startup=2, warmup=2).top_lost == []


def test_the_runs_own_pruning_is_reproduced_and_trials_it_cut_are_unknown_elsewhere() -> None:
    trials = _study()
    # The run (2 start-up trials, no warm-up) pruned the hopeless trial after its first epoch;
    # a chance-level stop (the first trial to start) and a trial never started are not the
    # median pruner's.
    trials[3] = _trial(3, [0.20], TrialState.PRUNED, "Trial was pruned at epoch 0.")
    chance = "val_accuracy 0.500 is still at chance level (0.500) after 2 epochs"
    trials.append(_trial(8, [0.5, 0.5], TrialState.PRUNED, chance, start=-1))
    trials.append(_trial(9, [], TrialState.PRUNED, "not started: 4 epoch(s) are estimated"))
    own = bench.replay(trials, startup=2, warmup=0)
    assert own.agrees and own.stopped_earlier == [] and own.unknown == 0
    lax = bench.replay(trials, startup=5, warmup=0)
    assert not lax.agrees and lax.unknown == 1
    assert [t.number for t in bench.curves(trials)] == [8, *range(8)]


def test_judged_within_its_family_a_slow_familys_trials_are_let_run() -> None:
    # Two trials of a family at 0.88-0.91 from the first epoch, then one of a family that
    # starts lower and ends as the study's best.
    trials = [_trial(0, [0.88, 0.90], family="nbsvm"), _trial(1, [0.89, 0.91], family="nbsvm")]
    trials.append(_trial(2, [0.80, 0.86, 0.93], family="conv1d"))
    plain = bench.replay(trials, startup=2, warmup=0)
    assert plain.stopped_earlier == [2] and plain.top_lost == [2]
    within = bench.replay(trials, startup=2, warmup=0, by_family=True)
    assert within.stopped_earlier == [] and within.by_family
