"""A trial's `fit` with the training step's state built first (hpo) against Keras building it.

Keras's TensorFlow trainer creates the compiled metrics' and the optimizer's variables while it
traces the first training step, and TensorFlow, seeing variables created, traces the step
again. A trial builds that state on two training rows before `fit`
(`hpo.training.runner.build_step_state`), and the step is traced once. This trains each
family's default model (as the study enqueues it) on the study's data in both arms, each run
in its own process as a trial is, one after the other and in turn (`--repeats` rounds of
keras, hpo), and prints per family and arm: the step's traces, each epoch's seconds (the
first includes tracing), the fit's CPU seconds (user and kernel, all threads, the build
included) and validation accuracy (the same in both arms: the build changes no weights), then
each family's hpo/keras ratio of the first epoch and of the CPU seconds, medians over rounds.

Usage:
    python benchmarks/bench_step_state.py [--study studies/imdb.toml] [--train-size 4000]
        [--epochs 2] [--families conv1d sepconv1d ngram] [--repeats 2] [--data PATH]
        [--json FILE]
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import benchmark_parser, prepared_study, train_default, write_json
from bench_allocator import default_job

from hpo.training.isolation import call_isolated

ARMS = ("keras", "hpo")


def report(families: list[str], runs: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Prints each family's runs and its hpo/keras ratios (medians over rounds)."""
    print(
        f"{'family':<10} {'arm':<6} {'traces':>6} {'epoch s (1st traces)':<22} {'CPU s':>7} "
        f"{'val_acc':>8}"
    )
    for family in families:
        for arm in ARMS:
            for result in runs[family][arm]:
                times = " / ".join(f"{t:.2f}" for t in result["times"])
                cpu = result["cpu_user"] + result["cpu_kernel"]
                print(
                    f"{family:<10} {arm:<6} {result['train_traces']:>6} {times:<22} {cpu:>7.2f} "
                    f"{result['val_accuracy']:>8.4f}"
                )
    print("\nhpo / keras, medians over rounds: first epoch, CPU seconds of the fit")
    for family in families:
        by_arm = runs[family]

        def median(arm: str, value: Any, by_arm: Any = by_arm) -> float:
            return statistics.median(value(result) for result in by_arm[arm])

        first = median("hpo", lambda r: r["times"][0]) / median("keras", lambda r: r["times"][0])
        cpu = median("hpo", lambda r: r["cpu_user"] + r["cpu_kernel"]) / median(
            "keras", lambda r: r["cpu_user"] + r["cpu_kernel"]
        )
        print(f"  {family:<10} first epoch {first:.2f}x  CPU {cpu:.2f}x")


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--train-size", type=int, default=4000, help="training examples (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--families", nargs="+", default=["conv1d", "sepconv1d", "ngram"])
    parser.add_argument("--repeats", type=int, default=2, help="rounds of both arms")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    study = prepared_study(args)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        f: {a: [] for a in ARMS} for f in args.families
    }
    for _ in range(args.repeats):
        for family in args.families:
            for arm in ARMS:
                job = {**default_job(study, family, args.epochs), "build_step_state": arm == "hpo"}
                runs[family][arm].append(call_isolated(train_default, job))
    report(args.families, runs)
    if args.json:
        write_json(Path(args.json), runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
