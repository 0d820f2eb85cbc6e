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

import codecs
import csv
import logging
import os
import re
import tarfile
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.data.archives import open_archive, zip_hint
from hpo.data.holdout import TEST_FRACTION, held_out, held_out_groups, held_out_root, held_out_side
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
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import pandas as pd

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
# Table suffixes and their field separator (None: not a delimited text file).
_TABLES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
_KINDS = (
    "a <root>/train/<class>/*.txt folder (or <root>/<class>/*.txt), a .tar.gz of one with "
    "splits, or a .csv/.tsv/.parquet table"
)
# Only empty cells are missing: a text or a label reading "NA" or "None" is kept as written.
_CSV = {"dtype": str, "keep_default_na": False, "na_values": [""]}
# Labels as spreadsheets, R and pandas write a missing value (case aside): kept as classes, as
# a label may mean them, but named in a warning ("None" is left out: it names a class often).
_MISSING_SPELLINGS = frozenset({"nan", "na", "n/a", "#n/a", "null", "<na>"})
_log = logging.getLogger(__name__)
ENCODING = "utf-8"
_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# The bytes of a table read to tell its encoding and its header: a header is one line.
_HEAD = 1 << 16
# UTF-16 without a byte-order mark is told from a file's first bytes: at least this share of
# its characters have a NUL byte on one side, and at most this share on the other.
_SNIFF = 4096
_UTF16_SHARE = 0.3
_UTF16_OTHERS = 0.05
_UTF16_UNMARKED = ("utf-16-le", "utf-16-be")

# A label that is a number as a spreadsheet writes one: "1", "-0.5", "1.0e3" (not "nan", "inf").
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# How table labels are read, recorded in their caches so that one prepared under other rules
# is prepared again (2: stripped of whitespace, numbers as numbers; before: as written).
LABEL_RULES = 2

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


@dataclass(frozen=True)
class TextColumns:
    """The columns of a table source (the study file's `[data]` `*_column` keys).

    Attributes:
        text: Column of the texts. Defaults to "text".
        label: Column of the labels (strings or integers). Defaults to "label".
        group: Column of group ids kept on one side of the validation split (e.g. an author
            or a product), or None for a stratified split. Defaults to None.
    """

    text: str = "text"
    label: str = "label"
    group: str | None = None


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
            path = Path(value).expanduser()
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
    if path.suffix.lower() in _TABLES:
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
            texts, labels, groups = _read_table(source, columns, encoding)
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
        texts, labels, groups = _read_table(where, columns, encoding)
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
    _warn_undecodable(source, split, undecodable, len(rows), "files", encoding)
    _warn_unmarked(source, split, unmarked, len(rows))
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
        files = held_out_side(files, split, test_fraction, source, "texts")
    for label, name, path in files:
        yield label, name, _decode(path.read_bytes(), encoding, name, undecodable, unmarked)


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


def _decode(
    data: bytes, encoding: str, name: str, undecodable: list[str], unmarked: list[str]
) -> str:
    """A file's text; its name joins `undecodable` if bytes of it were not `encoding`, and
    `unmarked` if it was read as UTF-16 without a byte-order mark."""
    read_as = sniffed_encoding(data, encoding)
    if read_as != encoding and read_as in _UTF16_UNMARKED:
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


