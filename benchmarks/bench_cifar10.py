"""The image headline: hpo's CIFAR-10 search and ensemble against the book's fixed model.

Both get the same CIFAR-10 training / validation split (the study's prepared arrays) and the
same wall-clock budget (the study's, 2 hours for `studies/cifar10.toml`, or `--budget`). Each
leg resumes where an earlier run stopped and redoes nothing that is finished.

- hpo: `hpo.search.run_search` on the study within its budget, then `hpo.ensemble.build_ensemble`
  of the top 5 trials into `<study>/ensemble-top5/` (skipped while its report is newer than the
  study's last trial).
- book: the SeparableConv2D convnet of "Deep Learning with Python" (2nd ed., section 9.3) as the
  book adapts it to CIFAR-10: 64x64x3 images (resized inside the model from the stored 32 px),
  flip / rotation 0.1 / zoom 0.2 augmentation, blocks of 32 to 512 filters, RMSprop at its
  default learning rate, batch 32, in the precision hpo trains a sepconv2d trial in. Trained
  once, epoch after epoch until another epoch would end past the budget, keeping the checkpoint of
  best validation accuracy; the last epoch is checkpointed too, so a rerun continues from it.
  The best checkpoint is then evaluated once on the test split. Everything lives in
  `<study>/book/`: budget intervals, training state, checkpoints, `result.json`.
- epochs: steady-state seconds per epoch of each image family's defaults (Adam 1e-3, batch 64,
  native size, flips) and of the book model (RMSprop, batch 32), float32 against mixed bfloat16,
  side by side on the first `--images` prepared training images, also extrapolated to the whole
  training split (`<study>/epoch-times.json`; delete it to measure again).
- report (always runs last): a markdown table of what is stored, the epoch times, published
  CIFAR-10 results for reference, and the command lines that produced it.

Budget time counts the seconds a leg's runs were alive, data preparation included, so a pause
between resumed runs does not count. The hpo and book legs run side by side, each pinned to its
own CPU core, so both see the same machine at the same time (`--sequential` runs them one after
the other, each on every core); the epochs leg runs after them. The test split is read only by
the two final evaluations (the ensemble's and the book model's best checkpoint); the search, the
book model's training and the epoch timings never read it.

Usage:
    python benchmarks/bench_cifar10.py [--study studies/cifar10.toml]
        [--legs hpo book epochs report] [--budget 2h] [--data PATH] [--images 5000]
        [--sequential]
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _common as bench
import keras
import optuna
from bench_image_epoch import PRECISIONS, compile_classifier, step_seconds

from hpo import metrics
from hpo.backend import gpu_capability
from hpo.budget import format_duration, parse_duration, spent_seconds
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.data import provenance
from hpo.errors import ConfigError, HpoError
from hpo.models import conv2d, sepconv2d
from hpo.precision import resolve_precision
from hpo.training.callbacks import EpochClock
from hpo.training.runner import EVAL_BATCH, global_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from hpo.config import StudyConfig
    from hpo.tasks import Task

LEGS = ("hpo", "book", "epochs", "report")
IMAGE_TASKS = ("cifar10", "images")
ENSEMBLE_FOLDER = f"ensemble-top{bench.TOP}"
BOOK_FOLDER = "book"
STATE_FILE = "state.json"
RESULT_FILE = "result.json"
BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
EPOCHS_FILE = "epoch-times.json"
COMMANDS_FILE = "bench-cifar10-commands.json"
# The book's model, as its CIFAR-10 adaptation feeds it: 64x64x3 images, 10 classes.
BOOK_SIZE = 64
BOOK_BLOCKS = (32, 64, 128, 256, 512)
BOOK_BATCH = 32
BOOK_DROPOUT = 0.5
# Far more epochs than any budget holds: the budget ends the book model's training.
BOOK_MAX_EPOCHS = 10_000
# The families' default trial: the training defaults hpo enqueues first.
FAMILY_BATCH = 64
FAMILY_LEARNING_RATE = 1e-3
SCORES = ("accuracy", "top3_accuracy", "log_loss", "ece")
REFERENCES = [
    (0.79, "Keras example cifar10_cnn (4 conv layers, RMSprop, 50 epochs with augmentation)"),
    # He et al. 2016, Table 6: 8.75% test error.
    (0.9125, "ResNet-20 (He et al. 2016, 164 epochs with flips and 4 px shifts)"),
]


def prepared_data(config: StudyConfig, data: str | None) -> tuple[Task, Path]:
    """The study's image task and its prepared (cached) train/validation arrays' folder.

    Raises:
        ConfigError: The study's task is not an image task.
    """
    if config.task not in IMAGE_TASKS:
        raise ConfigError(
            f"this benchmark needs an image study (task one of {list(IMAGE_TASKS)}), got task "
            f"{config.task!r}. Use --study studies/cifar10.toml."
        )
    return bench.prepare(config, data)


# --- hpo leg ---------------------------------------------------------------------------------


# --- book leg --------------------------------------------------------------------------------


def build_book_model(classes: int, image_shape: tuple[int, ...]) -> keras.Model:
    """The book's mini-Xception for uint8 images of `image_shape`, resized to 64x64 inside.

    Preprocessing and the softmax stay float32 under a mixed policy, as in hpo's families.
    """
    from keras import layers

    inputs = keras.Input(shape=image_shape, dtype="uint8", name="image")
    # Rescaling is the cast from uint8; resizing and augmentation are linear in the pixel
    # values, so scaling first (the book scales after augmenting) gives the same images.
    x = layers.Rescaling(1.0 / 255, dtype="float32", name="rescale")(inputs)
    x = layers.Resizing(BOOK_SIZE, BOOK_SIZE, dtype="float32", name="resize")(x)
    x = layers.RandomFlip("horizontal", dtype="float32", name="augment_flip")(x)
    x = layers.RandomRotation(0.1, dtype="float32", name="augment_rotate")(x)
    x = layers.RandomZoom(0.2, dtype="float32", name="augment_zoom")(x)
    x = layers.Conv2D(32, 5, use_bias=False, name="stem")(x)
    for block, size in enumerate(BOOK_BLOCKS):
        residual = x
        x = layers.BatchNormalization(name=f"block{block}_bn1")(x)
        x = layers.Activation("relu", name=f"block{block}_relu1")(x)
        x = layers.SeparableConv2D(
            size, 3, padding="same", use_bias=False, name=f"block{block}_conv1"
        )(x)
        x = layers.BatchNormalization(name=f"block{block}_bn2")(x)
        x = layers.Activation("relu", name=f"block{block}_relu2")(x)
        x = layers.SeparableConv2D(
            size, 3, padding="same", use_bias=False, name=f"block{block}_conv2"
        )(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        residual = layers.Conv2D(
            size, 1, strides=2, padding="same", use_bias=False, name=f"block{block}_project"
        )(residual)
        x = layers.Add(name=f"block{block}_residual")([x, residual])
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(BOOK_DROPOUT, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="book_sepconv2d")


class BookEpochs(keras.callbacks.Callback):
    """After each epoch: checkpoints the model, records the epoch and keeps the clock's file.

    Runs after the best-checkpoint callback, so the state never names a best epoch whose
    checkpoint is not on disk yet.
    """

    def __init__(self, folder: Path, state: dict[str, Any], clock: bench.LegClock) -> None:
        super().__init__()
        self.folder, self.state, self.clock = folder, state, clock
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self.started
        partial = self.folder / f".{LAST_MODEL}.tmp.keras"
        self.model.save(partial)
        os.replace(partial, self.folder / LAST_MODEL)
        accuracy = float(logs["val_accuracy"])
        best = self.state["best_val_accuracy"]
        if best is None or accuracy > best:
            self.state.update(best_val_accuracy=accuracy, best_epoch=epoch + 1)
        self.state["epochs"] = epoch + 1
        self.state["history"].append(
            {
                "epoch": epoch + 1,
                **{k: round(float(v), 6) for k, v in logs.items()},
                "seconds": round(seconds, 1),
            }
        )
        bench.write_json(self.folder / STATE_FILE, self.state)
        print(
            f"book epoch {epoch + 1:>3}: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} "
            f"val_accuracy {accuracy:.4f} val_loss {logs['val_loss']:.4f} {seconds:.0f}s "
            f"[{format_duration(self.clock.spent())} of {format_duration(self.clock.budget)}]",
            flush=True,
        )


def run_book(config: StudyConfig, data: str | None, folder: Path) -> None:
    """Trains (or resumes) the book model within the budget, then tests its best checkpoint.

    Raises:
        ConfigError: The study has no budget and none was given.
        HpoError: No epoch finished.
    """
    budget = bench.require_budget(config.budget, "the book leg needs", "2h")
    with bench.leg_budget(folder, budget, "Book model") as clock:
        # Data preparation counts against the budget, as it does for hpo (cached if hpo ran).
        task, data_folder = prepared_data(config, data)
        check_same_data(config, data, task, data_folder)
        if clock.running:
            train_book(config, task, data_folder, folder, clock)
        else:
            print(f"The book model has spent its budget of {format_duration(budget)}.")
    evaluate_book(config, data, task, data_folder, folder)


def check_same_data(config: StudyConfig, data: str | None, task: Task, data_folder: Path) -> None:
    """Refuses prepared data other than the arrays hpo's trials saw (when hpo has run)."""
    study = bench.load_hpo_study(config)
    if study is not None:
        source = task.locate(config, data)
        provenance.check_fingerprint(
            study, task.fingerprint(data_folder), source, "training the book model"
        )


