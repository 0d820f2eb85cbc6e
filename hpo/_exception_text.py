"""An exception's text as one readable line, for messages that quote it.

Keras's errors span lines, wrap their point in ANSI colour codes (`\\x1b[1m`) and end with the
arguments of the failing call (`Arguments received by Sequential.call(): ...`), a tensor's
repr among them; cut at a number of characters, such a text ends mid-word with a colour code
left open. This keeps its lines that say what went wrong, joined, and cuts at the end of a
sentence or a word.
"""

from __future__ import annotations

import re

__all__ = ["exception_text"]

# CSI sequences (colours, cursor moves) and the two-character escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
# Keras's closing paragraph: the failing call's arguments, not the failure.
_ARGUMENTS = "Arguments received by "
# Keras's opening paragraph, which names the layer whose call failed.
_CALLING = "Exception encountered when calling "


def exception_text(exc: BaseException | str, limit: int = 300) -> str:
    """`exc`'s text without ANSI escapes and Keras's list of the call's arguments, its lines
    joined by spaces, and at most `limit` characters: cut after the last sentence (or, where
    none ends in time, word) that fits, marked with "...".

    Args:
        exc: The exception, or its text.
        limit: The most characters to keep, the "..." included.
    """
    text = _ANSI.sub("", str(exc))
    kept = []
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.strip().startswith(_ARGUMENTS):
            continue
        line = " ".join(paragraph.split())
        if line.startswith(_CALLING) and line.endswith("."):
            line = line[:-1] + ":"  # what follows is the failure, not a sentence of its own
        kept.append(line)
    text = " ".join(part for part in kept if part)
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    sentence = max(cut.rfind(". "), cut.rfind("; "))
    if sentence >= limit // 2:
        return cut[: sentence + 1] + " ..."
    return cut[: cut.rfind(" ")].rstrip(",;:") + "..." if " " in cut else cut + "..."
