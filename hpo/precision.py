"""How to train one trial: which floating-point precision, per family and hardware.

`auto` picks mixed bfloat16 only where `benchmarks/bench_padding.py` measured it faster at equal
accuracy: on a GPU always (mixed float16 before compute capability 8), on a CPU only for the
families listed for its instruction set below. Everywhere else it is float32.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Precision", "cpu_bf16_kind", "global_policy", "resolve_precision"]

# The GPU's compute capability comes from the loaded backend: `hpo.backend.gpu_capability`.


class Precision(enum.Enum):
    """Training precision of a study's trials."""

    AUTO = "auto"
    FLOAT32 = "float32"
    MIXED_BFLOAT16 = "mixed_bfloat16"
    MIXED_FLOAT16 = "mixed_float16"


# Families for which mixed bfloat16 was measured faster at equal accuracy, by CPU kind (see
# benchmarks/RESULTS.md, "Padding and precision"). With AMX (Intel Sapphire Rapids and later)
# bf16 halved conv1d's epoch and slowed sepconv1d's (54 vs 102 s; 43 vs 34 s); with AVX512-BF16
# alone (AMD Zen 4) it made conv1d 1.4x faster and left sepconv1d unchanged. Depthwise
# convolutions gain nothing and pay for the casts.
CPU_BF16_FAMILIES: dict[str, frozenset[str]] = {
    "amx": frozenset({"conv1d"}),
    "avx512_bf16": frozenset({"conv1d"}),
}


@functools.cache
def cpu_bf16_kind() -> str | None:
    """'amx' or 'avx512_bf16' when the CPU has bfloat16 matrix or vector instructions, else None."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return None
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def resolve_precision(requested: Precision, family: str, gpu_capability: int | None) -> Precision:
    """The precision a trial of `family` trains in.

    Args:
        requested: The study's setting; anything but AUTO is returned as it is.
        family: The trial's model family.
        gpu_capability: The GPU's compute capability major version, or None on a CPU.
    """
    if requested is not Precision.AUTO:
        return requested
    if gpu_capability is not None:
        return Precision.MIXED_BFLOAT16 if gpu_capability >= 8 else Precision.MIXED_FLOAT16
    kind = cpu_bf16_kind()
    if kind is not None and family in CPU_BF16_FAMILIES.get(kind, frozenset()):
        return Precision.MIXED_BFLOAT16
    return Precision.FLOAT32


@contextlib.contextmanager
def global_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy set to `name` inside, and its `floatx` to float32 (losses
    and metrics take their dtype from it, and a `keras.json` may say "float16"); both restored
    after, for in-process callers."""
    import keras

    previous, floatx = keras.mixed_precision.global_policy(), keras.config.floatx()
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.mixed_precision.set_global_policy(previous)
