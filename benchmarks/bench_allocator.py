"""Trials' epochs with glibc's malloc as it is against hpo's (freed memory kept for reuse).

Trains each family's default model (as the study enqueues it) for a few epochs on the study's
data, each in its own process as a trial is, in two arms: malloc as glibc sets it
(`HPO_KEEP_FREED_MEMORY=0`) and as hpo sets a trial's process (`hpo.training.allocator`). The
arms run side by side, each on its own core, or with `--sequential` one after the other with
all cores (a family's two arms in turn, so that both see the same drift). Prints, per family
and arm, the seconds of each epoch (the first includes compiling), the fit's CPU seconds in
user space and in the kernel (all threads), its minor page faults and validation accuracy
(the same in both arms: the allocator changes no arithmetic), then each family's hpo/glibc
ratios of the steady epoch and of the CPU seconds.

Usage:
    python benchmarks/bench_allocator.py [--study studies/imdb.toml] [--train-size 4000]
        [--epochs 3] [--families conv1d sepconv1d] [--sequential] [--data PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import (
    benchmark_parser,
    family_defaults,
    prepared_study,
    read_json,
    run_pinned,
    train_default,
    write_json,
)

from hpo.training.allocator import KEEP_FREED_MEMORY_VAR
from hpo.training.isolation import call_isolated

# Each arm's value of HPO_KEEP_FREED_MEMORY in the trial processes it starts.
ARMS = {"glibc": "0", "hpo": "1"}


def default_job(study: tuple[Any, ...], family: str, epochs: int) -> dict[str, Any]:
    """`_common.train_default`'s job: `family`'s default for `epochs` epochs at the precision
    a trial would choose, on the study that `prepared_study` returns."""
    config, task, space, folder = study
    return {
        "config": config,
        "folder": folder,
        "params": family_defaults(task, family, space),
        "epochs": epochs,
        "precision": "auto",
    }


def run_arm(
    arm: str, args: argparse.Namespace, out: Path, families: list[str], study: tuple[Any, ...]
) -> None:
    """Trains each of `families`' default in its own process with the arm's malloc; adds the
    results to `out/<arm>.json` after each family. `study` is what `prepared_study` returns."""
    results: dict[str, Any] = read_json(out / f"{arm}.json") or {}
    for family in families:
        job = default_job(study, family, args.epochs)
        results[family] = call_isolated(train_default, job, env={KEEP_FREED_MEMORY_VAR: ARMS[arm]})
        write_json(out / f"{arm}.json", results)


def report(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Prints each family's arms and the hpo/glibc ratios; returns what it printed."""
    arms = {arm: read_json(out / f"{arm}.json") or {} for arm in ARMS}
    print(
        f"{'family':<10} {'malloc':<6} {'epoch s (1st compiles)':<26} {'user s':>7} "
        f"{'kernel s':>8} {'faults':>10} {'val_acc':>8}"
    )
    for family in args.families:
        for arm in ARMS:
            result = arms[arm].get(family)
            if result is None:
                print(f"{family:<10} {arm:<6} missing (the arm failed)")
                continue
            times = " / ".join(f"{t:.1f}" for t in result["times"])
            print(
                f"{family:<10} {arm:<6} {times:<26} {result['cpu_user']:>7.1f} "
                f"{result['cpu_kernel']:>8.1f} {result['minor_faults']:>10,} "
                f"{result['val_accuracy']:>8.4f}"
            )
    print("\nhpo / glibc: steady epoch (fastest after the first), CPU seconds, kernel seconds")
    for family in args.families:
        glibc, hpo = arms["glibc"].get(family), arms["hpo"].get(family)
        if glibc is None or hpo is None or min(len(glibc["times"]), len(hpo["times"])) < 2:
            continue
        steady = min(hpo["times"][1:]) / min(glibc["times"][1:])
        cpu = (hpo["cpu_user"] + hpo["cpu_kernel"]) / (glibc["cpu_user"] + glibc["cpu_kernel"])
        kernel = hpo["cpu_kernel"] / max(glibc["cpu_kernel"], 1e-9)
        print(f"  {family:<10} epoch {steady:.2f}x  CPU {cpu:.2f}x  kernel {kernel:.2f}x")
    return arms


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--train-size", type=int, default=4000, help="training examples (0: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=["conv1d", "sepconv1d"])
    parser.add_argument(
        "--sequential", action="store_true", help="one arm after the other, not side by side"
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        run_arm(args.arm, args, Path(args.out), args.families, prepared_study(args))
        return 0

    # Prepared once here, so that side-by-side arms read it from the cache and start together.
    study = prepared_study(args)
    with tempfile.TemporaryDirectory(prefix="bench-allocator-") as scratch:
        out = Path(scratch)
        argv = [sys.executable, __file__, *sys.argv[1:], "--out", scratch]
        if args.sequential:  # each family's arms one after the other, so both see the same drift
            for family in args.families:
                for arm in ARMS:
                    run_arm(arm, args, out, [family], study)
        else:
            run_pinned({arm: [*argv, "--arm", arm] for arm in ARMS})
        arms = report(args, out)
    if args.json:
        write_json(Path(args.json), arms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