def train_book(
    config: StudyConfig, task: Task, data_folder: Path, folder: Path, clock: bench.LegClock
) -> None:
    """Trains epochs until another would end past the budget, from the last checkpoint if any."""
    state: dict[str, Any] = bench.read_json(folder / STATE_FILE) or {
        "epochs": 0,
        "best_epoch": None,
        "best_val_accuracy": None,
        "history": [],
    }
    precision = resolve_precision(config.training.precision, "sepconv2d", gpu_capability())
    state["precision"] = precision.value
    data = task.trial_data(data_folder, {})
    # A new shuffle order per resumed run: the dataset's seed would repeat epoch 1's otherwise.
    seed = config.sampler.seed + state["epochs"]
    keras.utils.set_random_seed(seed)
    deadline = EpochClock([(time.time() + clock.left(), "the budget")])
    with global_policy(precision.value):
        if state["epochs"] and (folder / LAST_MODEL).is_file():
            model = keras.models.load_model(folder / LAST_MODEL)
            print(f"Resuming the book model after epoch {state['epochs']}.", flush=True)
        else:
            state.update(epochs=0, best_epoch=None, best_val_accuracy=None, history=[])
            context = task.build_context(data_folder)
            model = build_book_model(context["classes"], tuple(context["image_shape"]))
            # The book's compile: RMSprop at Keras's default learning rate.
            compile_classifier(model, keras.optimizers.RMSprop())
        model.fit(
            task.dataset(data.x_train, data.y_train, BOOK_BATCH, seed),
            validation_data=task.dataset(data.x_val, data.y_val, EVAL_BATCH, None),
            epochs=BOOK_MAX_EPOCHS,
            initial_epoch=state["epochs"],
            callbacks=[
                keras.callbacks.ModelCheckpoint(
                    folder / BEST_MODEL,
                    monitor="val_accuracy",
                    mode="max",
                    save_best_only=True,
                    initial_value_threshold=state["best_val_accuracy"],
                ),
                BookEpochs(folder, state, clock),
                deadline,
            ],
            shuffle=False,  # the dataset shuffles, each epoch anew
            verbose=0,
        )


