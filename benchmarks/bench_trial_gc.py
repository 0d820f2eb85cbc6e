"""Trial processes with what the fork server imported frozen for the garbage collector (hpo) or not.

A trial's process is forked from a fork server that has imported TensorFlow and Keras (some
470,000 Python objects). Each full garbage collection in the child walks all of them and writes
to each object's header, which copies the server's memory pages into the child. hpo's child
freezes them first (`gc.freeze()` in `hpo.training.isolation`), so that collections walk only
what the child makes. This runs, through `call_isolated` on a fresh fork server, the child
every search starts first: the check and costing of each family's default model
(`hpo.training.runner.estimate_epochs`: each is built, probed and priced, then Keras's session
cleared, which collects). Two arms, each in its own Python process and in turn (`--repeats`
rounds of unfrozen, hpo): `unfrozen` undoes the freeze (`gc.unfreeze()`) as the child starts,
as before; `hpo` keeps it. Per arm it prints the medians of the child's CPU seconds (all of its
process, from the fork), the seconds its garbage collections took, how many were full ones,
and its private memory at the end (`Private_Dirty`, the pages it wrote, the copies included);
then hpo/unfrozen ratios. `bench_search_cpu.py` measures whole searches.

Usage:
    python benchmarks/bench_trial_gc.py [--study studies/imdb-smoke.toml] [--train-size 2000]
        [--children 3] [--repeats 2] [--data PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import benchmark_parser, prepared_study, run_arms, write_json

from hpo.study import default_params
from hpo.training.isolation import call_isolated
from hpo.training.runner import EstimateJob, estimate_epochs

ARMS = ("unfrozen", "hpo")
MEASURES = ("cpu_s", "gc_s", "full_collections", "private_dirty_mb")


def private_dirty_mb() -> float | None:
    """This process's private memory that it wrote (MiB), or None where /proc cannot say."""
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measured(job: tuple[str, EstimateJob]) -> dict[str, Any]:
    """In the child: checks and costs the default models under the arm's collector, then
    measures the whole process."""
    import gc

    arm, work = job
    if arm == "unfrozen":
        gc.unfreeze()
    collected = {"gc_s": 0.0, "full_collections": 0}
    began: list[float] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
            return
        collected["gc_s"] += time.perf_counter() - began.pop()
        collected["full_collections"] += info["generation"] == 2

    gc.callbacks.append(watch)
    try:
        estimate_epochs(work)
    finally:
        gc.callbacks.remove(watch)
    spent = os.times()
    return {
        "cpu_s": spent.user + spent.system,
        **collected,
        "private_dirty_mb": private_dirty_mb(),
    }


def job(args: argparse.Namespace) -> EstimateJob:
    """The costing of the study's default models, on its data (prepared here once, then read
    from its cache)."""
    config, task, space, folder = prepared_study(args)
    return EstimateJob(config, folder, default_params(task, space))


def run_arm(arm: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """In this arm's own process: `--children` children, from one fork server."""
    work = job(args)
    return [call_isolated(measured, (arm, work)) for _ in range(args.children)]


def median(runs: list[list[dict[str, Any]]], measure: str) -> float:
    values = [child[measure] for run in runs for child in run]
    return statistics.median(v for v in values if v is not None)


def main() -> None:
    parser = benchmark_parser(__doc__, "studies/imdb-smoke.toml")
    parser.add_argument("--train-size", type=int, default=2000, help="training examples")
    parser.add_argument("--children", type=int, default=3, help="children per arm and round")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the arms in turn")
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args)))
        return

    job(args)  # the data prepared once, before either arm
    runs = run_arms(__file__, ARMS, args.repeats, *sys.argv[1:])
    print(f"{args.children} costing children per arm and round, {args.repeats} round(s); medians")
    print(f"{'arm':<9} {'CPU s':>7} {'GC s':>7} {'full GCs':>9} {'private MB':>11}")
    for arm in ARMS:
        cpu, gc_s, full, private = (median(runs[arm], m) for m in MEASURES)
        print(f"{arm:<9} {cpu:>7.2f} {gc_s:>7.3f} {full:>9.0f} {private:>11.0f}")
    cpu, private = (
        median(runs["hpo"], m) / median(runs["unfrozen"], m) for m in ("cpu_s", "private_dirty_mb")
    )
    print(f"hpo / unfrozen: CPU {cpu:.2f}x, private memory {private:.2f}x")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
