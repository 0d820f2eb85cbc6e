"""The user's own labelled texts: finding them, reading them, and a group-keeping split.

Three sources are read, told apart by what the path is: a folder in the
`keras.utils.text_dataset_from_directory` layout (`<root>/<split>/<class>/*.txt`, optionally one
folder deeper, or `<root>/<class>/*.txt` without splits), a `.tar`/`.tar.gz` archive of one with
splits (streamed, never extracted), and a table (`.csv`, `.tsv` or `.parquet`) with a text, a
label and optionally a group column, whose test split is a second table with the same columns.
A folder or table without a test split of its own gives up a share of each class as one
(`hpo.data.holdout`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from hpo._paths import expand_user
from hpo.data.archives import open_archive, zip_hint
from hpo.data.encodings import (
    ENCODING,
    decode,
    sniffed_encoding,
    warn_undecodable,
    warn_unmarked,
)
from hpo.data.holdout import (
    TEST_FRACTION,
    held_out,
    held_out_groups,
    held_out_root,
    held_out_side,
    joined_groups,
)
from hpo.data.layout import (
    SPLITS,
    MemberSplits,
    check_not_one_class,
    class_folders,
    has_split,
    hidden,
    split_folder,
    visible_files,
)
from hpo.data.provenance import given_origin, origin_fix
from hpo.data.text_tables import LABEL_RULES, TABLES, TextColumns, read_columns, read_table
from hpo.data.tokenizer import as_tokens
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

__all__ = [
    "ENCODING",
    "ENV_VAR",
    "LABEL_RULES",
    "LabelledTexts",
    "TextColumns",
    "check_test_path",
    "check_test_table",
    "has_test_split",
    "has_val_split",
    "is_table",
    "locate_texts",
    "read_texts",
    "sniffed_encoding",
]

ENV_VAR = "HPO_TEXT_PATH"
_LAYOUT = "<root>/{split}/<class>/*.txt"
_KINDS = (
    "a <root>/train/<class>/*.txt folder (or <root>/<class>/*.txt), a .tar.gz of one with "
    "splits, or a .csv/.tsv/.parquet table"
)
_log = logging.getLogger(__name__)

# (class name, path within the split, text)
_Row = tuple[str, str, str]


class _Kind(Enum):
    FOLDER = "folder"
    ARCHIVE = "archive"
    TABLE = "table"


@dataclass(frozen=True)
class LabelledTexts:
    """One split's texts: a folder's ordered by class, then path; a table's in file order.

    Attributes:
        texts: The texts, none empty.
        labels: Class of each text (int32), an index into `classes`.
        classes: Class names, sorted (numerically when all are integers) unless the caller
            fixed the order.
        groups: Group id of each text (strings) when a group column was read, else None.
    """

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    groups: np.ndarray | None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, index: np.ndarray) -> LabelledTexts:
        """Returns the texts at `index`, in that order, with the same classes."""
        groups = None if self.groups is None else self.groups[index]
        texts = [self.texts[i] for i in index]
        return LabelledTexts(texts, self.labels[index], self.classes, groups)


def locate_texts(data_arg: str | Path | None, study_path: str | Path | None) -> Path:
    """Finds the text data: `--data`, then $HPO_TEXT_PATH, then the study file's data.path.

    Args:
        data_arg: The `--data` flag, or None.
        study_path: The study file's `data.path`, or None.

    Returns:
        The first path given, resolved: a folder, archive or table for `read_texts`.

    Raises:
        DataError: Nothing is given, or the first path given is missing or of no known kind.
    """
    for origin, value in (
        (given_origin(data_arg), data_arg),
        (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None),
        (given_origin(study_path, "the study file's data.path"), study_path),
    ):
        if value is not None:
            path = expand_user(value, origin)
            if _kind(path) is None:
                what = "is not " + _KINDS if path.exists() else "does not exist"
                fix = f"Fix the path given by --data, ${ENV_VAR} or the study file's data.path."
                raise DataError(
                    f"{origin} points at {path}, which {what}.{zip_hint(path)} "
                    f"{origin_fix(origin, fix)}"
                )
            return path.resolve()
    raise DataError(
        f"no text data given. Pass --data PATH, set ${ENV_VAR}, or set `[data] path` in the "
        f"study file to {_KINDS}."
    )


def _kind(path: Path) -> _Kind | None:
    if path.is_dir():
        return _Kind.FOLDER
    if not path.is_file():
        return None
    if path.suffix.lower() in TABLES:
        return _Kind.TABLE
    return _Kind.ARCHIVE if tarfile.is_tarfile(path) else None


def is_table(source: Path) -> bool:
    """Whether `source` is a table (.csv, .tsv, .parquet), whose labels are a column of it."""
    return _kind(source) is _Kind.TABLE


def has_test_split(source: Path, test_path: Path | None = None) -> bool:
    """Whether the data hold a test split of their own (else one is held out of them)."""
    kind = _kind(source)
    if kind is _Kind.TABLE:
        return test_path is not None
    return kind is not _Kind.FOLDER or held_out_root(source) is None


def has_val_split(source: Path) -> bool:
    """Whether a folder or archive holds a validation split of its own (a `val/` folder, or one
    of its other names: `hpo.data.layout.SPLIT_NAMES`), which is then the validation set; an
    archive's members are listed to tell (once per process). A table has none."""
    return _kind(source) is not _Kind.TABLE and has_split(source, "val")