def evaluate_book(
    config: StudyConfig, data: str | None, task: Task, data_folder: Path, folder: Path
) -> None:
    """Evaluates the best checkpoint once on the test split; stores the result.

    Raises:
        HpoError: No epoch finished, so there is no checkpoint.
    """
    state = bench.read_json(folder / STATE_FILE)
    if not state or not state["best_epoch"] or not (folder / BEST_MODEL).is_file():
        raise HpoError(f"the book model finished no epoch in {folder}. Give it a larger --budget.")
    stored = bench.read_json(folder / RESULT_FILE)
    if stored and stored["best_epoch"] == state["best_epoch"]:
        print(f"The book model's best epoch {state['best_epoch']} was already tested.")
        return
    model = keras.models.load_model(folder / BEST_MODEL)
    labels, probabilities, summary = bench.evaluate_on_test(config, data, task, data_folder, model)
    classes = task.class_names(data_folder)
    summary["per_class_accuracy"] = {
        name: round(value, 6)
        for name, value in zip(
            classes, metrics.per_class_accuracy(labels, probabilities, len(classes)), strict=True
        )
    }
    result = {
        "best_epoch": state["best_epoch"],
        "epochs": state["epochs"],
        "val_accuracy": state["best_val_accuracy"],
        "precision": state.get("precision"),
        "test_examples": len(labels),
        "test": summary,
    }
    bench.write_json(folder / RESULT_FILE, result)
    print(
        f"Book model, best epoch {state['best_epoch']} of {state['epochs']} (val_accuracy "
        f"{state['best_val_accuracy']:.4f}): test accuracy {summary['accuracy']:.4f}.",
        flush=True,
    )


# --- epochs leg ------------------------------------------------------------------------------


class TimedModel(NamedTuple):
    """A model the epochs leg times, with the optimizer and batch size it trains with."""

    build: Callable[[], keras.Model]
    optimizer: Callable[[], keras.optimizers.Optimizer]
    batch_size: int


