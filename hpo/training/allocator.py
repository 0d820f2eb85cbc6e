"""How to train one trial: its process keeps the memory it frees for its next batch.

glibc's malloc hands freed memory back to the kernel early: blocks over its mmap threshold
are unmapped on free, the main heap's free top is trimmed past 128 KiB, and a thread's heap
(TensorFlow's and PyTorch's CPU kernels allocate from their threads) is unmapped as soon as
it is empty. So each training step asks the kernel for its tensors' pages again, and the
kernel zeroes every one of them: measured in `benchmarks/bench_allocator.py`, the kernel took
a third to over half of a trial's CPU time on the 2-core machines of `benchmarks/RESULTS.md`.
A trial's process lives for one trial, so it may keep what it frees for the next step; what it
holds at its peak is unchanged.
"""

from __future__ import annotations

import ctypes
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["KEEP_FREED_MEMORY_VAR", "keep_freed_memory"]

KEEP_FREED_MEMORY_VAR = "HPO_KEEP_FREED_MEMORY"
_log = logging.getLogger(__name__)

# mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap (glibc's largest mmap threshold on 64 bits);
# larger ones are still mapped and returned on free.
_MMAP_THRESHOLD = 32 * 1024 * 1024
# The free top of the heap is returned to the kernel only past this much.
_TRIM_THRESHOLD = 1024 * 1024 * 1024
# Kept at the top of a heap when it shrinks: more than a thread's heap holds (64 MiB), so that
# an empty one is kept rather than unmapped. Memory asked for but never touched takes no RAM.
_TOP_PAD = 256 * 1024 * 1024
# The user's own malloc settings, which this leaves as they are.
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(environment: Mapping[str, str]) -> bool:
    """Sets this process's malloc to keep what it frees for reuse instead of returning it to the
    kernel: blocks up to 32 MiB each, a heap's free top up to 1 GiB, and threads' empty heaps.

    Left as it is where `environment` sets `HPO_KEEP_FREED_MEMORY=0`, where it sets malloc's
    own variables (`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES=glibc.malloc...`: the user's
    choice), or where the C library has no glibc `mallopt` (macOS, musl's is a no-op).

    Returns:
        Whether the settings took.
    """
    if environment.get(KEEP_FREED_MEMORY_VAR, "1") == "0":
        return False
    if any(name in environment for name in _USER_SETTINGS) or "glibc.malloc" in environment.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_TOP_PAD, _TOP_PAD),
    )
    took = all([mallopt(parameter, value) == 1 for parameter, value in settings])
    if not took:
        _log.debug("mallopt refused hpo's settings; malloc is left as it is")
    return took
