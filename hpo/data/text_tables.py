"""Tables of labelled texts (`.csv`, `.tsv`, `.parquet`): reading them as spreadsheets, R and
pandas write them, and refusing, with the fix, those that would be read a column off."""

from __future__ import annotations

import codecs
import csv
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hpo.data.encodings import ENCODING, UTF16_UNMARKED, sniffed_encoding, warn_undecodable
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

__all__ = ["LABEL_RULES", "TABLES", "TextColumns", "read_columns", "read_table"]

# Table suffixes and their field separator (None: not a delimited text file).
TABLES = {".csv": ",", ".tsv": "\t", ".parquet": None}
_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
# Only empty cells are missing: a text or a label reading "NA" or "None" is kept as written.
_CSV = {"dtype": str, "keep_default_na": False, "na_values": [""]}
# Labels as spreadsheets, R and pandas write a missing value (case aside): kept as classes, as
# a label may mean them, but named in a warning ("None" is left out: it names a class often).
_MISSING_SPELLINGS = frozenset({"nan", "na", "n/a", "#n/a", "null", "<na>"})
# The bytes of a table read to tell its encoding and its header: a header is one line.
_HEAD = 1 << 16
# A label that is a number as a spreadsheet writes one: "1", "-0.5", "1.0e3" (not "nan", "inf").
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# How table labels are read, recorded in their caches so that one prepared under other rules
# is prepared again (2: stripped of whitespace, numbers as numbers; before: as written).
LABEL_RULES = 2
_log = logging.getLogger(__name__)


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


def _read_delimited(
    path: Path, sep: str, encoding: str, text_column: str, **read: Any
) -> tuple[pd.DataFrame, bool]:
    """The table, and whether bytes of it were not `encoding` (read as U+FFFD); `read` are
    more arguments of `pandas.read_csv` (`usecols`, `nrows`)."""
    import pandas as pd

    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    read_as = sniffed_encoding(head, encoding)
    if read_as != encoding and read_as in UTF16_UNMARKED:
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


def _read_frame(path: Path, columns: TextColumns, encoding: str) -> tuple[pd.DataFrame, bool]:
    """The table, checked for the columns it must have, and whether bytes of it were not
    `encoding`."""
    import pandas as pd

    sep = TABLES[path.suffix.lower()]
    replaced = False
    try:
        if sep is None:
            frame = pd.read_parquet(path)
        else:
            frame, replaced = _read_delimited(path, sep, encoding, columns.text)
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
    wanted = {
        "text_column": columns.text,
        "label_column": columns.label,
        "group_column": columns.group,
    }
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


def read_table(
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
        warn_undecodable(path, "table", rows, len(texts), "rows", encoding)
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


def read_columns(path: Path, columns: TextColumns, encoding: str = ENCODING) -> list[str]:
    """The names in the table's header; no row of it is read.

    Raises:
        DataError: The file cannot be read as a table (Parquet without pyarrow included).
    """
    sep = TABLES[path.suffix.lower()]
    try:
        if sep is None:
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        frame, _ = _read_delimited(path, sep, encoding, columns.text, nrows=0)
    except ImportError as exc:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow, which is not installed. "
            "Run `pip install pyarrow`, or save the table as .csv."
        ) from exc
    except Exception as exc:  # pandas' parser and pyarrow errors, an empty file
        why = " ".join(str(exc).split())
        raise DataError(f"{path}: cannot be read as a table ({why}). Check the file.") from exc
    return [str(name) for name in frame.columns]
