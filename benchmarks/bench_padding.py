"""Padding-free batches and training precision: seconds per epoch and validation accuracy.

Trains each family's default model on the default study's data (20,000 training and 5,000
validation reviews), same seed, in four ways: padded batches (every batch as wide as `seq_len`,
as before length bucketing) or length-bucketed batches cut to their longest review, each in
float32 and in mixed bfloat16. Each run is its own process. Prints one table: seconds of each
epoch, validation accuracy after the last, the share of computed positions that are real tokens,
and the speed-up of bucketing and of bfloat16 measured side by side.

Usage:
    python benchmarks/bench_padding.py [--study studies/imdb.toml] [--epochs 2] [--seq-len 600]
        [--families conv1d sepconv1d] [--precisions float32 mixed_bfloat16] [--data PATH]
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import benchmark_parser, family_defaults

from hpo.config import load_study_config
from hpo.study import search_space
from hpo.tasks import get_task, study_task
from hpo.training.isolation import call_isolated


def train(job: dict[str, Any]) -> dict[str, Any]:
    """One run in its own process: fit `epochs` epochs, time each, score validation."""
    import keras
    import numpy as np

    from hpo.data.batching import bucketed_dataset, computed_tokens, predict_bucketed, token_lengths
    from hpo.training.callbacks import EpochClock
    from hpo.training.runner import build_model

    keras.mixed_precision.set_global_policy(job["precision"])
    task = get_task(job["task"])
    params = job["params"]
    data = task.trial_data(job["folder"], params)
    keras.utils.set_random_seed(0)
    model = build_model(task, params)
    timer = EpochClock()

    batch = params["batch_size"]
    lengths = token_lengths(data.x_train)
    width = data.x_train.shape[1]
    if job["bucketed"]:
        train_data: Any = bucketed_dataset(data.x_train, data.y_train, batch, seed=0)
        val_data: Any = bucketed_dataset(data.x_val, data.y_val, 512)
        computed = computed_tokens(lengths, batch, width)
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=job["epochs"],
            callbacks=[timer],
            verbose=0,
        )
        predictions = predict_bucketed(model, data.x_val)
    else:
        computed = len(lengths) * width
        model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            batch_size=batch,
            epochs=job["epochs"],
            callbacks=[timer],
            verbose=0,
        )
        predictions = model.predict(data.x_val, batch_size=512, verbose=0)
    accuracy = float(np.mean((predictions.reshape(-1) > 0.5) == data.y_val))
    return {
        "times": timer.durations,
        "val_accuracy": accuracy,
        "real": float(lengths.sum() / computed),
    }


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=600)
    parser.add_argument("--families", nargs="+", default=["conv1d", "sepconv1d"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    args = parser.parse_args()

    config = load_study_config(args.study)
    task = study_task(config)
    space = search_space(task, config.space)
    folder = call_isolated(functools.partial(task.prepare, config, args.data), space.shared)
    print(
        f"{'family':<10} {'batches':<9} {'precision':<15} {'epoch s':<16} "
        f"{'val_acc':<8} {'real tokens':<11}",
        flush=True,
    )
    results: dict[tuple[str, bool, str], dict[str, Any]] = {}
    for family in args.families:
        params = {**family_defaults(task, family), "seq_len": args.seq_len}
        for bucketed in (False, True):
            for precision in args.precisions:
                job = {
                    "task": config.task,
                    "folder": folder,
                    "params": params,
                    "epochs": args.epochs,
                    "bucketed": bucketed,
                    "precision": precision,
                }
                result = call_isolated(train, job)
                results[family, bucketed, precision] = result
                times = " / ".join(f"{t:.1f}" for t in result["times"])
                print(
                    f"{family:<10} {'bucketed' if bucketed else 'padded':<9} {precision:<15} "
                    f"{times:<16} {result['val_accuracy']:<8.4f} {result['real']:<11.1%}",
                    flush=True,
                )
    print("\nspeed-up (fastest epoch of each run, same family, same run):")
    base = args.precisions[0]
    for family in args.families:
        for precision in args.precisions:
            padded = min(results[family, False, precision]["times"])
            bucketed = min(results[family, True, precision]["times"])
            print(f"  {family:<10} {precision:<15} bucketed vs padded: {padded / bucketed:.2f}x")
        for other in args.precisions[1:]:
            for bucketed in (False, True):
                a = min(results[family, bucketed, base]["times"])
                b = min(results[family, bucketed, other]["times"])
                kind = "bucketed" if bucketed else "padded"
                print(f"  {family:<10} {kind:<15} {other} vs {base}: {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
