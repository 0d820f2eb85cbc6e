"""A test split for data that come without one: a share of each class, chosen by name.

Keras's own loaders read a folder of class folders (`<root>/<class>/<file>`) and split it with
`validation_split`; hpo keeps a test split apart for the ensemble's one final evaluation, so such
a folder (or a table without `[data] test_path`) gives up about `[data] test_fraction` of each
class's files (rows) as its test set. Which ones is decided by a hash of each file's name (a row's
position, or its group's name), not by the seed or the order files are listed in: the same files
are the test set in every study and every run, and the search never reads them. Copies (files or
rows of the same content, whatever their names) go to one side, that of the first: a copy on
each side scored the test set on examples the search trained on. Which folders are splits and
which are classes is `hpo.data.layout`'s.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import TYPE_CHECKING, TypeVar

from hpo.data.layout import class_folders, data_splits, subfolders

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Sequence
    from pathlib import Path

__all__ = [
    "HOLDOUT_RULES",
    "TEST_FRACTION",
    "held_out",
    "held_out_groups",
    "held_out_root",
    "held_out_side",
    "joined_groups",
]

# `[data] test_fraction`'s default: Keras's examples hold out a fifth (validation_split=0.2).
TEST_FRACTION = 0.2
# A class (or a table's groups) of fewer items gives up at most `fraction` of them, rounded up;
# in a larger one the hash's share is close to `fraction`, and left as it falls.
SMALL_CLASS = 20
# How a test split is held out, recorded in the caches of data prepared with one, so that data
# held out under other rules are prepared again (4: texts that differ only in whitespace are
# copies too; 3: copies on one side in folders, and in tables by the text as the tokenizer
# sees it, a table's groups that share a text as one; 2: a small
# class's share capped, a table row's copies with its first; before: the hash alone).
HOLDOUT_RULES = 4
_log = logging.getLogger(__name__)
T = TypeVar("T")


def held_out_root(source: Path) -> Path | None:
    """The folder of class folders a test split is held out of: `source` (or its one
    subfolder) when it holds two or more class folders and no splits, or the train/ folder of
    one without test/; None where the data have a test split of their own. A val/ folder
    beside train/ is never a class: data with both but no test/ hold their test split out of
    train/.

    Raises:
        ConfigError: Two folders name one split.
    """
    splits = data_splits(source)
    if "test" in splits:
        return None
    if "train" in splits:
        return splits["train"]
    folders = subfolders(source)
    if len(folders) == 1:
        source = folders[0]
    return source if len(class_folders(source)) >= 2 else None


def held_out_side(
    files: Sequence[tuple[str, str, T]],
    split: str,
    fraction: float,
    source: Path,
    noun: str,
    content: Callable[[T], Hashable],
) -> list[tuple[str, str, T]]:
    """The `(class, name, ...)` files of `split` in data whose test split is held out
    (`held_out`), a file's copies (the same `content` of its third field) on the side of the
    first by class and name; reading train says how many are held out."""
    keys = [content(item) for _, _, item in files]  # each file read once
    first: dict[Hashable, tuple[str, str]] = {}
    for (label, name, _), key in sorted(zip(files, keys, strict=True), key=lambda f: f[0][:2]):
        first.setdefault(key, (label, name))
    firsts = [first[key] for key in keys]
    chosen = held_out(set(firsts), fraction)
    test = {(label, name) for (label, name, _), f in zip(files, firsts, strict=True) if f in chosen}
    if split == "train":
        _log.warning(
            "%s has no test split of its own: %d of its %d %s (about %g of each class, "
            "[data] test_fraction) are held out as the test set, which the search never reads",
            source,
            len(test),
            len(files),
            noun,
            fraction,
        )
    return [file for file in files if ((file[0], file[1]) in test) == (split == "test")]


def held_out(items: Iterable[tuple[str, str]], fraction: float) -> set[tuple[str, str]]:
    """The `(class, name)` items that make the test split: about `fraction` of each class's.

    An item is held out when the hash of its class and name, read as a number in [0, 1), is
    below `fraction`: files added later join one side without moving any other (but in a class
    so small that none was below it, or one of fewer than `SMALL_CLASS` items, which gives up at
    most `fraction` of them, rounded up). A class of two or more items always gives at least
    one and keeps at least one.

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


def joined_groups(groups: Sequence[str], keys: Sequence[Hashable | None]) -> list[str]:
    """Each row's group, groups whose rows share a key (the same text under two authors)
    joined under the first of their names: a group on each side scored the test set on texts
    the search trained on. A row whose key is None joins nothing."""
    parent = {group: group for group in groups}

    def root(group: str) -> str:
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    first: dict[Hashable, str] = {}
    for group, key in zip(groups, keys, strict=True):
        if key is None:
            continue
        other = root(first.setdefault(key, group))
        mine = root(group)
        if other != mine:
            parent[max(other, mine)] = min(other, mine)
    return [root(group) for group in groups]


def _below(scored: list[tuple[float, str]], fraction: float) -> list[str]:
    if len(scored) < 2:
        return []
    chosen = [name for score, name in scored if score < fraction] or [scored[0][1]]
    if len(scored) < SMALL_CLASS:
        # By chance a hash can fall below `fraction` for most of a small class (5 of 6);
        # hold out at most `fraction` of it, rounded up.
        chosen = chosen[: math.ceil(fraction * len(scored))]
    return chosen[: len(scored) - 1]


def _score(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:13], 16) / 16**13
