from __future__ import annotations

import ctypes
import platform
import resource

import pytest

from hpo.training.allocator import KEEP_FREED_MEMORY_VAR, keep_freed_memory
from hpo.training.isolation import call_isolated

_MIB = 1024 * 1024

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the malloc settings are glibc's (this test's CI machines run it)",
)


def faults_of_growing_blocks(_: object) -> int:
    """Minor page faults of writing and freeing blocks of 1, 2, ... 24 MiB, as a trial's
    growing tensors are: glibc's defaults map each block larger than any freed before and
    unmap it on free, so every one of its pages faults again."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for size in range(1, 25):
        block = libc.malloc(size * _MIB)
        ctypes.memset(block, 1, size * _MIB)
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_a_trials_process_keeps_the_memory_it_frees_for_its_next_blocks() -> None:
    pages = 300 * _MIB // resource.getpagesize()  # the 1 + ... + 24 MiB written
    glibc = call_isolated(faults_of_growing_blocks, None, env={KEEP_FREED_MEMORY_VAR: "0"})
    kept = call_isolated(faults_of_growing_blocks, None)
    assert glibc > 0.9 * pages  # each block's pages faulted in anew
    assert kept < 0.2 * glibc  # the heap grew to the largest block, its pages reused


@pytest.mark.parametrize(
    "environment",
    [
        {KEEP_FREED_MEMORY_VAR: "0"},
        {"MALLOC_TOP_PAD_": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
    ],
)
def test_the_users_own_malloc_settings_or_opting_out_leave_malloc_as_it_is(
    environment: dict[str, str],
) -> None:
    assert keep_freed_memory(environment) is False


@glibc_only
def test_glibc_takes_the_settings() -> None:
    # In a child, so that this process's malloc stays as it was.
    assert call_isolated(keep_freed_memory, {}) is True
