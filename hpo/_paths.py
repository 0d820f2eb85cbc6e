"""Paths as users write them: `~` and `~user` made the home folder, read one way."""

from __future__ import annotations

from pathlib import Path

from hpo.errors import ConfigError

__all__ = ["expand_user"]


def expand_user(value: str | Path, where: str) -> Path:
    """`value` with a leading `~` or `~user` made that home folder; other paths as they are.

    Args:
        value: The path as given.
        where: What gave it, for the message ("--data", "the study file's data.path").

    Raises:
        ConfigError: It starts with the home folder of a user this machine does not know (or
            `~` where no home folder is set), which Python reports with a bare RuntimeError.
    """
    try:
        return Path(value).expanduser()
    except RuntimeError as exc:
        raise ConfigError(
            f"{where} is {str(value)!r}, whose home folder cannot be found ({exc}). Give the path "
            f"in full, or fix the user's name after the '~'."
        ) from exc
