"""Runs a benchmark's arms at the same time, each pinned to its own CPU core.

Two arms that share the machine side by side see the same load, the same thermal state and the
same noisy neighbours, which two runs one after the other do not. Each arm is a command line
started with its CPU affinity already set, so TensorFlow (and hpo's workers, which size their
threads from `os.sched_getaffinity`) use exactly that core.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def run_pinned(arms: Mapping[str, Sequence[str]]) -> None:
    """Starts each named command on its own core, waits for all, and fails if any failed.

    Raises:
        SystemExit: Fewer cores than arms, or an arm exited non-zero.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < len(arms):
        raise SystemExit(
            f"side by side needs {len(arms)} CPU cores, found {len(cpus)}; run with --sequential"
        )
    running = {}
    for (name, command), cpu in zip(arms.items(), cpus, strict=False):
        print(f"== {name} on CPU {cpu}", flush=True)
        running[name] = subprocess.Popen(
            list(command), preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu})
        )
    codes = {name: process.wait() for name, process in running.items()}
    failed = {name: code for name, code in codes.items() if code}
    if failed:
        raise SystemExit(f"arm(s) failed, exit codes: {failed}")


def run_legs_pinned(script: str, argv: Sequence[str], legs: Sequence[str]) -> None:
    """Reruns a benchmark script once per leg (`--legs LEG --arm`), each on its own core.

    The script takes `--legs` and a hidden `--arm` flag: run only that leg, print no report.
    """
    run_pinned({leg: [sys.executable, script, *argv, "--legs", leg, "--arm"] for leg in legs})


def cores_note() -> str:
    """The report header's words on CPU: how many cores, and that each leg had one of them."""
    return (
        f"{len(os.sched_getaffinity(0))} CPU cores (legs side by side, one core each, unless run "
        "with --sequential)"
    )
