"""A JAX trial process's first Keras calls: with TensorFlow preloaded by the fork server (hpo)
or without.

On JAX and PyTorch, Keras imports TensorFlow where it is installed: `keras.utils.set_random_seed`
seeds it and `get_config` checks for its TensorShape, and each trial calls both (hpo seeds
each trial, and prices its epochs from the model's config). hpo's fork server imports it once
(`hpo.training.isolation.OTHER_BACKEND_PRELOAD`), so the trial processes forked from it start
with it. This runs `--children` processes as trials run, through `call_isolated` on a fresh
JAX fork server, each seeding Keras and reading a small model's config, in two arms, each in
its own Python process and in turn (`--repeats` rounds of bare, hpo): `bare` without the
preload, `hpo` with it. It prints each arm's wall seconds per child for those calls (median
over all its children), and the hpo/bare ratio.

Usage:
    python benchmarks/bench_backend_preload.py [--children 4] [--repeats 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _common import run_arms, write_json

ARMS = ("bare", "hpo")


def first_calls(seed: int) -> tuple[float, bool]:
    """In the child: wall seconds to seed Keras and read a small model's config, and whether
    TensorFlow was loaded before."""
    import keras

    preloaded = "tensorflow" in sys.modules
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.get_config()
    return time.perf_counter() - started, preloaded


def run_arm(arm: str, children: int) -> list[tuple[float, bool]]:
    """In this arm's own process: `children` trial processes from one fresh fork server."""
    from hpo.training import isolation

    if arm == "bare":
        isolation.OTHER_BACKEND_PRELOAD = []
    env = {"KERAS_BACKEND": "jax"}
    return [isolation.call_isolated(first_calls, seed, env=env) for seed in range(children)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the runs here")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.children)))
        return

    runs = run_arms(__file__, ARMS, args.repeats, "--children", str(args.children))
    medians = {arm: statistics.median(s for run in runs[arm] for s, _ in run) for arm in ARMS}
    loaded = {arm: all(p for run in runs[arm] for _, p in run) for arm in ARMS}
    print(f"{args.children} JAX trial processes per arm and round, {args.repeats} round(s)")
    header = "wall s to seed Keras, read a config (median)"
    print(f"{'arm':<6} {'TensorFlow preloaded':>20} {header:>46}")
    for arm in ARMS:
        print(f"{arm:<6} {'yes' if loaded[arm] else 'no':>20} {medians[arm]:>46.3f}")
    print(f"hpo / bare: {medians['hpo'] / medians['bare']:.3f}x")
    if args.json:
        write_json(args.json, runs)


if __name__ == "__main__":
    main()