def _warn_undecodable(
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


def _warn_unmarked(where: Path, split: str, unmarked: list[str], total: int) -> None:
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
    them, else about `fraction` of each label's rows, a row's copies (the same text) on the
    side of its first: copies on both sides would score the test set on rows trained on."""
    if groups is not None:
        held_groups = held_out_groups(groups, fraction)
        test = {i for i, group in enumerate(groups) if group in held_groups}
    else:
        # Each row by its text; a row without one (dropped later) by its position.
        keys = [text or i for i, text in enumerate(texts)]
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
            text = _decode(handle.read(), encoding, within, undecodable, unmarked)
            yield parts[at + 1], within, text


def _read_delimited(
    path: Path, sep: str, encoding: str, text_column: str, **read: Any
) -> tuple[pd.DataFrame, bool]:
    """The table, and whether bytes of it were not `encoding` (read as U+FFFD); `read` are
    more arguments of `pandas.read_csv` (`usecols`, `nrows`)."""
    import pandas as pd

    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    read_as = sniffed_encoding(head, encoding)
    if read_as != encoding and read_as in _UTF16_UNMARKED:
        _log.warning(
            "%s is UTF-16 without a byte-order mark, read as UTF-16. Save it as UTF-8, or set "
            '[data] encoding = "%s" in the study file',
            path,
            read_as,
        )
    sep = _separator(head, read_as, sep, text_column)
    try:
        frame, replaced = _read_csv(path, read_as, sep=sep, **read)
    except pd.errors.ParserError as exc:
        why = " ".join(str(exc).split())
        if sep == "\t" and "EOF inside string" in why:
            # A text that begins with a double quote and holds no other: CSV's quoted field
            # ran to the file's end. TSV has no quoting; read so, as below.
            unquoted = _unquoted(path, read_as, _header(path, read_as, sep, read), **read)
            if unquoted is not None:
                _log.warning(
                    "%s: read without quoting (%d rows): a text that begins with a double "
                    "quote never closes as a CSV quoted field",
                    path,
                    len(unquoted[0]),
                )
                _check_no_index(unquoted[0], path, sep)
                return unquoted
        if "Expected" not in why:  # "Expected 2 fields in line 7, saw 3"
            raise
        raise DataError(
            f"{path}: cannot be read as a table ({why}): a row has more fields than the "
            f"header, most often a text that holds an unquoted {_SEPARATORS[sep]}. "
            f"{_separator_fix(sep)}"
        ) from exc
    _check_no_index(frame, path, sep, row_names=_quoted_row_number(head, read_as, sep))
    if sep == "\t" and _holds_a_tab(frame):
        # A cell with a tab in a tab-separated file: a text that begins with a double quote
        # (a quoted title) opened a CSV quoted field, which ran to the next quote and took in
        # the rows between. TSV has no quoting; read so, if every row then has its columns.
        unquoted = _unquoted(path, read_as, frame.columns, **read)
        if unquoted is not None:
            _log.warning(
                "%s: read without quoting (%d rows, against %d with CSV's quotes): a text that "
                "begins with a double quote ran over the rows after it",
                path,
                len(unquoted[0]),
                len(frame),
            )
            _check_no_index(unquoted[0], path, sep)
            return unquoted
    return frame, replaced


def _read_csv(path: Path, read_as: str, **read: Any) -> tuple[pd.DataFrame, bool]:
    """`pandas.read_csv` with `read`, and whether bytes of the file were not `read_as`, which
    are then read as U+FFFD."""
    import pandas as pd

    try:
        return pd.read_csv(path, encoding=read_as, **_CSV, **read), False
    except UnicodeDecodeError:
        return pd.read_csv(path, encoding=read_as, encoding_errors="replace", **_CSV, **read), True


def _header(path: Path, read_as: str, sep: str, read: dict[str, Any]) -> pd.Index:
    """The table's columns, read from its header alone."""
    return _read_csv(path, read_as, sep=sep, **{**read, "nrows": 0})[0].columns


def _check_no_index(frame: pd.DataFrame, path: Path, sep: str, *, row_names: bool = False) -> None:
    """Refuses a table read with an index: pandas takes a first data row with more fields than
    the header for one whose first fields name the row, so every row lost them silently (a
    text's words before its unquoted comma). Quoted row numbers (`row_names`, where the first
    data row begins with one) are such names, as R's `write.table` writes them ("1","a
    text","pos" under "text","label"), and are read as earlier releases read them: dropped.
    Unquoted ones are not told from an `id` column before a text with an unquoted comma."""
    import pandas as pd

    if isinstance(frame.index, pd.RangeIndex) or (row_names and _row_numbers(frame.index)):
        return
    name = _SEPARATORS[sep]
    extra = "a field" if frame.index.nlevels == 1 else f"{frame.index.nlevels} fields"
    if frame.iloc[:, -1].isna().all():  # every row's last field is empty
        raise DataError(
            f"{path}: each data row ends with a {name}, which gives it {extra} more than the "
            f"header, and its fields would be read one column off. Remove the {name} at the "
            "end of each row, or end the header with a column name for it."
        )
    first = frame.index[0]
    fields = first if isinstance(first, tuple) else (first,)
    lost = sep.join("" if pd.isna(field) else str(field) for field in fields)
    raise DataError(
        f"{path}: its first data row has {extra} more than its header: a text holds an "
        f"unquoted {name}, and each row's fields would be read one column off, its first lost "
        f"({lost!r} in the first row). {_separator_fix(sep)} If instead the first field names "
        f"each row (R's write.table writes row names so), give it a column name in the header."
    )


def _quoted_row_number(head: bytes, read_as: str, sep: str) -> bool:
    """Whether the table's first data row (its second line, in `head`) begins with a quoted
    whole number and a separator, as a row name R's `write.table` writes, and quotes a field
    after it, as R quotes a text."""
    lines = head.decode(read_as, errors="replace").lstrip("\ufeff").splitlines()
    if len(lines) < 2:
        return False
    # R quotes a text as it quotes the name: an id before an unquoted text is no row name.
    separator = re.escape(sep)
    return re.match(rf'"\d+"{separator}(.*{separator})?"', lines[1]) is not None


def _row_numbers(index: pd.Index) -> bool:
    """Whether `index` names the rows by whole numbers, each once (R's row names: 1 to n, or
    any order and gaps after a subset, `order()` or `na.omit`)."""
    import pandas as pd

    if index.nlevels != 1 or len(index) == 0 or not index.is_unique:
        return False
    numbers = pd.to_numeric(pd.Series(index, dtype=object), errors="coerce")
    return not numbers.isna().any() and bool(((numbers % 1 == 0) & (numbers >= 1)).all())


def _separator_fix(sep: str) -> str:
    """How to keep a field separator inside a text, in a file separated by `sep`."""
    if sep == "\t":  # TSV has no quoting
        return "Replace the tabs in the texts with spaces."
    return (
        f'Quote each text that holds a {_SEPARATORS[sep]} ("loved it{sep} a lot"{sep}pos), as '
        "a spreadsheet or Python's csv module writes it."
    )


def _separator(head: bytes, read_as: str, sep: str, text_column: str) -> str:
    """`sep`, or ";" for a .csv whose header holds `text_column` only when split by semicolons
    (as Excel saves a CSV where the decimal mark is a comma). Told by the header alone: read
    by commas first, a text holding commas in a later row stopped the read before a retry."""
    if sep != ",":
        return sep
    lines = codecs.getincrementaldecoder(read_as)(errors="replace").decode(head).splitlines()
    header = lines[0] if lines else ""
    by = {mark: next(csv.reader([header], delimiter=mark), []) for mark in (",", ";")}
    return ";" if text_column not in by[","] and text_column in by[";"] else sep


def _holds_a_tab(frame: pd.DataFrame) -> bool:
    return any(frame[c].str.contains("\t", regex=False).any() for c in frame.columns)


def _unquoted(
    path: Path, read_as: str, columns: pd.Index, **read: Any
) -> tuple[pd.DataFrame, bool] | None:
    """The table read with no quoting at all, and whether bytes of it were not `read_as`; or
    None if a row then has other columns."""
    import pandas as pd

    try:
        frame, replaced = _read_csv(path, read_as, sep="\t", quoting=csv.QUOTE_NONE, **read)
    except (pd.errors.ParserError, ValueError):
        return None
    return (frame, replaced) if list(frame.columns) == list(columns) else None


def _read_frame(
    path: Path, columns: TextColumns, encoding: str, *, labels_only: bool = False
) -> tuple[pd.DataFrame, bool]:
    """The table (its label column alone if `labels_only`), checked for the columns it must
    have, and whether bytes of it were not `encoding`."""
    import pandas as pd

    sep = _TABLES[path.suffix.lower()]
    replaced = False
    try:
        if sep is None:
            frame = pd.read_parquet(path, columns=[columns.label] if labels_only else None)
        else:
            only = {"usecols": lambda name: name == columns.label} if labels_only else {}
            frame, replaced = _read_delimited(path, sep, encoding, columns.text, **only)
            if columns.label not in frame.columns and labels_only:
                frame, _ = _read_delimited(path, sep, encoding, columns.text, nrows=0)
    except ImportError as exc:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow, which is not installed. "
            "Run `pip install pyarrow`, or save the table as .csv."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path} is empty: it holds no header and no rows.") from exc
    except (OSError, ValueError) as exc:  # pandas' parser and pyarrow errors are ValueErrors
        why = " ".join(str(exc).split())
        if "EOF inside string" in why:  # a quote that never closes runs to the file's end
            raise DataError(
                f"{path}: a quoted field never closes ({why}): the file is cut short there, or "
                f'a text holds a lone " (a CSV writes one inside quotes as "").'
            ) from exc
        raise DataError(f"{path}: cannot be read as a table ({why}). Check the file.") from exc
    wanted: dict[str, str | None] = {"label_column": columns.label}
    if not labels_only:
        wanted = {"text_column": columns.text, **wanted, "group_column": columns.group}
    for key, name in wanted.items():
        if name is not None and name not in frame.columns:
            raise ConfigError(
                f"{path} has no column {name!r} (the [data] {key}); its columns are "
                f"{[str(c) for c in frame.columns]}. Set `{key}` in the study file's [data] "
                "table to one of them."
            )
    if frame.empty:
        raise DataError(
            f"{path} has no rows below its header {[str(c) for c in frame.columns]}: add the "
            f"examples, one a row."
        )
    return frame, replaced