def timed_models(classes: int, image_shape: tuple[int, ...]) -> dict[str, TimedModel]:
    """The two families' defaults, as hpo's first trials train them, and the book model."""
    shared = {"classes": classes, "image_shape": image_shape, "upscale": 1, "augment": "flip"}

    def adam() -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(FAMILY_LEARNING_RATE)

    return {
        "sepconv2d": TimedModel(
            lambda: sepconv2d.build({**sepconv2d.DEFAULTS, **shared}), adam, FAMILY_BATCH
        ),
        "conv2d": TimedModel(
            lambda: conv2d.build({**conv2d.DEFAULTS, **shared}), adam, FAMILY_BATCH
        ),
        "book": TimedModel(
            lambda: build_book_model(classes, image_shape), keras.optimizers.RMSprop, BOOK_BATCH
        ),
    }


def run_epochs(config: StudyConfig, data: str | None, images: int, path: Path) -> None:
    """Times one epoch of each model in each precision on the first `images` training images.

    Raises:
        ConfigError: Too few images for two steps of the largest batch.
    """
    stored = bench.read_json(path)
    if stored and stored["images"] == images:
        print(f"Epoch times for {images} images are in {path}; delete it to measure again.")
        return
    if images < 2 * FAMILY_BATCH:
        raise ConfigError(
            f"--images must be at least {2 * FAMILY_BATCH} (two steps of batch {FAMILY_BATCH} "
            f"after the traced first one), got {images}. Use the default, 5000."
        )
    task, data_folder = prepared_data(config, data)
    data_arrays = task.trial_data(data_folder, {})
    x, y = data_arrays.x_train[:images], data_arrays.y_train[:images]
    full = len(data_arrays.x_train)
    context = task.build_context(data_folder)
    rows = []
    models = timed_models(context["classes"], tuple(context["image_shape"]))
    print(epoch_table_header(len(x), full), flush=True)
    for name, (build, optimizer, batch) in models.items():
        for precision in PRECISIONS:
            with global_policy(precision):
                keras.utils.set_random_seed(0)
                # One epoch, in the order the dataset shuffles.
                dataset = task.dataset(x, y, batch, 0)
                step, cpu = step_seconds(build(), optimizer(), dataset, epochs=1, shuffle=False)
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "batch_size": batch,
                    "epoch_seconds": round(step * math.ceil(len(x) / batch), 2),
                    "full_epoch_seconds": round(step * math.ceil(full / batch), 1),
                    "full_epoch_cpu_seconds": round(cpu * math.ceil(full / batch), 1),
                }
            )
            print(format_epoch_row(rows[-1]), flush=True)
    bench.write_json(path, {"images": len(x), "train_images": full, "rows": rows})


def epoch_table_header(images: int, full: int) -> str:
    """The heading and header of the epoch-times table."""
    header = ["model", "precision", "batch", "s/epoch", f"s/epoch ({full:,})"]
    return (
        f"\nSeconds per epoch, steady state (the traced first step left out), on the first "
        f"{images:,} training images and extrapolated to all {full:,}:\n\n"
        + bench.markdown_table([*header, f"CPU-s/epoch ({full:,})"], [])
    )


def format_epoch_row(row: Mapping[str, Any]) -> str:
    """One markdown table row of the epoch times."""
    return (
        f"| {row['model']} | {row['precision']} | {row['batch_size']} | "
        f"{row['epoch_seconds']:.1f} | {row['full_epoch_seconds']:.1f} | "
        f"{row['full_epoch_cpu_seconds']:.1f} |"
    )


# --- report ----------------------------------------------------------------------------------

ROWS = [
    "budget",
    "budget used",
    "trials complete / pruned / failed",
    "epochs run",
    "best validation accuracy",
    "best single: test acc / top-3 / log-loss / ECE",
    f"top-{bench.TOP} ensemble: test acc / top-3 / log-loss / ECE",
]


def hpo_column(study: optuna.Study, ensemble_dir: Path) -> dict[str, str]:
    """hpo's rows of the table; the budget is the one its last search ran with."""
    budget = (study.user_attrs.get("hpo_config") or {}).get("budget")
    trials = study.get_trials(deepcopy=False)
    rows = {
        "budget": bench.duration_or(budget, "none"),
        "budget used": format_duration(spent_seconds(study)),
        "trials complete / pruned / failed": " / ".join(map(str, bench.state_counts(trials))),
        "epochs run": f"{sum(t.user_attrs.get(Attr.EPOCHS, 0) for t in trials)} (all trials)",
    }
    return rows | bench.result_rows(study, ensemble_dir, SCORES, ROWS[4:7])


