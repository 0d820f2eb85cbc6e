"""NBSVM and a convolution: trained as one `nbconv` model, or apart and mixed afterwards.

Asks whether a distillation student of two paths can hold what an IMDB ensemble gains from
mixing `nbsvm` and convolutional members (issue 21's goal). Each family is trained on the
study's training labels, as a trial trains (`hpo.training.runner.fit_best_epoch`: the study's
epochs, patience, learning-rate cut, best epoch by validation accuracy restored), with its
hand-made defaults and one shared vocabulary, length, batch size and learning rate. Printed, all
on the validation split (nothing reads the test set): each model's accuracy and log-loss, each
of the `nbconv` model's two paths alone, and the apart-trained `nbsvm` and `sepconv1d` mixed
with the NBSVM share from 0.4 to 1.

Usage:
    python benchmarks/bench_two_paths.py [--study studies/imdb.toml] [--data PATH]
        [--nb-share 0.5] [--max-epochs 8]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import benchmark_parser, family_defaults, prepare, run_main

from hpo import metrics
from hpo.config import load_study_config
from hpo.training.callbacks import EpochClock
from hpo.training.runner import EVAL_BATCH, fit_best_epoch, prepare_model

SHARED = {"vocab_size": 40000, "seq_len": 1600, "learning_rate": 3e-3, "batch_size": 64}
SEED = 42


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--nb-share", type=float, default=0.5, help="nbconv's NBSVM share")
    parser.add_argument("--max-epochs", type=int, default=8, help="the most epochs of each")
    args = parser.parse_args()
    return run_main(lambda: _run(args))


def _run(args: Any) -> None:
    import tempfile

    import keras

    config = load_study_config(Path(args.study))
    task, folder = prepare(config, args.data)
    predictions = {}
    with tempfile.TemporaryDirectory(prefix="bench-two-paths-") as scratch:
        for family in ("nbconv", "nbsvm", "sepconv1d"):
            params = {
                **family_defaults(task, family),
                **SHARED,
                "nb_share": args.nb_share,
                **task.build_context(folder),
            }
            data = task.trial_data(folder, params)
            keras.utils.set_random_seed(SEED)
            model, interface = prepare_model(task, params, data)
            started = time.perf_counter()
            history = fit_best_epoch(
                model,
                task.dataset(
                    data.x_train,
                    interface.encode_labels(data.y_train, 2),
                    params["batch_size"],
                    SEED,
                    bucketed=interface.bucketed,
                ),
                task.dataset(
                    data.x_val,
                    interface.encode_labels(data.y_val, 2),
                    EVAL_BATCH,
                    None,
                    bucketed=interface.bucketed,
                ),
                monitor=task.monitor,
                training=config.training,
                checkpoint=Path(scratch) / f"{family}.keras",
                clock=EpochClock(),
                epochs=args.max_epochs,
            )
            seconds = time.perf_counter() - started
            predictions[family] = _predict(task, model, data.x_val)
            curve = [round(v, 4) for v in history.history[task.monitor]]
            print(
                f"{family}: {_scores(data.y_val, predictions[family])}; validation accuracy "
                f"by epoch {curve}; {seconds:.0f} s",
                flush=True,
            )
            if family == "nbconv":
                for path in ("nbsvm", "sepconv1d"):
                    alone = _predict(task, model.get_layer(path), data.x_val)
                    print(f"  its {path} path alone: {_scores(data.y_val, alone)}", flush=True)
    print("nbsvm and sepconv1d trained apart, mixed (the NBSVM share):")
    for share in np.linspace(0.4, 1.0, 13):
        mixed = share * predictions["nbsvm"] + (1 - share) * predictions["sepconv1d"]
        print(f"  {share:.2f}: {_scores(data.y_val, mixed)}")


def _predict(task: Any, model: Any, x: np.ndarray) -> np.ndarray:
    return metrics.as_probabilities(task.predict(model, x, bucketed=True))


def _scores(y: np.ndarray, p: np.ndarray) -> str:
    return f"accuracy {metrics.accuracy(y, p):.4f}, log-loss {metrics.log_loss(y, p):.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
