"""A trial process opening the study store: with the fork server's store preload (hpo) or without.

Each trial's process connects to the study store first. The first connection in a process
imports Optuna's table models, Alembic (Optuna's schema check imports it on first use) and the
database's SQLAlchemy dialect; hpo's fork server imports them once
(`hpo.training.isolation.STORE_PRELOAD`), so the trial processes forked from it start with
them. This runs `--children` processes as trials run, through `call_isolated` on a fresh fork
server, each opening a SQLite study store and loading the study, in two arms, each in its own
Python process and in turn (`--repeats` rounds of bare, hpo): `bare` without the store preload,
`hpo` with it. It prints each arm's CPU seconds per child for the opening (median over all its
children), and the hpo/bare ratio.

Usage:
    python benchmarks/bench_trial_start.py [--children 8] [--repeats 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import run_arms, write_json

ARMS = ("bare", "hpo")


def open_store(url: str) -> float:
    """In the child: CPU seconds to open the study store and load the study."""
    import optuna

    from hpo.store import open_storage

    started = time.process_time()
    storage = open_storage(url, create=False, heartbeat=False)
    optuna.load_study(study_name="bench", storage=storage)
    return time.process_time() - started


def run_arm(arm: str, children: int) -> list[float]:
    """In this arm's own process: `children` trial processes from one fresh fork server."""
    import optuna

    from hpo.store import open_storage
    from hpo.training import isolation

    if arm == "bare":
        isolation.STORE_PRELOAD = []
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'study.db'}"
        optuna.create_study(study_name="bench", storage=open_storage(url, create=True))
        env = {"KERAS_BACKEND": "tensorflow"}
        return [isolation.call_isolated(open_store, url, env=env) for _ in range(children)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.children)))
        return

    runs = run_arms(__file__, ARMS, args.repeats, "--children", str(args.children))
    medians = {arm: statistics.median(s for run in runs[arm] for s in run) for arm in ARMS}
    print(f"{args.children} trial processes per arm and round, {args.repeats} round(s)")
    print(f"{'arm':<6} {'CPU s to open the store, per child (median)':>44}")
    for arm in ARMS:
        print(f"{arm:<6} {medians[arm]:>44.3f}")
    print(f"hpo / bare: {medians['hpo'] / medians['bare']:.2f}x")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
