"""A small hpo.Tuner search's CPU seconds, process by process: this tree against another commit's.

Runs, in one Python process per arm and in turn (`--repeats` rounds), the search a user's
script writes: `hpo.Tuner` on a small `Dense` hypermodel over synthetic arrays, `--trials`
trials of `--epochs` epochs. `hpo` is this tree; with `--baseline REV`, `baseline` is commit
REV's code in a temporary git worktree. It prints, per arm (medians): the CPU seconds of the
processes the fork server started (the data's preparation, the check and costing of the
default model, each trial: all of them, read from the server's reaped children in /proc), the
fork server's own (its imports), this process's, the sum, and the wall-clock seconds; then
hpo/baseline ratios. Linux only (it reads /proc).

Usage:
    python benchmarks/bench_search_cpu.py [--baseline REV] [--trials 4] [--epochs 2]
        [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import arm_trees, run_arms, write_json

MEASURES = ("children_cpu_s", "server_cpu_s", "search_cpu_s", "total_cpu_s", "wall_s")


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hp.Int("units", 4, 32, step=4), activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def server_cpu() -> tuple[float, float]:
    """The fork server's own CPU seconds and its reaped children's, from /proc."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return own, children


def run_arm(trials: int, epochs: int) -> dict[str, float]:
    """In this arm's own process: the search, then what each process spent on it."""
    import numpy as np

    import hpo

    x = np.random.default_rng(0).normal(size=(400, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-cpu-") as folder:
        tuner = hpo.Tuner(build_model, max_trials=trials, directory=folder, project_name="cpu")
        summary = tuner.search(x, y, validation_split=0.25, epochs=epochs, verbose=0)
        wall = time.perf_counter() - started
        server, children = server_cpu()
    if summary.finished != trials:
        raise SystemExit(f"the search finished {summary.finished} of {trials} trials")
    search = sum(os.times()[:2])
    return {
        "children_cpu_s": children,
        "server_cpu_s": server,
        "search_cpu_s": search,
        "total_cpu_s": children + server + search,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a commit to compare with (a git worktree of it)")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.trials, args.epochs)))
        return
    arguments = ("--trials", str(args.trials), "--epochs", str(args.epochs))
    with arm_trees(args.baseline) as trees:
        runs = run_arms(__file__, list(trees), args.repeats, *arguments, trees=trees)
    medians = {
        arm: {m: statistics.median(run[m] for run in ran) for m in MEASURES}
        for arm, ran in runs.items()
    }
    print(
        f"hpo.Tuner, {args.trials} trials of {args.epochs} epochs, {args.repeats} round(s); "
        f"medians, seconds"
    )
    print(
        f"{'arm':<9} {'children CPU':>13} {'server CPU':>11} {'search CPU':>11} "
        f"{'total CPU':>10} {'wall':>7}"
    )
    for arm, m in medians.items():
        print(
            f"{arm:<9} {m['children_cpu_s']:>13.2f} {m['server_cpu_s']:>11.2f} "
            f"{m['search_cpu_s']:>11.2f} {m['total_cpu_s']:>10.2f} {m['wall_s']:>7.1f}"
        )
    if "baseline" in medians:
        ratios = "  ".join(
            f"{m.split('_')[0]} {medians['hpo'][m] / medians['baseline'][m]:.2f}x" for m in MEASURES
        )
        print(f"hpo / baseline: {ratios}")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
