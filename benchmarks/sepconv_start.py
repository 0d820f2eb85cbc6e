"""Does the separable-conv family learn? Validation accuracy per epoch of two settings.

Trains, on the smoke study's subset, a plain SeparableConv1D twin of the classic IMDB convnet
(2 blocks of 32 filters, kernel 7, rmsprop at 1e-3) and the `sepconv1d` family's default
(residual connections, Adam at 3e-3) as the study enqueues it (fitted into the study's space),
same seed, and prints validation accuracy per epoch.

Usage:
    python benchmarks/sepconv_start.py [--study studies/imdb-smoke.toml] [--epochs 3] [--data PATH]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import benchmark_parser, family_defaults, prepare, scratch_study

from hpo.config import load_study_config
from hpo.space import fit_value
from hpo.study import search_space

TWIN = {
    "blocks": 2,
    "filters": 32,
    "kernel_size": 7,
    "branches": 1,
    "batch_norm": False,
    "residual": False,
    "dense_units": 0,
    "dropout": 0.0,
    "optimizer": "rmsprop",
    "learning_rate": 1e-3,
}


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb-smoke.toml")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import keras

    from hpo.training.runner import build_model

    with scratch_study(load_study_config(args.study), "hpo-sepconv-") as config:
        task, folder = prepare(config, args.data)
        space = search_space(task, config.space)
        values = family_defaults(task, "sepconv1d")
        default = {n: fit_value(d, values[n]) for n, d in space.shared_and("sepconv1d").items()}
        for name, params in (
            ("classic twin, rmsprop 1e-3", {**default, **TWIN}),
            ("family default", default),
        ):
            keras.utils.set_random_seed(7)
            data = task.trial_data(folder, params)
            model = build_model(task, {**params, "family": "sepconv1d"})
            history = model.fit(
                data.x_train,
                data.y_train,
                validation_data=(data.x_val, data.y_val),
                epochs=args.epochs,
                batch_size=params["batch_size"],
                verbose=0,
            )
            accuracies = " ".join(f"{v:.3f}" for v in history.history["val_accuracy"])
            print(f"{name:<28} val_accuracy per epoch: {accuracies}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