def _read_table(
    path: Path, columns: TextColumns, encoding: str = ENCODING
) -> tuple[list[str | None], list[str | None], list[str] | None]:
    frame, replaced = _read_frame(path, columns, encoding)
    groups = None
    if columns.group is not None:
        found = _strings(frame[columns.group])
        groups = [f"<row {i}>" if g is None else g for i, g in enumerate(found)]
    texts, labels = _strings(frame[columns.text]), _labels(_strings(frame[columns.label]))
    _warn_missing_spellings(path, labels)
    if replaced:
        rows = [
            f"data row {i + 1}"
            for i, cells in enumerate(zip(texts, labels, strict=True))
            if any(cell is not None and "\ufffd" in cell for cell in cells)
        ]
        _warn_undecodable(path, "table", rows, len(texts), "rows", encoding)
    return texts, labels, groups


def _warn_missing_spellings(path: Path, labels: list[str | None]) -> None:
    spelled = sorted({label for label in labels if label and label.lower() in _MISSING_SPELLINGS})
    if spelled:
        _log.warning(
            "%s: %d row(s) are labelled %s, as a spreadsheet or pandas writes a missing value; "
            "they are kept as %s. If they have no label, empty those cells: rows without a "
            "label are dropped",
            path,
            sum(label in spelled for label in labels),
            " or ".join(repr(label) for label in spelled),
            "a class" if len(spelled) == 1 else "classes",
        )


