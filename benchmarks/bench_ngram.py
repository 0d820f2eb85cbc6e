"""What the bag-of-n-grams family adds to a finished study's ensemble, on validation data only.

Trains the `ngram` family's default once on the study's own training split (the study's
max_epochs and patience, best epoch restored, the same length-bucketed batches as trials), then
compares Caruana ensembles of the study's top-K trials without and with it. The weights are
cross-fitted: fitted on one half of the validation set and scored on the other, both ways, so the
figure is not the optimistic one of weights fitted and scored on the same examples. The test set
is not read.

Usage:
    python benchmarks/bench_ngram.py [--study studies/imdb.toml] [--top 5] [--data PATH]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from _common import benchmark_parser, family_defaults, prepare

from hpo import metrics
from hpo.command_options import open_study
from hpo.contract import fetch_predictions
from hpo.ensemble.selection import ranked_trials
from hpo.ensemble.weighting import Method, fit_weights
from hpo.store import open_artifact_store
from hpo.study import search_space
from hpo.training.callbacks import EpochClock


def crossfit(predictions: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and log-loss of Caruana weights fitted on one half, scored on the other."""
    order = np.random.default_rng(0).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    accuracy, log_loss = [], []
    for fit, score in (halves, halves[::-1]):
        weights = fit_weights(Method.CARUANA, predictions[:, fit], labels[fit]).weights
        blended = metrics.blend(weights, predictions[:, score])
        accuracy.append(metrics.accuracy(labels[score], blended))
        log_loss.append(metrics.log_loss(labels[score], blended))
    return float(np.mean(accuracy)), float(np.mean(log_loss))


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()

    config, study = open_study(args.study, None, None)
    task, folder = prepare(config, args.data)
    members = ranked_trials(study)[: args.top]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_artifact_store(config.artifact_location)
        study_predictions = [fetch_predictions(store, t, Path(tmp)) for t in members]

    family = task.families["ngram"]
    space = search_space(task, config.space)
    params = {**family_defaults(task, "ngram", space), **task.build_context(folder)}
    data = task.trial_data(folder, params)
    keras.utils.set_random_seed(config.sampler.seed)
    model = family.build(params)
    model.compile(keras.optimizers.Adam(params["learning_rate"]), "binary_crossentropy")
    clock = EpochClock()
    stop = keras.callbacks.EarlyStopping(
        patience=config.training.patience, restore_best_weights=True, monitor="val_loss"
    )
    model.fit(
        task.dataset(data.x_train, data.y_train, params["batch_size"], config.sampler.seed),
        validation_data=task.dataset(data.x_val, data.y_val, 512, None),
        epochs=config.training.max_epochs,
        callbacks=[clock, stop],
        shuffle=False,  # the dataset shuffles, each epoch anew
        verbose=0,
    )
    ngram = metrics.as_probabilities(task.predict(model, data.x_val)).astype(np.float32)
    y = data.y_val

    print(f"study {config.name!r}, validation set of {len(y):,}, top {len(members)} trials")
    print(f"{'model':<34} {'val acc':>8} {'val log-loss':>13}")
    for trial, p in zip(members, study_predictions, strict=True):
        name = f"trial {trial.number} ({trial.params.get('family')})"
        print(f"{name:<34} {metrics.accuracy(y, p):>8.4f} {metrics.log_loss(y, p):>13.4f}")
    print(
        f"{'ngram default (this run)':<34} {metrics.accuracy(y, ngram):>8.4f} "
        f"{metrics.log_loss(y, ngram):>13.4f}"
    )
    print(
        f"  {clock.count} epochs, {np.median(clock.durations):.1f} s median per epoch, "
        f"best epoch restored ({model.count_params():,} weights)"
    )
    without = crossfit(np.stack(study_predictions), y)
    with_ngram = crossfit(np.stack([*study_predictions, ngram]), y)
    print("\nCaruana ensemble, weights cross-fitted on validation halves:")
    print(f"  top {len(members)}:            acc {without[0]:.4f}  log-loss {without[1]:.4f}")
    print(f"  top {len(members)} + ngram:    acc {with_ngram[0]:.4f}  log-loss {with_ngram[1]:.4f}")
    print(
        f"  gain: {100 * (with_ngram[0] - without[0]):+.2f} accuracy points, "
        f"log-loss {with_ngram[1] / without[1] - 1:+.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