def book_column(folder: Path) -> dict[str, str] | None:
    """The book model's rows of the table (None if it never ran); the budget is its last run's."""
    state = bench.read_json(folder / STATE_FILE)
    if not state:
        return None
    budget, spent = bench.stored_budget(folder)
    rows = {
        "budget": bench.duration_or(budget, "none"),
        "budget used": format_duration(spent),
        "trials complete / pruned / failed": "- (one fixed model)",
        "epochs run": f"{state['epochs']} ({state.get('precision', '?')})",
        f"top-{bench.TOP} ensemble: test acc / top-3 / log-loss / ECE": "- (one model)",
    }
    if state["best_epoch"]:
        rows["best validation accuracy"] = (
            f"{state['best_val_accuracy']:.4f} (epoch {state['best_epoch']})"
        )
    result = bench.read_json(folder / RESULT_FILE)
    if result:
        rows["best single: test acc / top-3 / log-loss / ECE"] = (
            f"{bench.scores(result['test'], SCORES)} (epoch {result['best_epoch']})"
        )
    return rows


def print_report(config: StudyConfig, ensemble_dir: Path, book_dir: Path) -> None:
    """Prints the side-by-side markdown table, the epoch times, references and commands."""
    study = bench.load_hpo_study(config)
    result = bench.read_json(book_dir / RESULT_FILE) or {}
    examples = f", {result['test_examples']:,} test images" if result else ""
    print(
        f"\nCIFAR-10 headline: study {config.name!r} ({config.study_dir}){examples}; "
        f"{bench.machine_note()}:\n"
    )
    legs = {
        f"hpo (TPE, {config.pruner.kind.value} pruner, top-{bench.TOP} ensemble)": (
            hpo_column(study, ensemble_dir) if study else None
        ),
        "book SeparableConv2D (DLwP 9.3)": book_column(book_dir),
    }
    print(bench.comparison_table(ROWS, legs))
    epochs = bench.read_json(config.study_dir / EPOCHS_FILE)
    if epochs:
        print(epoch_table_header(epochs["images"], epochs["train_images"]))
        for row in epochs["rows"]:
            print(format_epoch_row(row))
    bench.print_references("CIFAR-10", REFERENCES)
    commands = (bench.read_json(config.study_dir / COMMANDS_FILE) or {}).get("commands", [])
    if commands:
        print("\nCommands run:\n\n```")
        print("\n".join(commands))
        print("```")


def record_command(config: StudyConfig, command: str) -> None:
    """Adds the command line to the study's list of benchmark commands, once."""
    path = config.study_dir / COMMANDS_FILE
    commands = (bench.read_json(path) or {}).get("commands", [])
    if command not in commands:
        config.study_dir.mkdir(parents=True, exist_ok=True)
        bench.write_json(path, {"commands": [*commands, command]})


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen legs, then prints the report; returns the exit code."""
    parser = bench.benchmark_parser(
        __doc__,
        "studies/cifar10.toml",
        "CIFAR-10 folder or archive (default: where the study's search read it, else "
        "$HPO_CIFAR10_PATH)",
    )
    bench.add_leg_arguments(parser, LEGS)
    parser.add_argument(
        "--images", type=int, default=5000, help="training images the epochs leg times"
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given = sys.argv[1:] if argv is None else argv

    def run() -> None:
        config = load_study_config(args.study)
        if args.budget:
            config = config.with_overrides(budget=parse_duration(args.budget, "--budget"))
        ensemble_dir = config.study_dir / ENSEMBLE_FOLDER
        book_dir = config.study_dir / BOOK_FOLDER
        if set(args.legs) - {"report"} and not args.arm:
            record_command(config, bench.command_line(__file__, given))
        # Where hpo's search read its data, unless given: the book must read the same arrays.
        study = bench.load_hpo_study(config)
        data = args.data or (provenance.recorded_source(study) if study else None)
        legs = list(args.legs)
        if {"hpo", "book"} <= set(legs) and not args.sequential:
            bench.run_legs_pinned(__file__, given, ("hpo", "book"))
            legs = [leg for leg in legs if leg not in ("hpo", "book")]
        if "hpo" in legs:
            # The progress bar only on a terminal: in a log (side by side) it would flood it.
            bench.run_hpo_leg(config, data, ensemble_dir, progress=sys.stderr.isatty())
        if "book" in legs:
            run_book(config, data, book_dir)
        if "epochs" in legs:
            run_epochs(config, data, args.images, config.study_dir / EPOCHS_FILE)
        if args.arm:
            return  # one leg of a side-by-side run; the parent prints the report
        print_report(config, ensemble_dir, book_dir)

    return bench.run_main(run)


if __name__ == "__main__":
    sys.exit(main())