def _strings(values: pd.Series) -> list[str | None]:
    import pandas as pd

    # Integers come back as floats from a Parquet column with gaps: 1.0 must read "1".
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return [None if pd.isna(v) else str(v) for v in values]


def _labels(found: list[str | None]) -> list[str | None]:
    """A table's labels without surrounding whitespace ("pos " is "pos", as a spreadsheet cell
    shows it); a label of whitespace alone is no label. A column of numbers alone is read as a
    Parquet column of them is (`_strings`): whole numbers as integers ("1.0" and "1" are "1"),
    else as floats ("0.50" is "0.5")."""
    labels = [None if label is None else label.strip() or None for label in found]
    spelled = {label for label in labels if label is not None}
    if not spelled or not all(_NUMBER.fullmatch(label) for label in spelled):
        return labels
    numbers = {label: Decimal(label) for label in spelled}
    whole = all(number == number.to_integral_value() for number in numbers.values())
    read = {label: str(int(n)) if whole else str(float(n)) for label, n in numbers.items()}
    return [None if label is None else read[label] for label in labels]


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
    classes: list[str],
    *,
    columns: TextColumns = TextColumns(),
    encoding: str = ENCODING,
) -> None:
    """Before the search: the labels of a table's test table (`[data] test_path`) must be the
    training classes, all of them, which `hpo ensemble` would otherwise find only after the
    budget is spent. It reads the label column alone; no text of the test table is read.

    Args:
        source: What `locate_texts` returned; anything but a table with a test table passes.
        test_path: The test table, or None.
        classes: The training split's classes.
        columns: The columns of the tables.
        encoding: The files' text encoding (`[data] encoding`).

    Raises:
        DataError: The test table is missing or unreadable.
        ConfigError: Its label column is missing, or its labels are not `classes`: names the
            unknown ones and those without a row.
    """
    if test_path is None or not is_table(source):
        return
    _check_test_table_kind(test_path)
    frame, _ = _read_frame(test_path, columns, encoding, labels_only=True)
    labels = _labels(_strings(frame[columns.label]))
    _check_classes({label for label in labels if label is not None}, classes, test_path, "test")


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
    unknown = [name for name in found if name not in set(expected)]
    missing = [name for name in expected if name not in set(found)]
    if unknown or missing:
        raise ConfigError(
            f"{where}: the {split} split's labels differ from train's classes {expected}: "
            f"unknown {unknown}, without examples {missing}. Give the {split} split only train's "
            "labels, with at least one text of each, so every class is evaluated."
        )
    return list(expected)
