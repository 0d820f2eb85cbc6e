"""Median pruner vs Hyperband at the same wall-clock budget: which finds the better model?

Runs the same study twice, side by side with each pinned to its own CPU core (or one after the
other with `--sequential`), with the same sampler seed, data and budget:
once with the median pruner and once with Optuna's `HyperbandPruner` (epochs as the resource,
from 1 to `max_epochs`). Prints, for each: the best validation accuracy, trials complete / pruned,
epochs trained, and the best validation accuracy reached by each quarter of the budget. Both
studies live in a scratch folder (`--out`), and a rerun resumes them within their budgets.

Usage:
    python benchmarks/bench_pruners.py [--study studies/imdb.toml] [--budget 30m]
        [--train-size 0] [--out /tmp/hpo-pruners] [--data PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import run_pinned

from hpo.budget import parse_duration
from hpo.config import PrunerKind, load_study_config
from hpo.search import run_search
from hpo.store import open_storage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/imdb.toml")
    parser.add_argument("--budget", default="30m", help="per pruner")
    parser.add_argument("--train-size", type=int, help="training reviews (default: the study's)")
    parser.add_argument("--out", default="/tmp/hpo-pruners")
    parser.add_argument("--data")
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
    rows = [
        (kind.value, _summary(configs[kind].storage_url, configs[kind].name, budget))
        for kind in kinds
    ]
    print(f"\nsame budget ({args.budget} each), data train_size={data.train_size or 'all'}:")
    print(
        f"{'pruner':<10} {'best val':<9} {'complete':<9} {'pruned':<7} {'epochs':<7} "
        "best by 25% / 50% / 75% / 100% of the budget"
    )
    for kind, (best, complete, pruned, epochs, curve) in rows:
        marks = " / ".join(f"{v:.4f}" for v in curve)
        print(f"{kind:<10} {best:<9.4f} {complete:<9} {pruned:<7} {epochs:<7} {marks}")
    winner = max(rows, key=lambda row: row[1][0])[0]
    print(f"better best-validation score: {winner}")
    return 0


def _summary(
    storage_url: str, name: str, budget: float
) -> tuple[float, int, int, int, list[float]]:
    storage = open_storage(storage_url, create=False, heartbeat=False)
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    starts = [float(v[0]) for k, v in study.user_attrs.items() if k.startswith("budget_run:")]
    origin = min(starts) if starts else 0.0
    curve = []
    for quarter in (0.25, 0.5, 0.75, 1.0):
        done = [
            t.value or 0.0
            for t in complete
            if t.datetime_complete and t.datetime_complete.timestamp() - origin <= quarter * budget
        ]
        curve.append(max(done, default=0.0))
    return (
        max((t.value or 0.0 for t in complete), default=0.0),
        len(complete),
        sum(t.state == TrialState.PRUNED for t in trials),
        sum(int(t.user_attrs.get("epochs", 0)) for t in trials),
        curve,
    )


if __name__ == "__main__":
    sys.exit(main())
