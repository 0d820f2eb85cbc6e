"""Standard output and error that take what hpo prints, in each process hpo starts or enters."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["descriptors_to", "dropped", "optuna_logs", "usable_output"]


def usable_output(*, own_descriptors: bool = False) -> None:
    """Gives this process a `sys.stdout` and `sys.stderr` where Python started without them.

    A stream started closed (`2>&-`, pythonw, some daemons and cron wrappers) is None in
    Python, and what writes to it unchecked fails (`faulthandler`, a child process reporting
    its own error). A closed descriptor is given /dev/null (inheritable, as child processes
    write to it too), so that no file opened later takes its number (TensorFlow's C++
    libraries write to descriptor 2), and what is printed there is dropped, as the caller
    asked.

    Args:
        own_descriptors: Open descriptors 1 and 2 hold this process's own output (a trial's
            log, which they were pointed at): a missing stream writes to its descriptor.
            Default False: to /dev/null, as an open one may be a file opened after the
            process started without it.
    """
    for descriptor, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(descriptor)
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != descriptor:
                os.dup2(devnull, descriptor)
                os.close(devnull)
            os.set_inheritable(descriptor, True)
        else:
            if not own_descriptors:
                setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
                continue
        # Line-buffered, as Python's own stderr is: a process killed mid-line loses no more.
        stream = open(descriptor, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)


@contextlib.contextmanager
def dropped(descriptor: int) -> Iterator[None]:
    """What this process writes to `descriptor` inside the block, Python's streams and C++
    libraries alike, goes to /dev/null; a descriptor that is closed stays so."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with descriptors_to(devnull, (descriptor,)):
            yield
    finally:
        os.close(devnull)


@contextlib.contextmanager
def descriptors_to(target: int, descriptors: Sequence[int]) -> Iterator[None]:
    """Points the process's file `descriptors` (1 and 2: what native code such as TensorFlow's
    C++ libraries writes to) at the open file `target` inside, and back after; what Python's
    streams hold is written out on either side. One that is closed (`2>&-`, where hpo runs as
    a library) is left as it is."""
    _flush()
    saved: dict[int, int] = {}
    try:
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                saved[descriptor] = os.dup(descriptor)
        for descriptor in saved:
            os.dup2(target, descriptor)
        yield
    finally:
        _flush()
        for descriptor, kept in saved.items():
            os.dup2(kept, descriptor)
            os.close(kept)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


@contextlib.contextmanager
def optuna_logs(*, shown: bool) -> Iterator[None]:
    """Optuna's INFO lines ("Trial 3 finished with value ...") hidden unless `shown`, and
    shown if it is (whatever an earlier call left: `hpo.cli` sets WARNING), then restored: hpo
    prints its own line for each trial."""
    import optuna

    previous = optuna.logging.get_verbosity()
    if shown:
        optuna.logging.set_verbosity(min(previous, optuna.logging.INFO))
    else:
        optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
