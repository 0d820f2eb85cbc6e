"""Reading the JSON files hpo writes (reports, caches' records, checkpoints' configurations),
which anything may have changed since: a file that does not parse is a ValueError, whatever
made it not parse."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["parse_json", "read_json"]


def parse_json(text: str | bytes) -> Any:
    """`json.loads(text)`, with JSON nested deeper than Python's parser goes (`[` * 100000) a
    ValueError, as other JSON that does not parse is, not a RecursionError.

    Raises:
        ValueError: The text is not JSON (`json.JSONDecodeError`), or nested too deep.
    """
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError(f"JSON nested deeper than Python's parser goes ({exc})") from exc


def read_json(path: Path) -> Any:
    """The JSON file at `path`, parsed (`parse_json`).

    Raises:
        OSError: It cannot be read.
        ValueError: It is not UTF-8 JSON, or nested too deep.
    """
    return parse_json(path.read_text(encoding="utf-8"))
