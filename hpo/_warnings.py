"""Warnings shown, not raised, where the user's filters make them errors (PYTHONWARNINGS=error,
`python -W error`): in hpo's commands and its trial processes.

They run Keras, TensorFlow and NumPy, whose deprecation warnings (a NumPy 2 `__array__` notice
in Keras's saving) the user can neither fix nor silence one by one: raised, each ended a trial
after its training, or `hpo ensemble` after its evaluation. They are shown once each instead;
the other filters (hpo's, the libraries', the user's "ignore") stay as they are, in order. hpo
used as a library leaves the caller's filters alone: they are the caller's own.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

__all__ = ["warnings_not_errors"]


def warnings_not_errors() -> None:
    """Turns each "error" warning filter of this process into "default" (shown once)."""
    filters: list[Any] = list(warnings.filters)  # as filterwarnings took them
    if not any(action == "error" for action, *_ in filters):
        return
    warnings.resetwarnings()
    for action, message, category, module, lineno in filters:
        warnings.filterwarnings(
            "default" if action == "error" else action,
            _pattern(message),
            category,
            _pattern(module),
            lineno,
            append=True,
        )


def _pattern(value: re.Pattern[str] | str | None) -> str:
    # A filter holds a compiled expression, or a name that Python's own default filters match
    # exactly ("__main__").
    if value is None:
        return ""
    return value.pattern if isinstance(value, re.Pattern) else re.escape(value) + r"\Z"
