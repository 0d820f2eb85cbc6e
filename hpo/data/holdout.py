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
import logging
import math
import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "HOLDOUT_RULES",
    "SPLITS",
    "TEST_FRACTION",
    "check_test_classes",
    "held_out",
    "held_out_groups",
    "held_out_root",
    "held_out_side",
    "hidden",
    "split_folder",
    "subfolders",
    "visible_files",
    "walk",
]

SPLITS = ("train", "test")
# `[data] test_fraction`'s default: Keras's examples hold out a fifth (validation_split=0.2).
TEST_FRACTION = 0.2
# A class (or a table's groups) of fewer items gives up at most `fraction` of them, rounded up;
# in a larger one the hash's share is close to `fraction`, and left as it falls.
SMALL_CLASS = 20
# How a test split is held out, recorded in the caches of data prepared with one, so that data
# held out under other rules are prepared again (2: a small class's share capped, a table row's
# copies with its first; before: the hash alone, by position).
HOLDOUT_RULES = 2
_log = logging.getLogger(__name__)
T = TypeVar("T")


def split_folder(source: Path, split: str) -> Path | None:
    """`<source>/<split>`, or `<source>/<top>/<split>` one folder below (as an archive of the
    data set unpacks), if either is there."""
    roots = [source, *sorted(child for child in source.iterdir() if child.is_dir())]
    return next((root / split for root in roots if (root / split).is_dir()), None)


def subfolders(path: Path) -> list[Path]:
    """The folders in `path` (its classes), by name, hidden ones left out."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def walk(folder: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk(folder)` with symbolic links to folders followed, except one that leads to a
    folder this walk is inside or has read already (a link to `..` would read every file again
    and again, and another class's files as this one's): that link is left out, with a warning
    naming it. Yields what `os.walk` yields; a caller may prune `dirs` as with `os.walk`."""
    top = os.path.realpath(folder)
    seen = {top}
    for root, dirs, files in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirs):  # in order, so which of two links is read does not vary
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if real in seen or top.startswith(real.rstrip(os.sep) + os.sep):
                _log.warning(
                    "left out %s: it leads to %s, a folder already read or one that holds "
                    "this data (a symbolic link loop, or the same files twice). Remove the "
                    "link, or copy what it should add.",
                    path,
                    real,
                )
                continue
            seen.add(real)
            kept.append(name)
        dirs[:] = kept
        yield root, dirs, files


def visible_files(folder: Path) -> list[Path]:
    """The files under `folder` (symbolic links followed, once each: see `walk`), by path,
    leaving out hidden ones and everything in hidden folders: Jupyter's `.ipynb_checkpoints/`
    copies, `.git/`, macOS's `._name` files."""
    found = []
    for root, dirs, files in walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, name) for name in files if not name.startswith(".")]
    return sorted(p for p in found if p.is_file())


def hidden(parts: Sequence[str]) -> bool:
    """Whether a path inside a data set (its parts, as an archive member names them) is in a
    hidden folder or is a hidden file, which `visible_files` leaves out."""
    return any(part.startswith(".") and part not in (".", "..") for part in parts)


def check_test_classes(source: Path) -> None:
    """Before the search: a folder's test/ split must have a class folder of each of train/'s
    and no other, which `hpo ensemble` would otherwise find only after the budget is spent. It
    lists their names; it opens no test file.

    Raises:
        ConfigError: Names the class folders test/ lacks and those it has over train/'s.
    """
    if not source.is_dir() or held_out_root(source) is not None:
        return
    train, test = split_folder(source, "train"), split_folder(source, "test")
    if train is None or test is None:
        return
    classes = [p.name for p in subfolders(train)]
    found = [p.name for p in subfolders(test)]
    unknown = [name for name in found if name not in classes]
    missing = [name for name in classes if name not in found]
    if unknown or missing:
        same = {unicodedata.normalize("NFC", n) for n in unknown} & {
            unicodedata.normalize("NFC", n) for n in missing
        }
        spelled = (
            f" {sorted(ascii(n) for n in unknown + missing)} differ only in how their accented "
            f"letters are encoded (Unicode's composed and decomposed forms, as different systems "
            f"write them): rename them to be spelled alike."
            if same
            else ""
        )
        raise ConfigError(
            f"{test}: its class folders differ from those of {train} {classes}: missing "
            f"{missing}, unknown {unknown}. Give test/ a folder of each of train/'s classes and "
            f"no other, so that the ensemble can evaluate every class.{spelled}"
        )


def held_out_root(source: Path) -> Path | None:
    """The folder of class folders a test split is held out of: `source` (or its one
    subfolder) when it holds two or more class folders and no splits, or the train/ folder of
    one without test/; None where the data have a test split of their own."""
    if split_folder(source, "test") is not None:
        return None
    if (train := split_folder(source, "train")) is not None:
        return train
    folders = subfolders(source)
    if len(folders) == 1:
        source, folders = folders[0], subfolders(folders[0])
    return source if len(folders) >= 2 else None


def held_out_side(
    files: Sequence[tuple[str, str, T]], split: str, fraction: float, source: Path, noun: str
) -> list[tuple[str, str, T]]:
    """The `(class, name, ...)` files of `split` in data whose test split is held out
    (`held_out`); reading train says how many are held out."""
    test = held_out([(label, name) for label, name, _ in files], fraction)
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
