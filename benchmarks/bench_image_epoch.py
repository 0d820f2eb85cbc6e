"""Seconds per epoch of the image families' defaults, float32 against mixed bfloat16.

Decodes the first N + N/5 training images per class of the CIFAR-10 JPEG archive with hpo's
reader (streaming the tarball; the test folder is never read), the first N of each class by file
name to train on and the others as validation, and
trains each family's DEFAULTS (Adam at 1e-3, batch 64, seed 0) at float32 and at mixed bfloat16
side by side in one run. Prints steady-state seconds per epoch (the first step, which traces the
graph, left out), the same extrapolated to 45,000 images, validation accuracy after the last
epoch, and the bf16/float32 time ratio per family. On a shared machine the CPU seconds (all
threads together) are steadier than the wall-clock ones.

Usage:
    python benchmarks/bench_image_epoch.py [--data PATH] [--images 5000] [--epochs 1]
        [--augment none|flip|flip_translate] [--upscale 1|2]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import Stopwatch

from hpo.data.images import read_split
from hpo.models import conv2d, sepconv2d

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10  # CIFAR-10's
BATCH_SIZE = 64
FULL_TRAIN = 45_000
PRECISIONS = ("float32", "mixed_bfloat16")


def load_train_images(
    path: Path, train_per_class: int, val_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `train_per_class` + `val_per_class` images met of each class of train/.

    Returns:
        (x_train, y_train, x_val, y_val): uint8 images [n, 32, 32, 3] and int32 labels, each
        split shuffled (seed 0).
    """
    wanted = train_per_class + val_per_class
    images = read_split(path, "train", limit_per_class=wanted)
    counts = np.bincount(images.y, minlength=len(images.classes))
    short = {c: int(n) for c, n in zip(images.classes, counts, strict=True) if n < wanted}
    if short:
        raise SystemExit(f"{path} has fewer than {wanted} training images for {short}.")
    # Ordered by class, then by file name: an image's rank within its class picks its split.
    rank = np.arange(len(images.y)) - np.searchsorted(images.y, images.y)
    splits = []
    for part in (rank < train_per_class, rank >= train_per_class):
        order = np.random.default_rng(0).permutation(int(part.sum()))
        splits += [images.x[part][order], images.y[part][order]]
    return splits[0], splits[1], splits[2], splits[3]


class StepClock:
    """Times training steps after the first (which traces the graph)."""

    def __init__(self) -> None:
        self.first: Stopwatch | None = None
        self.last = (0.0, 0.0)
        self.steps = 0

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that records the end of every training step."""
        import keras

        clock = self

        class _Clock(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if clock.first is None:
                    clock.first = Stopwatch()
                else:
                    clock.steps += 1
                    clock.last = clock.first.seconds()

        return _Clock()

    def seconds_per_step(self) -> tuple[float, float]:
        """Mean wall-clock and CPU (all threads) seconds of a step after the first."""
        assert self.first is not None and self.steps
        return self.last[0] / self.steps, self.last[1] / self.steps


def compile_classifier(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compiles for integer labels and softmax outputs, as the book and hpo's families do."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def step_seconds(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, *args: Any, **kwargs: Any
) -> tuple[float, float]:
    """Compiles and trains the model (`model.fit`'s arguments); returns the mean wall-clock and
    CPU seconds of a step after the first."""
    compile_classifier(model, optimizer)
    clock = StepClock()
    model.fit(*args, callbacks=[clock.callback()], verbose=0, **kwargs)
    return clock.seconds_per_step()


def run_one(
    family: Any,
    precision: str,
    data: tuple[np.ndarray, ...],
    args: argparse.Namespace,
) -> tuple[float, float, float]:
    """Trains one family's defaults; returns wall and CPU seconds per step, val accuracy."""
    import keras

    from hpo.training.runner import global_policy

    x_train, y_train, x_val, y_val = data
    with global_policy(precision):
        keras.utils.set_random_seed(0)
        params = {
            **family.DEFAULTS,
            "classes": CLASSES,
            "image_shape": x_train.shape[1:],
            "upscale": args.upscale,
            "augment": args.augment,
        }
        model = family.build(params)
        step, cpu = step_seconds(
            model,
            keras.optimizers.Adam(1e-3),
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=args.epochs,
        )
        _, accuracy = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
    return step, cpu, float(accuracy)


def main() -> int:
    """Runs the benchmark and prints one line per family and precision."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10_jpg.tar.gz"))
    parser.add_argument("--images", type=int, default=5000, help="training images, all classes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--augment", default="none", choices=["none", "flip", "flip_translate"])
    parser.add_argument("--upscale", type=int, default=1, choices=[1, 2])
    args = parser.parse_args()
    per_class = max(1, args.images // CLASSES)
    started = time.perf_counter()
    data = load_train_images(Path(args.data), per_class, max(1, per_class // 5))
    print(
        f"decoded {len(data[0])} train + {len(data[2])} validation images "
        f"in {time.perf_counter() - started:.1f} s; batch {BATCH_SIZE}, {args.epochs} epoch(s), "
        f"augment {args.augment}, upscale {args.upscale}"
    )
    steps = math.ceil(len(data[0]) / BATCH_SIZE)
    full_steps = math.ceil(FULL_TRAIN / BATCH_SIZE)
    print(
        f"{'family':<10} {'precision':<15} {'s/epoch':>8} {'s/45k':>7} {'cpu-s/45k':>10} "
        f"{'val_acc':>8}"
    )
    for family in (sepconv2d, conv2d):
        name = family.__name__.rsplit(".", 1)[-1]
        seconds = {}
        for precision in PRECISIONS:
            step, cpu, accuracy = run_one(family, precision, data, args)
            seconds[precision] = step
            print(
                f"{name:<10} {precision:<15} {step * steps:>8.1f} {step * full_steps:>7.1f} "
                f"{cpu * full_steps:>10.1f} {accuracy:>8.3f}"
            )
        ratio = seconds["mixed_bfloat16"] / seconds["float32"]
        print(f"{name:<10} bf16/float32 time ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
