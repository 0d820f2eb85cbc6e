"""A data folder's layout: its split folders and its class folders.

Split folders are told by their names, in any case (`SPLIT_NAMES`: `train/` or `Training/`,
`test/` or `Testing/`, `val/`, `valid/`, `validation/` or `dev/`), in folders and archives alike;
class folders are the folders in a split (or in the data, without splits), as Keras's loaders
read `<root>/<class>/<file>`. Hidden files and folders, and macOS's `__MACOSX/`, are no data.
"""

from __future__ import annotations

import functools
import logging
import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hpo.data.archives import open_archive
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "SPLITS",
    "SPLIT_NAMES",
    "VAL_SPLIT_SETTINGS",
    "MemberSplits",
    "archive_splits",
    "check_not_one_class",
    "check_split_classes",
    "class_folders",
    "data_splits",
    "has_split",
    "hidden",
    "ignored",
    "note_val_split",
    "split_folder",
    "split_of",
    "subfolders",
    "visible_files",
    "walk",
]

SPLITS = ("train", "test", "val")
# The names each split's folder goes by, in any case: Keras's tutorials write train/ and test/,
# Kaggle's data sets Training/ and Testing/, others valid/, validation/ or dev/.
SPLIT_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "train": ("train", "training"),
    "test": ("test", "testing"),
    "val": ("val", "valid", "validation", "dev"),
}
# Folders that hold no data whatever is in them: a zip made on macOS keeps its files' metadata
# in a copy of their folders under __MACOSX/, beside the data.
_NOT_DATA = frozenset({"__MACOSX"})
# Recorded in the caches of data with a validation split of their own, which is their validation
# set: `val_size` does not apply, and a cache prepared before, its validation cut from train/
# (a val/ folder was not read then), is not theirs. Other data's caches keep their keys.
VAL_SPLIT_SETTINGS: Final[Mapping[str, object]] = {"val_size": None, "val_split": True}
_log = logging.getLogger(__name__)


def split_of(name: str) -> str | None:
    """The split ("train", "test" or "val") a folder named `name` holds, told by its name in any
    case (`SPLIT_NAMES`: `Training` is "train"), or None for any other name."""
    lower = name.lower()
    return next((split for split, names in SPLIT_NAMES.items() if lower in names), None)


def data_splits(source: Path) -> dict[str, Path]:
    """The data's split folders, by split (`split_of`): those in `source`, or else those in the
    first of its folders (by name) that holds one, as an archive of the data set unpacks
    (`cifar10/train/...`); empty if neither holds a train or a test split's folder (a folder
    named dev/ among others may be a class, as "dev" beside "ops" and "sales").

    Raises:
        ConfigError: Two folders name one split (`train/` and `Training/`).
    """
    for root in (source, *subfolders(source)):
        found: dict[str, list[Path]] = {}
        for folder in subfolders(root):
            if (split := split_of(folder.name)) is not None:
                found.setdefault(split, []).append(folder)
        # A train or test split holds class folders: a Train/ of files is a class among others
        # (vehicles/{Bus,Car,Train}). Beside one that does, every split-named folder is a split
        # (a test/ of loose files is then refused for lacking train/'s classes).
        if not any(_entries(f)[1] for s in ("train", "test") for f in found.get(s, [])):
            continue
        for split, folders in found.items():
            if len(folders) > 1:
                raise ConfigError(_two_names(split, [f.name for f in folders], root))
        return {split: folders[0] for split, folders in found.items()}
    return {}


def split_folder(source: Path, split: str) -> Path | None:
    """The folder of `split` ("train", "test" or "val") in the data (`data_splits`), if any."""
    return data_splits(source).get(split)


def _two_names(split: str, names: Sequence[str], where: Path | str) -> str:
    return (
        f"{where}: {' and '.join(f'{name}/' for name in names)} both name the {split} split "
        f"(a folder named any of {list(SPLIT_NAMES[split])}, in any case, is it). Merge them "
        f"into one folder, or move one out of the data."
    )


