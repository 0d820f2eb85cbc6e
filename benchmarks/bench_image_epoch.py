"""Seconds per epoch of the image families' defaults, float32 against mixed bfloat16.

Decodes the first N training images per class of the CIFAR-10 JPEG archive (streaming the
tarball; the test folder is never read), plus N/5 further training images as validation, and
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
import io
import math
import os
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hpo.models import conv2d, sepconv2d

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (32, 32, 3)
BATCH_SIZE = 64
FULL_TRAIN = 45_000
PRECISIONS = ("float32", "mixed_bfloat16")


def load_train_images(
    path: Path, train_per_class: int, val_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `train_per_class` + `val_per_class` images of each class of cifar10/train/.

    Returns:
        (x_train, y_train, x_val, y_val): uint8 images [n, 32, 32, 3] and int32 labels.
    """
    from PIL import Image

    wanted = train_per_class + val_per_class
    images: dict[str, list[np.ndarray]] = {name: [] for name in CLASSES}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[:2] != ["cifar10", "train"] or not member.isfile():
                continue
            label = parts[2]
            if len(images[label]) >= wanted:
                continue
            data = tar.extractfile(member)
            assert data is not None
            with Image.open(io.BytesIO(data.read())) as image:
                images[label].append(np.asarray(image.convert("RGB"), dtype=np.uint8))
            if all(len(v) >= wanted for v in images.values()):
                break
    short = {name: len(v) for name, v in images.items() if len(v) < wanted}
    if short:
        raise SystemExit(f"{path} has fewer than {wanted} training images for {short}.")
    splits = []
    for begin, end in ((0, train_per_class), (train_per_class, wanted)):
        x = np.stack([img for name in CLASSES for img in images[name][begin:end]])
        y = np.repeat(np.arange(len(CLASSES), dtype=np.int32), end - begin)
        order = np.random.default_rng(0).permutation(len(x))
        splits += [x[order], y[order]]
    return splits[0], splits[1], splits[2], splits[3]


class StepClock:
    """Times training steps after the first (which traces the graph)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.first_cpu = 0.0
        self.last_cpu = 0.0
        self.steps = 0

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that records the end of every training step."""
        import keras

        clock = self

        class _Clock(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                now, cpu = time.perf_counter(), time.process_time()
                if clock.first is None:
                    clock.first, clock.first_cpu = now, cpu
                else:
                    clock.steps += 1
                clock.last, clock.last_cpu = now, cpu

        return _Clock()

    def seconds_per_step(self) -> tuple[float, float]:
        """Mean wall-clock and CPU (all threads) seconds of a step after the first."""
        assert self.first is not None and self.steps
        return (
            (self.last - self.first) / self.steps,
            (self.last_cpu - self.first_cpu) / self.steps,
        )


def run_one(
    family: Any,
    precision: str,
    data: tuple[np.ndarray, ...],
    args: argparse.Namespace,
) -> tuple[float, float, float]:
    """Trains one family's defaults; returns wall and CPU seconds per step, val accuracy."""
    import keras

    x_train, y_train, x_val, y_val = data
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        params = {
            **family.DEFAULTS,
            "classes": len(CLASSES),
            "image_shape": IMAGE_SHAPE,
            "upscale": args.upscale,
            "augment": args.augment,
        }
        model = family.build(params)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        clock = StepClock()
        model.fit(
            x_train,
            y_train,
            batch_size=BATCH_SIZE,
            epochs=args.epochs,
            callbacks=[clock.callback()],
            verbose=0,
        )
        _, accuracy = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return (*clock.seconds_per_step(), float(accuracy))


def main() -> int:
    """Runs the benchmark and prints one line per family and precision."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10_jpg.tar.gz"))
    parser.add_argument("--images", type=int, default=5000, help="training images, all classes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--augment", default="none", choices=["none", "flip", "flip_translate"])
    parser.add_argument("--upscale", type=int, default=1, choices=[1, 2])
    args = parser.parse_args()
    per_class = max(1, args.images // len(CLASSES))
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
