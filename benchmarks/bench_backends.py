"""Seconds per epoch of each text family's default on each Keras backend, in one run.

Trains each family's default model (as the default study enqueues it) for a few epochs on the
study's data, once per backend (TensorFlow, JAX, PyTorch), each run in its own process with
`KERAS_BACKEND` set, batched and compiled exactly as hpo's trials are (length buckets; the width
ladder on a backend that compiles per shape; `precision = "auto"`). Prints the seconds of every
epoch (the first includes compiling the model's programs), validation accuracy after the last,
and each backend's steady epoch (the fastest after the first) against the first backend's,
measured in this one run. On a GPU machine it runs on the GPU; `benchmarks/gpu_check.sh` uses it.

Usage:
    python benchmarks/bench_backends.py [--study studies/imdb.toml] [--train-size 0]
        [--epochs 2] [--families conv1d sepconv1d ngram] [--backends tensorflow jax torch]
        [--data PATH] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import benchmark_parser, family_defaults, train_default

from hpo.backend import Backend, backend_environment, visible_gpus
from hpo.config import load_study_config
from hpo.study import search_space
from hpo.tasks import study_task
from hpo.training.isolation import call_isolated


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--train-size", type=int, default=0, help="training reviews (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--families", nargs="+", default=["conv1d", "sepconv1d", "ngram"])
    parser.add_argument("--backends", nargs="+", default=[b.value for b in Backend])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    config = load_study_config(args.study)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, train_size=args.train_size)
    )
    task = study_task(config)
    space = search_space(task, config.space)
    started = time.perf_counter()
    folder = call_isolated(functools.partial(task.prepare, config, args.data), space.shared)
    print(f"data prepared in {time.perf_counter() - started:.0f} s", flush=True)
    gpus = visible_gpus()
    print(
        f"{'family':<10} {'backend':<11} {'device':<22} {'precision':<15} "
        f"{'epoch s (1st compiles)':<24} {'val_acc':<8}",
        flush=True,
    )
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for family in args.families:
        params = family_defaults(task, family, space)
        for name in args.backends:
            backend = Backend(name)
            job = {
                "config": dataclasses.replace(
                    config, training=dataclasses.replace(config.training, backend=backend)
                ),
                "folder": folder,
                "params": params,
                "epochs": args.epochs,
                "precision": args.precision,
            }
            env = backend_environment(backend, gpus[0] if gpus else None)
            try:
                result = call_isolated(train_default, job, env=env)
            except Exception as exc:  # a backend that fails is reported, the others still run
                result = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                print(f"{family:<10} {name:<11} failed: {result['error']}", flush=True)
                results[family, name] = result
                continue
            results[family, name] = result
            times = " / ".join(f"{t:.1f}" for t in result["times"])
            print(
                f"{family:<10} {name:<11} {result['device']:<22} {result['precision']:<15} "
                f"{times:<24} {result['val_accuracy']:<8.4f}",
                flush=True,
            )
    base = args.backends[0]
    print(f"\nsteady epoch (fastest after the first) against {base}, and first-epoch overhead:")
    for family in args.families:
        reference = results.get((family, base), {})
        for name in args.backends:
            result = results[family, name]
            if "error" in result or len(result["times"]) < 2:
                continue
            steady = min(result["times"][1:])
            overhead = result["times"][0] - steady
            ratio = (
                f"{min(reference['times'][1:]) / steady:.2f}x"
                if "times" in reference and len(reference["times"]) > 1
                else "-"
            )
            print(
                f"  {family:<10} {name:<11} steady {steady:6.1f} s  speed vs {base}: "
                f"{ratio:<6}  first epoch {overhead:+.1f} s"
            )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({f"{f}/{b}": r for (f, b), r in results.items()}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