def read_texts(
    source: Path,
    split: str,
    *,
    columns: TextColumns = TextColumns(),
    test_path: Path | None = None,
    classes: list[str] | None = None,
    test_fraction: float = TEST_FRACTION,
    encoding: str = ENCODING,
) -> LabelledTexts:
    """Reads one split ("train", "test" or "val") of a folder, an archive or a table.

    Files are decoded in `encoding` (UTF-16 where UTF-8 is asked for and a file begins with
    UTF-16's byte-order mark); bytes that are not are replaced by U+FFFD and the texts that
    held them counted in a warning that names `[data] encoding`. Hidden files (`.name`, such as
    macOS's `._name.txt`) are left out. Rows with an empty text or no label are dropped, counted
    and logged as one warning; a table row without a group is a group of its own.

    Args:
        source: What `locate_texts` returned.
        split: "train", "test" or "val" (a folder's or an archive's own: `has_val_split`).
        columns: The columns of a table; must stay at their defaults for folders and archives.
        test_path: The table holding the test split (`[data] test_path`); for tables only.
        classes: The class order to label with (train's classes when reading test); None
            sorts the classes found. The split must hold exactly these classes.
        test_fraction: Data without a test split of their own (a table without `test_path`,
            a folder of class folders): the share of each class held out as the test split.
        encoding: The files' text encoding (`[data] encoding`).

    Raises:
        DataError: The split, the table or its engine is missing, the file is unreadable,
            or it has fewer than 2 classes.
        ConfigError: A column is missing, a setting does not fit the source, or the classes
            differ from `classes`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    kind = _kind(source)
    if kind is None:
        raise DataError(f"{source} is not {_KINDS}. Fix --data or the study file's data.path.")
    if kind is _Kind.TABLE:
        if split == "val":
            raise ValueError(f"{source} is a table, which has no val split of its own")
        if test_path is None:
            texts, labels, groups = read_table(source, columns, encoding)
            keep = _held_out_rows(texts, labels, groups, split, test_fraction, source)
            return _assemble(
                [texts[i] for i in keep],
                [labels[i] for i in keep],
                None if groups is None else [groups[i] for i in keep],
                classes,
                source,
                split,
            )
        where = source if split == "train" else test_path
        _check_test_table_kind(where)
        # A test table of its own is never split: it needs no group column.
        read = columns if split == "train" else dataclasses.replace(columns, group=None)
        texts, labels, groups = read_table(where, read, encoding)
        return _assemble(texts, labels, groups, classes, where, split)
    if columns != TextColumns() or test_path is not None:
        raise ConfigError(
            f"{source} is a {kind.value} of .txt files, but [data] sets text_column, "
            "label_column, group_column or test_path, which apply to tables only. Remove them "
            f"(the folder names are the labels; the test split is {_LAYOUT.format(split='test')})."
        )
    undecodable: list[str] = []
    unmarked: list[str] = []
    rows = sorted(
        _folder_rows(source, split, test_fraction, encoding, undecodable, unmarked)
        if kind is _Kind.FOLDER
        else _tar_rows(source, split, encoding, undecodable, unmarked)
    )
    warn_undecodable(source, split, undecodable, len(rows), "files", encoding)
    warn_unmarked(source, split, unmarked, len(rows))
    if not rows:
        raise DataError(
            f"no {split} texts in {source}; expected {_LAYOUT.format(split=split)} files "
            "(or one folder deeper). Fix --data or the study file's data.path"
            + (
                "; or unpack the archive: a folder without test/ gives up a test split."
                if kind is _Kind.ARCHIVE and split == "test"
                else "."
            )
        )
    return _assemble([r[2] for r in rows], [r[0] for r in rows], None, classes, source, split)


def _check_test_table_kind(where: Path) -> None:
    if _kind(where) is not _Kind.TABLE:
        raise DataError(
            f"the test table {where} (`test_path` in the study file's [data]) is missing or "
            "not a .csv/.tsv/.parquet file. Restore it, or set test_path to where it is now "
            "(a table with the same columns). Only before a study's first search may test_path "
            "be left out, to hold out a share of the training table as the test split: after "
            "it, that would change the study's test split."
        )


def _folder_rows(
    source: Path,
    split: str,
    test_fraction: float,
    encoding: str,
    undecodable: list[str],
    unmarked: list[str],
) -> Iterator[_Row]:
    root = None if split == "val" else held_out_root(source)
    top = split_folder(source, split) if root is None else root
    if top is None:
        check_not_one_class(source, "<root>/<class>/*.txt")
        raise DataError(
            f"no {split}/ folder in {source} (nor one folder below it); expected "
            f"{_LAYOUT.format(split=split)}, or <root>/<class>/*.txt for hpo to hold out a test "
            "split. Fix --data or the study file's data.path."
        )
    files = []
    for folder in class_folders(top):
        texts = _texts(folder)
        if not texts:
            _warn_no_texts(folder)
        files += [(folder.name, path.relative_to(top).as_posix(), path) for path in texts]
    if root is not None:  # <root>/<class>/*.txt, or train/ without test/
        files = held_out_side(
            files, split, test_fraction, source, "texts", partial(_copy_key, encoding=encoding)
        )
    for label, name, path in files:
        yield label, name, decode(path.read_bytes(), encoding, name, undecodable, unmarked)


def _copy_key(path: Path, encoding: str) -> str:
    """What makes two text files copies: their text as the tokenizer sees it (case,
    punctuation and whitespace aside); bytes not of `encoding` (counted when the file is read)
    as U+FFFD."""
    return as_tokens(path.read_bytes().decode(encoding, errors="replace"))


def _warn_no_texts(folder: Path) -> None:
    """Says that `folder`, a class folder without a `.txt` file, is not a class."""
    others = [p.name for p in visible_files(folder)]
    if not others:
        held = "it is empty"
    elif len(others) == 1:
        held = f"its one file, {others[0]}, is not a .txt file"
    else:
        held = f"its {len(others)} files (such as {others[0]}) are not .txt files"
    _log.warning(
        "%s/ is left out, not a class: %s, and only .txt files are read as texts (as Keras's "
        "text_dataset_from_directory reads them). Rename its files to .txt, or move the folder "
        "out of the data.",
        folder,
        held,
    )


def _is_text_file(name: str) -> bool:
    """A `.txt` file, its suffix in any case (`.TXT`), as Keras's text_dataset_from_directory
    takes them; hidden ones (macOS's `._name.txt`) left out."""
    return name.lower().endswith(".txt") and not name.startswith(".")


def _texts(folder: Path) -> list[Path]:
    return [p for p in visible_files(folder) if _is_text_file(p.name)]


def _held_out_rows(
    texts: Sequence[str | None],
    labels: Sequence[str | None],
    groups: Sequence[str] | None,
    split: str,
    fraction: float,
    source: Path,
) -> list[int]:
    """The rows of a table without a test table that make `split`: whole groups if it has
    them (groups that share a text as one), else about `fraction` of each label's rows, a
    row's copies (the same text as the tokenizer sees it: case, punctuation and whitespace
    aside) on the side of its first: copies on both sides would score the test set on rows
    trained on."""
    # Each row by its text as the tokenizer sees it; a row without one (dropped later) by its
    # position.
    keys: list[str | int] = [(text and as_tokens(text)) or i for i, text in enumerate(texts)]
    if groups is not None:
        joined = joined_groups(groups, [k if isinstance(k, str) else None for k in keys])
        held_groups = held_out_groups(joined, fraction)
        test = {i for i, group in enumerate(joined) if group in held_groups}
    else:
        first: dict[str | int, int] = {}
        for i, (key, label) in enumerate(zip(keys, labels, strict=True)):
            if label is not None:
                first.setdefault(key, i)
        items = [(str(labels[i]), str(i)) for i in first.values()]
        chosen = {int(i) for _, i in held_out(items, fraction)}
        test = {
            i
            for i, (key, label) in enumerate(zip(keys, labels, strict=True))
            if label is not None and first[key] in chosen
        }
    if split == "train":
        _log.warning(
            "%s has no test table ([data] test_path): %d of its %d rows (about %g of %s, "
            "[data] test_fraction) are held out as the test set, which the search never reads",
            source,
            len(test),
            len(labels),
            fraction,
            "its groups" if groups is not None else "each label",
        )
    return [i for i in range(len(labels)) if (i in test) == (split == "test")]


def _tar_rows(
    source: Path, split: str, encoding: str, undecodable: list[str], unmarked: list[str]
) -> Iterator[_Row]:
    splits = MemberSplits(source)
    with open_archive(source) as archive:
        for member in archive:
            parts = member.name.removeprefix("./").split("/")
            if not member.isfile() or hidden(parts) or not _is_text_file(parts[-1]):
                continue
            if (found := splits.split_at(parts)) is None or found[0] != split:
                continue
            at = found[1]
            handle = archive.extractfile(member)
            assert handle is not None  # regular files always have contents
            within = "/".join(parts[at + 1 :])
            text = decode(handle.read(), encoding, within, undecodable, unmarked)
            yield parts[at + 1], within, text


def check_test_path(source: Path, test_path: Path | None) -> None:
    """Refuses a test table (`[data] test_path`) that is the training table itself: its test
    score would be measured on the rows the search trained and chose on.

    Args:
        source: What `locate_texts` returned.
        test_path: The test table, or None.

    Raises:
        ConfigError: `test_path` is `source` (by any path to it: a link, another spelling).
    """
    if test_path is None or not is_table(source) or not test_path.is_file():
        return
    if source.samefile(test_path):
        raise ConfigError(
            f"[data] test_path {test_path} is the training table {source} (from --data, "
            f"${ENV_VAR} or [data] path): the test set must be rows the search never reads, or "
            "its score is measured on training data. Set test_path to a table of other rows. "
            "Removing it makes hpo hold out a share of each label of the training table ([data] "
            "test_fraction), which changes the rows trials train on: a study that has searched "
            "would refuse them, so do that only for a new study (a new name)."
        )


def check_test_table(
    source: Path,
    test_path: Path | None,
    *,
    columns: TextColumns = TextColumns(),
    encoding: str = ENCODING,
) -> None:
    """Before the search: a table's test table (`[data] test_path`) must be there, a table,
    with the text and label columns, which `hpo ensemble` would otherwise find only after the
    budget is spent. Its header alone is read: nothing in the search reads a row of the test
    set, its labels included (`hpo ensemble` checks them against the classes as it reads it).

    Args:
        source: What `locate_texts` returned; anything but a table with a test table passes.
        test_path: The test table, or None.
        columns: The columns of the tables.
        encoding: The files' text encoding (`[data] encoding`).

    Raises:
        DataError: The test table is missing or unreadable.
        ConfigError: Its text or label column is missing.
    """
    if test_path is None or not is_table(source):
        return
    _check_test_table_kind(test_path)
    names = read_columns(test_path, columns, encoding)
    for key, name in {"text_column": columns.text, "label_column": columns.label}.items():
        if name not in names:
            raise ConfigError(
                f"{test_path} has no column {name!r} (the [data] {key}); its columns are "
                f"{names}. Set `{key}` in the study file's [data] table to one of them, or "
                f"give the test table that column."
            )


def _assemble(
    texts: Sequence[str | None],
    labels: Sequence[str | None],
    groups: Sequence[str] | None,
    classes: list[str] | None,
    where: Path,
    split: str,
) -> LabelledTexts:
    no_text = [text is None or not text.strip() for text in texts]
    no_label = [label is None for label in labels]
    keep = [i for i, (a, b) in enumerate(zip(no_text, no_label, strict=True)) if not (a or b)]
    if dropped := len(texts) - len(keep):
        counts = (dropped, len(texts), split, sum(no_text), sum(no_label))
        _log.warning(
            "%s: dropped %d of %d %s rows (%d with empty text, %d without label)", where, *counts
        )
    kept = [str(labels[i]) for i in keep]
    names = _check_classes(set(kept), classes, where, split)
    index = {name: i for i, name in enumerate(names)}
    return LabelledTexts(
        texts=[str(texts[i]) for i in keep],
        labels=np.array([index[label] for label in kept], dtype=np.int32),
        classes=names,
        groups=None if groups is None else np.array([groups[i] for i in keep], dtype=object),
    )


def _check_classes(
    labels: set[str], expected: list[str] | None, where: Path, split: str
) -> list[str]:
    try:
        found = sorted(labels, key=int)
    except ValueError:
        found = sorted(labels)
    if expected is None:
        if len(found) < 2:
            raise DataError(
                f"{where}: the {split} split has texts of {len(found)} class(es) {found}; "
                "classification needs at least 2. Add texts of another class."
            )
        return found
    # Sets made once: made for each label, 10,000 labels took seconds.
    known, present = set(expected), set(found)
    unknown = [name for name in found if name not in known]
    missing = [name for name in expected if name not in present]
    if unknown or missing:
        raise ConfigError(
            f"{where}: the {split} split's labels differ from train's classes {expected}: "
            f"unknown {unknown}, without examples {missing}. Give the {split} split only train's "
            "labels, with at least one text of each, so every class is evaluated."
        )
    return list(expected)
