"""A command's stop (Ctrl-C, SIGTERM), remembered where a library it calls swallows it."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["clear", "interrupt", "raise_if_asked", "signals_held", "stoppable"]

_F = TypeVar("_F", bound="Callable[..., Any]")

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


def stoppable(function: _F) -> _F:
    """Makes Ctrl-C (a notebook's Stop) stop `function`, a call of hpo's Python API that loads
    or writes models, even where a library swallows it: TensorFlow's and JAX's finalizers
    (`AtomicFunction.__del__`, XLA's garbage-collection callback) print "Exception ignored in
    ..." and go on, and h5py's file driver catches it, so the cell ran to its end.

    Inside, Ctrl-C is handled as an hpo command handles it (`interrupt`: raised and
    remembered), and a stop that was swallowed is raised again at the next model load
    (`raise_if_asked`) or as the call returns. Where Ctrl-C is not Python's default handling
    (an hpo command's own handler, a nested call, another thread), the call is left as it is.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            return function(*args, **kwargs)
        clear()
        signal.signal(signal.SIGINT, interrupt)
        try:
            result = function(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            asked = _asked
            clear()  # a later call unwrapped (a model load) must not raise it again
        if asked is not None:
            raise _stop(asked)
        return result

    return call  # type: ignore[return-value]


def _stop(signum: int) -> KeyboardInterrupt:
    # Ctrl-C is said as Python says it; another signal is named.
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Holds Ctrl-C, SIGTERM and SIGHUP inside, delivering them after, as they were handled.

    Around `publish` and what records the new output elsewhere (the study's record of its
    ensemble), so that both change or neither does. Nested holds deliver to the outer one.

    Python runs its handlers in the main thread, between two of its steps, so a signal that
    arrives inside runs none there; in another thread nothing is held (no handler of Python's
    runs in it). Blocking the signals instead (`signal.pthread_sigmask`) would hold them in
    this thread only: another one (a backend's) takes them, and Python's handler still runs
    here at the next step.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = {}
    for number in _HELD:
        before = signal.getsignal(number)
        if before is None:  # set outside Python: it cannot be put back
            continue
        signal.signal(number, lambda signum, _frame: arrived.append(signum))
        held[number] = before
    try:
        yield
    finally:
        for number, before in held.items():
            signal.signal(number, before)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


# The signals that stop a command part way and that `signals_held` holds.
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
