"""A test split for data that come without one: a share of each class, chosen by name.

Keras's own loaders read a folder of class folders (`<root>/<class>/<file>`) and split it with
`validation_split`; hpo keeps a test split apart for the ensemble's one final evaluation, so such
a folder (or a table without `[data] test_path`) gives up about `[data] test_fraction` of each
class's files (rows) as its test set. Which ones is decided by a hash of each file's name (a row's
position, or its group's name), not by the seed or the order files are listed in: the same files
are the test set in every study and every run, and the search never reads them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SPLITS", "TEST_FRACTION", "held_out", "held_out_groups"]

SPLITS = ("train", "test")
# `[data] test_fraction`'s default: Keras's examples hold out a fifth (validation_split=0.2).
TEST_FRACTION = 0.2


def held_out(items: Iterable[tuple[str, str]], fraction: float) -> set[tuple[str, str]]:
    """The `(class, name)` items that make the test split: about `fraction` of each class's.

    An item is held out when the hash of its class and name, read as a number in [0, 1), is
    below `fraction`: files added later join one side without moving any other (but in a class
    so small that none was below it). A class of two or more items always gives at least one
    and keeps at least one.

    Args:
        items: Every `(class, name)` of the data, in any order.
        fraction: The share of each class to hold out, in (0, 1).
    """
    by_class: dict[str, list[str]] = {}
    for label, name in items:
        by_class.setdefault(label, []).append(name)
    test: set[tuple[str, str]] = set()
    for label, names in by_class.items():
        chosen = _below(sorted((_score(f"{label}/{name}"), name) for name in names), fraction)
        test.update((label, name) for name in chosen)
    return test


def held_out_groups(groups: Iterable[str], fraction: float) -> set[str]:
    """The groups (an author, a product) whose rows all make the test split: chosen as
    `held_out` chooses items, so that about `fraction` of the groups are held out."""
    names = sorted(set(groups))
    return set(_below(sorted((_score(name), name) for name in names), fraction))


def _below(scored: list[tuple[float, str]], fraction: float) -> list[str]:
    if len(scored) < 2:
        return []
    chosen = [name for score, name in scored if score < fraction] or [scored[0][1]]
    return chosen[: len(scored) - 1]


def _score(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:13], 16) / 16**13
