"""What refitting the ensemble's members on training + validation data buys on the test set.

AutoGluon's `refit_full`, measured beside the ensemble as `hpo ensemble` builds it, which is
chosen and weighted on validation predictions (`hpo.ensemble.build.fit_ensemble`). Each member
with a weight is then trained again from scratch, in its own process, as its trial was (its
parameters, seed, precision and batch size), on the training and validation examples together,
for as many epochs as its trial's best epoch (the epoch its checkpoint holds, from the
validation accuracy it reported each epoch). There is no validation data left to cut the
learning rate on a plateau or to stop early, so the refit keeps its trial's starting learning
rate throughout. The refitted members take the original weights and temperature. Both
ensembles, and the best member before and after, are scored once on the test set, side by
side. The study is only read.

Usage:
    python benchmarks/bench_refit.py [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--data PATH] [--top 5] [--json rows.json]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from _common import (
    TOP,
    benchmark_parser,
    markdown_table,
    run_main,
    scores,
    write_json,
)

from hpo import metrics
from hpo.backend import compiles_per_shape, configure_threads, gpu_capability, keras_backend
from hpo.budget import format_duration
from hpo.command_options import open_study
from hpo.data.batching import use_width_ladder
from hpo.ensemble.build import fit_ensemble, predict_member
from hpo.errors import ConfigError
from hpo.precision import resolve_precision
from hpo.study import TRAINING_DEFAULTS
from hpo.tasks import study_task
from hpo.training.interface import member_model
from hpo.training.isolation import call_isolated
from hpo.training.runner import global_policy, prepare_model

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig

KEYS = ("accuracy", "log_loss", "ece")


@dataclass(frozen=True)
class RefitJob:
    """One member's refit: its study, data, trial and where the refitted model goes."""

    config: StudyConfig
    data_folder: Path
    trial: FrozenTrial
    epochs: int
    out: Path


@dataclass(frozen=True)
class Refitted:
    """A refitted member: where it is, what it learned from and how long that took."""

    path: Path
    examples: int
    seconds: float


def best_epoch(trial: FrozenTrial) -> int:
    """The epoch (from 1) whose weights the trial's checkpoint holds: its best reported value,
    the first of equals, as the checkpoint keeps only an improvement.

    Raises:
        ConfigError: The trial reported no epoch.
    """
    values = trial.intermediate_values
    if not values:
        raise ConfigError(f"trial {trial.number} reported no epoch, so it has no best epoch")
    best = max(values.values())
    return min(step for step, value in values.items() if value == best) + 1


def refit_member(job: RefitJob) -> Refitted:
    """Trains the member's model from scratch on training + validation data (in its own
    process, as a trial) for `job.epochs` epochs and saves it as its trial stored its member."""
    import keras

    configure_threads(0)
    use_width_ladder(compiles_per_shape(keras_backend(), gpu_capability() is not None))
    config, trial = job.config, job.trial
    task = study_task(config)
    params = {**trial.params, **task.build_context(job.data_folder)}
    data = task.trial_data(job.data_folder, params)
    precision = resolve_precision(config.training.precision, params["family"], gpu_capability())
    with global_policy(precision.value):
        keras.utils.set_random_seed(config.sampler.seed + trial.number)
        # A hypermodel builds from its trial's values as it sampled them.
        model, interface = prepare_model(
            task,
            params,
            data,
            optuna.trial.FixedTrial(dict(trial.params)),  # type: ignore[arg-type]
        )
        x = np.concatenate([data.x_train, data.x_val])
        y = np.concatenate([data.y_train, data.y_val])
        batch_size = params.get("batch_size") or TRAINING_DEFAULTS["batch_size"]
        started = time.perf_counter()
        model.fit(
            task.dataset(
                x,
                interface.encode_labels(y, int(params["classes"])),
                batch_size,
                config.sampler.seed + trial.number,
                bucketed=interface.bucketed,
            ),
            epochs=job.epochs,
            shuffle=False,  # the dataset shuffles, each epoch anew
            verbose=0,
        )
        seconds = time.perf_counter() - started
        member_model(model, interface.output, data.x_val[:1]).save(job.out)
    return Refitted(job.out, len(y), round(seconds, 1))


