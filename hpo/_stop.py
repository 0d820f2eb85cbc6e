"""A command's stop (Ctrl-C, SIGTERM), remembered where a library it calls swallows it."""

from __future__ import annotations

import signal

__all__ = ["clear", "interrupt", "raise_if_asked"]

# The signal that asked this command to stop; None while none has.
_asked: int | None = None


def interrupt(signum: int, _frame: object) -> None:
    """The handler of Ctrl-C and SIGTERM in an hpo command: raises KeyboardInterrupt, and
    remembers the stop for `raise_if_asked`, as h5py's file driver (which reads a `.keras`
    file's weights) catches the KeyboardInterrupt raised inside it, and the load goes on."""
    global _asked
    _asked = signum
    raise _stop(signum)


def raise_if_asked() -> None:
    """Raises KeyboardInterrupt again if the command was asked to stop; where a library may
    have swallowed the first one (after each model load, before an output is put in place)."""
    if _asked is not None:
        raise _stop(_asked)


def clear() -> None:
    """Forgets a stop asked of an earlier command run in this process (tests, a notebook)."""
    global _asked
    _asked = None


def _stop(signum: int) -> KeyboardInterrupt:
    # Ctrl-C is said as Python says it; another signal is named.
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
