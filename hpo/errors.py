"""The project's exceptions: one base, subclasses only where the caller acts differently."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ConfigError",
    "DataError",
    "DiskFull",
    "HpoError",
    "OneValueOutput",
    "OtherData",
    "ReturnsObjective",
    "SearchStopped",
    "StoreError",
    "TrialProcessDied",
    "TrialTimedOut",
    "WiderOutput",
    "kerastuner_outcome",
    "kerastuner_signals",
]

# KerasTuner's errors that stop a search (`keras_tuner.errors`), by class name.
FATAL_KINDS = ("FatalError", "FatalValueError", "FatalTypeError", "FatalRuntimeError")


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


class WiderOutput(ConfigError):
    """A classifier's output has more units than the labels have classes (ids up to the
    largest label): hpo.Tuner takes the units as the classes, some of which the data lacks, as
    Keras and KerasTuner train such a model (`hpo.Tuner.search`).

    Attributes:
        units: The output's units, one a class.
    """

    def __init__(self, message: str, units: int = 0) -> None:
        super().__init__(message)  # the message only: it pickles with `units` (see DiskFull)
        self.units = units


class ReturnsObjective(ConfigError):
    """A hypermodel's `fit` returns the value to rank its trial by, and hpo.Tuner was given no
    objective: as KerasTuner does (its `DefaultObjective`), the search minimizes that value
    instead (`hpo.Tuner.search`)."""


class OtherData(ConfigError):
    """The data given differ from those the study's trials saw (`hpo.data.provenance`).

    Attributes:
        fingerprint: The given data's fingerprint.
        recorded: The fingerprint of the data the study's trials saw.
    """

    def __init__(self, message: str, fingerprint: str = "", recorded: str = "") -> None:
        super().__init__(message)  # the message only: it pickles with its attributes (DiskFull)
        self.fingerprint = fingerprint
        self.recorded = recorded


class SearchStopped(ConfigError):
    """The user's code raised KerasTuner's `FatalError` (or a subclass) in a trial: the search
    stops, as KerasTuner's does; `hpo.Tuner.search` raises KerasTuner's error of that kind.

    Attributes:
        kind: The KerasTuner class, one of `FATAL_KINDS`.
    """

    def __init__(self, message: str, kind: str = "FatalError") -> None:
        super().__init__(message)  # the message only: it pickles with `kind` (see DiskFull)
        # Read back from a study's store: one of KerasTuner's names, never another.
        self.kind = kind if kind in FATAL_KINDS else "FatalError"


def kerastuner_outcome(exc: BaseException, source: str) -> Exception | None:
    """What a trial makes of KerasTuner's signals, raised by the user's code (`source`, such as
    "family 'm': its build"); None for any other exception.

    `FailedTrialError` (these values cannot train: a model too large, say) prunes the trial
    rather than failing it, so that TPE ranks them among the worst and samples elsewhere, and a
    run of them does not stop the search as failures in a row would. A `FatalError` (or a
    subclass) stops the search: `SearchStopped`. Found by class name, without importing
    KerasTuner.
    """
    for cls in type(exc).__mro__:
        if not cls.__module__.startswith("keras_tuner"):
            continue
        if cls.__name__ == "FailedTrialError":
            import optuna

            return optuna.TrialPruned(f"{source} rejected these values ({exc})")
        if cls.__name__ in FATAL_KINDS:
            return SearchStopped(
                f"{source} raised keras_tuner.errors.{cls.__name__} ({exc}); the search stops, "
                f"as KerasTuner's does.",
                cls.__name__,
            )
    return None


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


@contextlib.contextmanager
def kerastuner_signals(source: str) -> Iterator[None]:
    """Raises what a trial makes of KerasTuner's signals from the code run inside
    (`kerastuner_outcome`, `source` naming that code); any other exception passes as it is."""
    try:
        yield
    except Exception as exc:
        outcome = kerastuner_outcome(exc, source)
        if outcome is None:
            raise
        raise outcome from exc
