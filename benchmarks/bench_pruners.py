"""Median pruner vs Hyperband at the same wall-clock budget: which finds the better model?

Runs the same study twice, side by side with each pinned to its own CPU core (or one after the
other with `--sequential`), with the same sampler seed, data and budget: once with the median
pruner and once with Optuna's `HyperbandPruner` (epochs as the resource, from 1 to
`max_epochs`). Prints, for each: the best validation accuracy and when (in budget time) it was
first reached, the mean of the five best (the ensemble's members), trials complete / pruned,
epochs trained, and the best validation accuracy reached by each quarter of the budget; the
better best score wins, a tie goes to the better top 5. Budget time counts only the seconds a
run was alive, so a resumed run's pause does not count. Both studies live in a scratch folder
(`--out`), and a rerun resumes them within their budgets.

Usage:
    python benchmarks/bench_pruners.py [--study studies/imdb.toml] [--budget 30m]
        [--train-size 0] [--out /tmp/hpo-pruners] [--data PATH] [--sequential]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import NamedTuple

import optuna
from _common import TOP, benchmark_parser, run_pinned
from optuna.trial import TrialState

from hpo.budget import format_duration, parse_duration, run_intervals, union_seconds
from hpo.config import PrunerKind, load_study_config
from hpo.contract import Attr
from hpo.search import run_search
from hpo.store import open_storage


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--budget", default="30m", help="per pruner")
    parser.add_argument("--train-size", type=int, help="training reviews (default: the study's)")
    parser.add_argument("--out", default="/tmp/hpo-pruners")
    parser.add_argument("--sequential", action="store_true", help="one pruner after the other")
    parser.add_argument("--arm", choices=[k.value for k in PrunerKind], help=argparse.SUPPRESS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_study_config(args.study)
    budget = parse_duration(args.budget, "--budget")
    data = base.data
    if args.train_size is not None:
        data = dataclasses.replace(data, train_size=args.train_size)
    kinds = (PrunerKind.MEDIAN, PrunerKind.HYPERBAND)
    configs = {
        kind: dataclasses.replace(
            base,
            name=f"{base.name}-{kind.value}",
            study_dir=Path(args.out) / f"{base.name}-{kind.value}",
            storage=None,
            artifacts=None,
            budget=budget,
            data=data,
            pruner=dataclasses.replace(base.pruner, kind=kind),
        )
        for kind in kinds
    }
    if args.arm is not None:
        # One arm of a side-by-side run, on the core it was started on.
        run_search(configs[PrunerKind(args.arm)], data=args.data, progress=False)
        return 0
    if args.sequential:
        for kind in kinds:
            print(f"== {kind.value}: {configs[kind].study_dir}", flush=True)
            run_search(configs[kind], data=args.data, progress=False)
    else:
        run_pinned(
            {
                kind.value: [sys.executable, __file__, *sys.argv[1:], "--arm", kind.value]
                for kind in kinds
            }
        )
    rows = {
        kind.value: _summary(configs[kind].storage_url, configs[kind].name, budget)
        for kind in kinds
    }
    print(f"\nsame budget ({args.budget} each), data train_size={data.train_size or 'all'}:")
    print(
        f"{'pruner':<10} {'best val':<9} {'top-5 mean':<11} {'reached':<8} {'complete':<9} "
        f"{'pruned':<7} {'epochs':<7} best by 25% / 50% / 75% / 100% of the budget"
    )
    for kind, row in rows.items():
        marks = " / ".join(f"{v:.4f}" for v in row.curve)
        print(
            f"{kind:<10} {row.best:<9.4f} {row.top_mean:<11.4f} {format_duration(row.reached):<8} "
            f"{row.complete:<9} {row.pruned:<7} {row.epochs:<7} {marks}"
        )
    # The better best-validation score wins; a tie goes to the better top 5 (what the ensemble
    # is made of).
    winner = max(rows, key=lambda kind: (round(rows[kind].best, 6), rows[kind].top_mean))
    tied = len({round(row.best, 6) for row in rows.values()}) == 1
    print(
        f"better best-validation score: {winner}"
        + (" (tied best; the better top-5 mean breaks the tie)" if tied else "")
    )
    return 0


class Summary(NamedTuple):
    """One pruner's study, measured in budget time (the seconds its runs were alive)."""

    best: float  # best validation accuracy
    top_mean: float  # mean validation accuracy of the best TOP complete trials
    reached: float  # budget seconds at which the best was first reached
    complete: int
    pruned: int
    epochs: int
    curve: list[float]  # best validation accuracy by each quarter of the budget


def _summary(storage_url: str, name: str, budget: float) -> Summary:
    storage = open_storage(storage_url, create=False, heartbeat=False)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    runs = run_intervals(study)
    # (budget seconds at completion, value): a pause between resumed runs does not count.
    done = sorted(
        (union_seconds(runs, until=t.datetime_complete.timestamp()), t.value or 0.0)
        for t in trials
        if t.state == TrialState.COMPLETE and t.datetime_complete is not None
    )
    best = max((value for _, value in done), default=0.0)
    curve = [
        max((value for at, value in done if at <= quarter * budget), default=0.0)
        for quarter in (0.25, 0.5, 0.75, 1.0)
    ]
    values = sorted((value for _, value in done), reverse=True)[:TOP]
    return Summary(
        best=best,
        top_mean=sum(values) / len(values) if values else 0.0,
        reached=next((at for at, value in done if value == best), 0.0),
        complete=len(done),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        epochs=sum(int(t.user_attrs.get(Attr.EPOCHS, 0)) for t in trials),
        curve=curve,
    )


if __name__ == "__main__":
    sys.exit(main())