def score(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Test accuracy, log-loss and ECE."""
    summary = metrics.summary(y, probabilities)
    return {key: float(summary[key]) for key in KEYS}


def main() -> int:
    parser = benchmark_parser(__doc__, "studies/imdb.toml")
    parser.add_argument("--storage", help="storage URL, with --study-name, instead of --study")
    parser.add_argument("--study-name", help="study name, with --storage")
    parser.add_argument("--top", type=int, default=TOP, help=f"the most members (default {TOP})")
    parser.add_argument("--json", type=Path, help="also write the measured rows to this file")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_file = None if args.storage or args.study_name else args.study
    config, study = open_study(study_file, args.storage, args.study_name)
    with tempfile.TemporaryDirectory(prefix="hpo-refit-") as scratch:
        fitted = fit_ensemble(config, study, Path(scratch), top=args.top, data=args.data)
        task, members, weights = fitted.task, fitted.members, fitted.choice.weights
        refits: dict[int, Refitted] = {}
        for member, weight in zip(members, weights, strict=True):
            if weight > 0:
                trial = member.trial
                epochs = best_epoch(trial)
                print(
                    f"refitting trial {trial.number} ({trial.params['family']}, weight "
                    f"{weight:.2f}) for {epochs} epoch(s) ...",
                    flush=True,
                )
                refits[trial.number] = call_isolated(
                    refit_member,
                    RefitJob(
                        config,
                        fitted.data_folder,
                        trial,
                        epochs,
                        Path(scratch) / f"refit-{trial.number}.keras",
                    ),
                )
        # The test set, read once, for the final evaluation of both.
        import keras

        test = task.load_test(config, str(fitted.source), fitted.data_folder)
        original = fitted.member_predictions(test.x)
        refitted = original.copy()
        for i, member in enumerate(members):
            if member.trial.number in refits:
                model = keras.saving.load_model(refits[member.trial.number].path, compile=False)
                inputs = task.member_inputs(test.x, member.trial.params)
                refitted[i] = predict_member(task, model, inputs, member.trial)
    best = max(range(len(members)), key=lambda i: members[i].trial.value or 0.0)
    train_labels = task.trial_data(fitted.data_folder, members[0].trial.params).y_train
    rows: dict[str, Any] = {
        "original": {
            "ensemble": score(test.y, fitted.choice.predict(original)),
            "best_member": score(test.y, original[best]),
            "train_examples": len(train_labels),
        },
        "refit": {
            "ensemble": score(test.y, fitted.choice.predict(refitted)),
            "best_member": score(test.y, refitted[best]),
            "train_examples": next(iter(refits.values())).examples,
            "seconds": round(sum(r.seconds for r in refits.values()), 1),
            "members": {
                number: {"epochs": best_epoch(m.trial), "seconds": refits[number].seconds}
                for m in members
                if (number := m.trial.number) in refits
            },
        },
    }
    if args.json:
        write_json(args.json, rows)
    before, after = rows["original"], rows["refit"]
    trial = members[best].trial
    print(f"\nstudy {config.name!r}, ensemble of {len(refits)} weighted member(s):")
    print(
        markdown_table(
            ["test accuracy / log-loss / ECE", "as searched", "refit on training + validation"],
            [
                [
                    "ensemble (same weights)",
                    scores(before["ensemble"], KEYS),
                    scores(after["ensemble"], KEYS),
                ],
                [
                    f"best member (trial {trial.number}, {trial.params['family']})",
                    scores(before["best_member"], KEYS),
                    scores(after["best_member"], KEYS),
                ],
                ["training examples", before["train_examples"], after["train_examples"]],
                ["refit training time", "", format_duration(after["seconds"])],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
