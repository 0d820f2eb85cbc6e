"""The project's exceptions: one base, subclasses only where the caller acts differently."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DiskFull",
    "HpoError",
    "OneValueOutput",
    "StoreError",
    "TrialProcessDied",
    "TrialTimedOut",
]


class HpoError(Exception):
    """Base of every error this project raises on purpose.

    Command-line entry points turn it into a one-line message and exit code 2,
    so the message must say what was wrong, the value received and the fix.
    """

    exit_code = 2


class ConfigError(HpoError):
    """A study file or a command-line flag is invalid; raised before any work starts."""


class OneValueOutput(ConfigError):
    """A model gives one value an example, and the labels hold three or more classes: hpo.Tuner
    reads such whole-number labels as regression targets instead (`hpo.Tuner.search`)."""


class DataError(HpoError):
    """The data set cannot be found or read."""


class StoreError(HpoError):
    """The study store (storage URL, study name or artifact store) is unusable."""


class TrialProcessDied(HpoError):
    """A trial's child process ended without reporting a result (killed, out of memory)."""


class TrialTimedOut(TrialProcessDied):
    """A trial's child process was still running at its deadline and was ended (it hung)."""


class DiskFull(HpoError):
    """A file could not be written: its disk is full. The search stops unless room came back.

    Attributes:
        path: The file that was being written.
        needed: About how many bytes it needed.
    """

    def __init__(self, message: str, path: str = "", needed: int = 0) -> None:
        # Only the message is an argument, so the error pickles from a trial's process with its
        # attributes (exceptions pickle their `args` and `__dict__`).
        super().__init__(message)
        self.path = path
        self.needed = needed