class MemberSplits:
    """The split of each member of a data set's archive, by its path: `<split>/<class>/...` or
    `<top>/<split>/<class>/...`, its split folder told by name as `split_of` tells a folder's.
    Two folders that name one split (`train/` and `Training/`) are refused, as in a folder."""

    def __init__(self, source: Path) -> None:
        self._source = source
        self._names: dict[tuple[str, str], str] = {}

    def split_at(self, parts: Sequence[str]) -> tuple[str, int] | None:
        """The member's split and the index of its split folder in `parts` (its path, split at
        "/"), or None where it lies in no class folder of a split.

        Raises:
            ConfigError: Its split folder names a split that another folder beside it named.
        """
        for at in (0, 1):
            if len(parts) >= at + 3 and (split := split_of(parts[at])) is not None:
                top = "/".join(parts[:at])
                name = self._names.setdefault((top, split), parts[at])
                if name != parts[at]:
                    where = f"{self._source} ({top}/)" if top else self._source
                    raise ConfigError(_two_names(split, [name, parts[at]], where))
                return split, at
        return None


def archive_splits(source: Path) -> frozenset[str]:
    """The splits an archive holds files of (`MemberSplits`), listed once per process for each
    size and time of the file: every member's header is read and none is extracted, though a
    compressed archive is decompressed through once (about a second for CIFAR-10's JPEGs).

    Raises:
        ConfigError: Two folders name one split.
        DataError: The archive is cut short or damaged.
    """
    stat = source.stat()
    return _archive_splits(source, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _archive_splits(source: Path, size: int, mtime_ns: int) -> frozenset[str]:
    splits = MemberSplits(source)
    found: set[str] = set()
    with open_archive(source) as archive:
        for member in archive:
            parts = member.name.removeprefix("./").split("/")
            if member.isfile() and not hidden(parts) and (at := splits.split_at(parts)):
                found.add(at[0])
    return frozenset(found)


def has_split(source: Path, split: str) -> bool:
    """Whether a data folder (`data_splits`) or archive (`archive_splits`) holds `split`."""
    if source.is_file():
        return split in archive_splits(source)
    return source.is_dir() and split_folder(source, split) is not None


def note_val_split(source: Path, val_size: int) -> None:
    """Says, as the data are read, that their own validation split is the validation set."""
    _log.warning(
        "%s has a validation split of its own (a val/, valid/, validation/ or dev/ folder): it "
        "is the validation set, and [data] val_size (%d) is unused",
        source,
        val_size,
    )


def ignored(name: str) -> bool:
    """Whether a file or folder named `name` is no part of the data: a hidden one (Jupyter's
    `.ipynb_checkpoints/`, `.git/`, macOS's `._name` files) or macOS's zip metadata folder,
    `__MACOSX/`."""
    return name.startswith(".") or name in _NOT_DATA


def _entries(folder: Path) -> tuple[list[str], list[str]]:
    """The names of the files and of the folders directly in `folder`, ignored ones left out."""
    files: list[str] = []
    folders: list[str] = []
    with os.scandir(folder) as entries:  # one listing, no file's status read where it tells
        for entry in entries:
            if not ignored(entry.name):
                (folders if entry.is_dir() else files).append(entry.name)
    return files, folders


def subfolders(path: Path) -> list[Path]:
    """The folders in `path` (its classes), by name, hidden ones and `__MACOSX/` left out."""
    return sorted(path / name for name in _entries(path)[1])


def class_folders(folder: Path) -> list[Path]:
    """The class folders in `folder` (`subfolders`). Where none holds a file, each only the same
    two or more folders, a warning says so once: they may be splits named otherwise than
    `SPLIT_NAMES` says (`seg_train/`, `seg_test/`), with the classes one level deeper, or
    classes of subgroups (`cat/{indoor,outdoor}/`), which Keras reads as hpo does."""
    folders = subfolders(folder)
    inner = []
    for class_folder in folders:
        files, inside = _entries(class_folder)
        if files or len(inside) < 2:
            return folders
        inner.append(set(inside))
    shared = sorted(set.intersection(*inner)) if inner else []
    if len(shared) >= 2 and folder not in _WARNED:
        _WARNED.add(folder)
        _log.warning(
            "%s: its classes %s hold no file, each only folders, the same ones (%s); each "
            "class's files are read from all of them. If those folders are the classes and "
            "these are splits, name the splits train/ (or training/), test/ (or testing/) and "
            "val/ (or valid/, validation/, dev/), or give the folder of class folders.",
            folder,
            [f.name for f in folders][:5],
            ", ".join(shared[:5]),
        )
    return folders


_WARNED: set[Path] = set()  # the folders `class_folders` has warned of, once each


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
    leaving out hidden ones and everything in hidden folders (`ignored`): Jupyter's
    `.ipynb_checkpoints/` copies, `.git/`, macOS's `._name` files and `__MACOSX/`."""
    found = []
    for root, dirs, files in walk(folder):
        dirs[:] = [d for d in dirs if not ignored(d)]
        found += [Path(root, name) for name in files if not ignored(name)]
    return sorted(p for p in found if p.is_file())


def _holds_file(folder: Path, suffix: str = "") -> bool:
    """Whether a file `visible_files` would list, ending in `suffix` in any case, lies under
    `folder`; the listing stops at the first, and no file is opened."""
    for _, dirs, files in walk(folder):
        dirs[:] = [d for d in dirs if not ignored(d)]
        if any(not ignored(name) and name.lower().endswith(suffix) for name in files):
            return True
    return False


def hidden(parts: Sequence[str]) -> bool:
    """Whether a path inside a data set (its parts, as an archive member names them) is in a
    hidden folder or `__MACOSX/`, or is a hidden file, which `visible_files` leaves out."""
    return any(ignored(part) and part not in (".", "..") for part in parts)


def check_split_classes(source: Path, suffix: str = "") -> None:
    """Before the search: a folder's test/ and val/ splits must each hold a class folder of
    each of train/'s and no other, which `hpo ensemble` (for test/) would otherwise find only
    after the budget is spent. A class folder counts only where a file (ending in `suffix`,
    in any case) lies in it: an empty one is no class. It lists the folders; it opens no file.

    Args:
        source: The data; anything but a folder with train/ and test/ or val/ passes.
        suffix: The ending of an example's file name (".txt"); "" counts every file.

    Raises:
        ConfigError: Names the classes a split lacks, those it has over train/'s, and the
            class folders that hold no file.
    """
    if not source.is_dir():
        return
    splits = data_splits(source)
    if (train := splits.get("train")) is None:
        return
    classes, empty_train = _classes_held(train, suffix)
    for split in ("val", "test"):
        if (folder := splits.get(split)) is None:
            continue
        found, empty = _classes_held(folder, suffix)
        unknown = [name for name in found if name not in classes]
        missing = [name for name in classes if name not in found]
        if unknown or missing:
            raise ConfigError(
                f"{folder}: its class folders differ from those of {train} {classes}: missing "
                f"{missing}, unknown {unknown}"
                f"{_empty_note([*empty_train, *empty], unknown + missing, suffix)}. Give "
                f"{folder.name}/ a folder of each of {train.name}/'s classes, with at least one "
                f"file in each, and no other, so that every class is "
                f"{'evaluated' if split == 'test' else 'validated'}."
                f"{_spelled(unknown, missing)}"
            )


def _classes_held(folder: Path, suffix: str) -> tuple[list[str], list[Path]]:
    """The names of `folder`'s class folders that hold a file, and those that hold none."""
    held: list[str] = []
    empty: list[Path] = []
    for class_folder in class_folders(folder):
        if _holds_file(class_folder, suffix):
            held.append(class_folder.name)
        else:
            empty.append(class_folder)
    return held, empty


def _empty_note(empty: list[Path], names: list[str], suffix: str) -> str:
    named = [f"{path}/" for path in empty if path.name in names]
    if not named:
        return ""
    what = f"{suffix} file" if suffix else "file"
    return f" ({', '.join(named)} {'holds' if len(named) == 1 else 'hold'} no {what})"


def _spelled(unknown: list[str], missing: list[str]) -> str:
    same = {unicodedata.normalize("NFC", n) for n in unknown} & {
        unicodedata.normalize("NFC", n) for n in missing
    }
    if not same:
        return ""
    return (
        f" {sorted(ascii(n) for n in unknown + missing)} differ only in how their accented "
        f"letters are encoded (Unicode's composed and decomposed forms, as different systems "
        f"write them): rename them to be spelled alike."
    )


def check_not_one_class(source: Path, layout: str) -> None:
    """Refuses data without splits that hold one class folder (`<root>/<class>/<file>`, or
    one folder deeper), which classification cannot learn from.

    Args:
        source: The data folder.
        layout: The layout expected, for the message ("<root>/<class>/<image>").

    Raises:
        DataError: Names the one class folder.
    """
    if data_splits(source):
        return
    folders = subfolders(source)
    if len(folders) == 1 and not _entries(folders[0])[0]:  # a top folder, as an archive unpacks
        folders = subfolders(folders[0])
    if len(folders) == 1 and _holds_file(folders[0]):
        raise DataError(
            f"{source} holds one class folder, {folders[0].name}/ ({folders[0]}), and "
            f"classification needs at least 2: add a folder of each other class beside it "
            f"({layout}), or give the folder that holds them all. Fix --data or the study "
            f"file's data.path."
        )
