"""The text encodings of users' files: UTF-16 told from UTF-8 with or without a byte-order mark,
and warnings that count the files or rows holding bytes of no encoding asked for."""

from __future__ import annotations

import codecs
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ENCODING",
    "UTF16_UNMARKED",
    "decode",
    "sniffed_encoding",
    "warn_undecodable",
    "warn_unmarked",
]

ENCODING = "utf-8"
UTF16_UNMARKED = ("utf-16-le", "utf-16-be")
_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# UTF-16 without a byte-order mark is told from a file's first bytes: at least this share of
# its characters have a NUL byte on one side, and at most this share on the other.
_SNIFF = 4096
_UTF16_SHARE = 0.3
_UTF16_OTHERS = 0.05
_log = logging.getLogger(__name__)


def decode(
    data: bytes, encoding: str, name: str, undecodable: list[str], unmarked: list[str]
) -> str:
    """A file's text; its name joins `undecodable` if bytes of it were not `encoding`, and
    `unmarked` if it was read as UTF-16 without a byte-order mark."""
    read_as = sniffed_encoding(data, encoding)
    if read_as != encoding and read_as in UTF16_UNMARKED:
        unmarked.append(name)
    try:
        return data.decode(read_as)
    except UnicodeDecodeError:
        undecodable.append(name)
        return data.decode(read_as, errors="replace")


def sniffed_encoding(head: bytes, encoding: str) -> str:
    """`encoding`, or UTF-16 where UTF-8 is asked for and the file (`head`: its first bytes, or
    all of them) is UTF-16: it begins with UTF-16's byte-order mark (Excel's "Unicode text",
    Notepad's "Unicode"), or, without one, a NUL byte stands beside most characters, always on
    the same side ("utf-16-le" or "utf-16-be"): UTF-16 spells every character below U+0100 so,
    and UTF-8 text holds no such run of NULs. UTF-8's own mark is left out."""
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):  # by any of its aliases
        return encoding
    if head[:2] in _UTF16_MARKS:
        return "utf-16"
    return _utf16_unmarked(head[:_SNIFF]) or "utf-8-sig"


def _utf16_unmarked(head: bytes) -> str | None:
    pairs = len(head) // 2
    first, second = head[0 : 2 * pairs : 2].count(0), head[1 : 2 * pairs : 2].count(0)
    for nuls, others, codec in ((second, first, "utf-16-le"), (first, second, "utf-16-be")):
        if nuls >= max(2, _UTF16_SHARE * pairs) and others <= _UTF16_OTHERS * pairs:
            return codec
    return None


def warn_undecodable(
    where: Path, split: str, undecodable: list[str], total: int, what: str, encoding: str
) -> None:
    if undecodable:
        _log.warning(
            "%s: %d of %d %s %s held bytes that are not %s (the first: %s), read as U+FFFD. If "
            "the data are in another encoding, set it as [data] encoding in the study file "
            '("cp1252" for a table Excel saved on Windows, "latin-1"), or save them as UTF-8',
            where,
            len(undecodable),
            total,
            split,
            what,
            encoding,
            undecodable[0],
        )


def warn_unmarked(where: Path, split: str, unmarked: list[str], total: int) -> None:
    if unmarked:
        _log.warning(
            "%s: %d of %d %s files are UTF-16 without a byte-order mark (the first: %s), read "
            "as UTF-16. Save them as UTF-8, which every tool reads alike",
            where,
            len(unmarked),
            total,
            split,
            unmarked[0],
        )
