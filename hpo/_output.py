"""Standard output and error that take what hpo prints, in each process hpo starts or enters."""

from __future__ import annotations

import os
import sys

__all__ = ["usable_output"]


def usable_output() -> None:
    """Gives this process a `sys.stdout` and `sys.stderr` where Python started without them.

    A stream started closed (`2>&-`, some daemons and cron wrappers) is None in Python: its
    descriptor is given /dev/null (inheritable, as child processes write to it too), so that no
    file opened later takes its number (TensorFlow's C++ libraries write to descriptor 2), and
    what is printed there is dropped, as the caller asked. An open descriptor under a missing
    stream may be a file opened after the process started without it: the stream writes to
    /dev/null instead.
    """
    for descriptor, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(descriptor)
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the run)
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != descriptor:
                os.dup2(devnull, descriptor)
                os.close(devnull)
            os.set_inheritable(descriptor, True)
            stream = open(descriptor, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)
