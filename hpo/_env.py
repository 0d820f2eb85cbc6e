"""On/off switches read from the environment ($HPO_VERBOSE, $HPO_PROGRESS), read one way."""

from __future__ import annotations

import os

from hpo.errors import ConfigError

VERBOSE_VAR = "HPO_VERBOSE"
PROGRESS_VAR = "HPO_PROGRESS"

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """Whether the switch `$name` is on: 1, true, yes or on (any case); unset, empty, 0,
    false, no or off is off.

    Raises:
        ConfigError: `$name` holds anything else, which read as on or as off by accident
            (HPO_PROGRESS=0 turned the progress bar on).
    """
    text = os.environ.get(name, "").strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise ConfigError(
        f"${name} must be 1 (on) or 0 (off), or true/false, yes/no, on/off, got "
        f"{os.environ[name]!r}. Set it to 1 or 0, or unset it."
    )
