from __future__ import annotations

import importlib.util
import logging
import sys
import tarfile
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from hpo.data import text_sources as ts
from hpo.data.tokenizer import as_tokens
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pathlib import Path

# Per split and class, how many .txt files the synthetic folder holds.
COUNTS = {"train": {"sport": 3, "art": 2, "news": 4}, "test": {"sport": 1, "art": 1, "news": 2}}


def write_folder(root: Path, counts: dict[str, dict[str, int]] = COUNTS) -> Path:
    """Writes <root>/<split>/<class>/NN.txt files whose text names them; returns root."""
    for split, per_class in counts.items():
        for label, count in per_class.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / f"{index:02d}.txt").write_text(f"{split} {label} {index} é")
    return root


def write_table(path: Path, rows: dict[str, list[object]]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


TRAIN_ROWS: dict[str, list[object]] = {
    "body": ["good pitch", "new film", "rain today", "bad pitch", "old film", "sun today"],
    "topic": ["sport", "art", "news", "sport", "art", "news"],
    "author": ["a", "b", "c", "a", "d", "c"],
}


def test_folder_layout_reads_classes_sorted_then_paths(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    (root / "train" / "art" / "notes.md").write_text("not a text example")
    (root / "train" / "art" / "._00.txt").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    (root / "train" / "news" / "bad.txt").write_bytes(b"caf\xe9")
    read = ts.read_texts(root, "train")
    assert read.classes == ["art", "news", "sport"]
    np.testing.assert_array_equal(read.labels, [0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    assert read.labels.dtype == np.int32
    assert read.texts[:2] == ["train art 0 é", "train art 1 é"]
    assert read.texts[2:7] == [*(f"train news {i} é" for i in range(4)), "caf\ufffd"]
    assert read.groups is None
    test = ts.read_texts(root, "test", classes=read.classes)
    assert test.texts == ["test art 0 é", "test news 0 é", "test news 1 é", "test sport 0 é"]


def test_files_in_hidden_folders_are_no_examples_and_never_cross_the_held_out_split(
    tmp_path: Path,
) -> None:
    # Jupyter keeps a copy of each text opened in it in .ipynb_checkpoints/ beside it: read as
    # examples, each held-out test text's copy (another path, so another side of the hash)
    # trained the search on the test split.
    root = tmp_path / "flat"
    for label in ("pos", "neg"):
        (root / label / ".ipynb_checkpoints").mkdir(parents=True)
        for i in range(20):
            text = f"{label} review {i}"
            (root / label / f"{i}.txt").write_text(text)
            (root / label / ".ipynb_checkpoints" / f"{i}-checkpoint.txt").write_text(text)
    (root / ".git" / "pos").mkdir(parents=True)
    (root / ".git" / "pos" / "x.txt").write_text("not a class")
    train = ts.read_texts(root, "train")
    test = ts.read_texts(root, "test", classes=train.classes)
    assert train.classes == ["neg", "pos"]
    assert len(train.texts) + len(test.texts) == 40 and test.texts
    assert not set(train.texts) & set(test.texts)
    # The same in an archive of train/ and test/ folders.
    split = write_folder(tmp_path / "split")
    (split / "train" / "art" / ".ipynb_checkpoints").mkdir()
    (split / "train" / "art" / ".ipynb_checkpoints" / "00-checkpoint.txt").write_text("copy")
    archive = tmp_path / "split.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(split, arcname="split")
    assert "copy" not in ts.read_texts(archive, "train").texts
    assert ts.read_texts(archive, "train").texts == ts.read_texts(split, "train").texts


def test_one_top_folder_and_tarball_read_the_same_texts(tmp_path: Path) -> None:
    plain = ts.read_texts(write_folder(tmp_path / "plain"), "train")
    nested = write_folder(tmp_path / "outer" / "mydata").parent
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "plain", arcname="mydata")
    for source in (nested, archive, ts.locate_texts(archive, None)):
        read = ts.read_texts(source, "train")
        assert read.texts == plain.texts
        assert read.classes == plain.classes
        np.testing.assert_array_equal(read.labels, plain.labels)


def test_a_txt_suffix_in_capitals_is_a_text_as_keras_reads_it_in_a_folder_and_an_archive(
    tmp_path: Path,
) -> None:
    root = write_folder(tmp_path / "set")
    for index, path in enumerate(sorted((root / "train").rglob("01.txt"))):
        path.rename(path.with_suffix((".TXT", ".Txt")[index % 2]))  # saved on Windows, say
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="set")
    for source in (root, archive):
        read = ts.read_texts(source, "train")
        assert len(read.texts) == sum(COUNTS["train"].values())
        assert "train art 1 é" in read.texts and "train news 1 é" in read.texts


def test_a_train_folder_without_test_gives_up_a_test_split_and_an_archive_names_the_layout(
    tmp_path: Path,
) -> None:
    root = write_folder(tmp_path / "set", {"train": COUNTS["train"]})
    assert not ts.has_test_split(root)
    train, test = ts.read_texts(root, "train"), ts.read_texts(root, "test")
    assert sorted(train.texts + test.texts) == sorted(
        f"train {label} {i} é" for label, count in COUNTS["train"].items() for i in range(count)
    )
    assert set(test.labels.tolist()) == {0, 1, 2}
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="set")
    with pytest.raises(DataError, match=r"no test texts.*<root>/test/<class>/\*\.txt.*unpack"):
        ts.read_texts(archive, "test")


def test_table_settings_on_a_folder_are_rejected(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    with pytest.raises(ConfigError, match="apply to tables only"):
        ts.read_texts(root, "train", columns=ts.TextColumns(group="author"))
    with pytest.raises(ConfigError, match="test_path"):
        ts.read_texts(root, "test", test_path=tmp_path / "test.csv")


def test_csv_with_string_labels_and_a_group_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "train.csv", TRAIN_ROWS)
    columns = ts.TextColumns(text="body", label="topic", group="author")
    # Given a test table, the training table is read whole.
    read = ts.read_texts(path, "train", columns=columns, test_path=path)
    assert read.texts == TRAIN_ROWS["body"]
    assert read.classes == ["art", "news", "sport"]
    np.testing.assert_array_equal(read.labels, [2, 0, 1, 2, 0, 1])
    assert read.groups is not None
    assert read.groups.tolist() == TRAIN_ROWS["author"]
    part = read.take(np.array([4, 0]))
    assert part.texts == ["old film", "good pitch"]
    assert part.labels.tolist() == [0, 2]
    assert part.groups is not None
    assert part.groups.tolist() == ["d", "a"]
    assert part.classes == read.classes
    assert len(part) == 2


def test_a_test_table_of_its_own_needs_no_group_column(tmp_path: Path) -> None:
    # The group column keeps an author's rows on one side of the validation split; the test
    # table is never split. The search read it (labels only) and accepted it, and hpo ensemble
    # then refused it for lacking the column.
    path = write_table(tmp_path / "train.csv", TRAIN_ROWS)
    test = write_table(
        tmp_path / "test.csv", {k: v for k, v in TRAIN_ROWS.items() if k != "author"}
    )
    columns = ts.TextColumns(text="body", label="topic", group="author")
    read = ts.read_texts(path, "test", columns=columns, test_path=test, classes=None)
    assert read.texts == TRAIN_ROWS["body"] and read.groups is None
    assert ts.read_texts(path, "train", columns=columns, test_path=test).groups is not None


def test_tsv_integer_labels_sort_numerically_and_na_words_are_kept(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {
        "text": ["NA", "None", "ten, with a comma", "two"],
        "label": [10, 2, 10, 1],
    }
    path = write_table(tmp_path / "train.tsv", rows)
    read = ts.read_texts(path, "train", test_path=path)
    assert read.classes == ["1", "2", "10"]
    assert read.texts == ["NA", "None", "ten, with a comma", "two"]
    np.testing.assert_array_equal(read.labels, [2, 1, 2, 0])


def test_a_tsv_text_that_begins_with_a_quote_stays_one_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # TSV has no quoting: a text that begins with '"' (a quoted title) opened a CSV quoted
    # field that ran to the next quote, 6 rows read as 3, one text holding the others' labels.
    lines = ["text\tlabel"] + [f"review {i}\t{['neg', 'pos'][i % 2]}" for i in range(6)]
    lines[2] = '"Casablanca, overrated\tpos'
    lines[5] = '"Vertigo, a classic\tneg'
    path = tmp_path / "reviews.tsv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(path, "train", test_path=path)
    assert len(read.texts) == 6 and '"Casablanca, overrated' in read.texts
    assert "read without quoting (6 rows, against 3 with CSV's quotes)" in caplog.text
    # A TSV that pandas wrote, its quotes and a tab escaped CSV's way, reads as written.
    rows: dict[str, list[object]] = {"text": ['"Casablanca" again', "a\ttab"], "label": [1, 0]}
    written = write_table(tmp_path / "quoted.tsv", rows)
    assert ts.read_texts(written, "train", test_path=written).texts == rows["text"]


def test_a_tsv_text_that_begins_with_a_quote_it_never_closes_is_read_without_quoting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With no other quote after it, CSV's quoted field ran to the file's end: refused as cut
    # short with CSV's advice ("a CSV writes one inside quotes"), which a TSV has no use for.
    lines = ["text\tlabel"] + [f"review {i}\t{['neg', 'pos'][i % 2]}" for i in range(6)]
    lines[2] = '"Casablanca, overrated\tpos'
    path = tmp_path / "reviews.tsv"
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(path, "train", test_path=path)
    assert len(read.texts) == 6 and read.texts[1] == '"Casablanca, overrated'
    assert read.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert "read without quoting (6 rows): a text that begins with a double quote" in caplog.text
    ts.check_test_table(path, path)  # its header alone reads so too
    # A CSV has quoting: there it is a quote that never closes.
    csv = tmp_path / "reviews.csv"
    csv.write_text("\n".join(line.replace("\t", ",") for line in lines) + "\n")
    with pytest.raises(DataError, match="a quoted field never closes"):
        ts.read_texts(csv, "train", test_path=csv)


def test_parquet_is_read_or_asks_for_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        path.write_bytes(b"PAR1 not written: pyarrow is missing")
        with pytest.raises(DataError, match=r"needs pyarrow.*pip install pyarrow"):
            ts.read_texts(path, "train")
        return
    rows = {"text": list("xyzw"), "label": [3.0, None, 1.0, 3.0], "g": [7.0, 8.0, None, 9.0]}
    write_table(path, rows)
    read = ts.read_texts(path, "train", columns=ts.TextColumns(group="g"), test_path=path)
    assert read.classes == ["1", "3"]
    assert read.texts == ["x", "z", "w"]
    np.testing.assert_array_equal(read.labels, [1, 0, 1])
    assert read.groups is not None
    assert read.groups.tolist() == ["7", "<row 2>", "9"]


def test_parquet_without_an_engine_asks_for_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for engine in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, engine, None)  # makes `import engine` fail
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"train\.parquet: reading Parquet needs pyarrow"):
        ts.read_texts(path, "train")


def test_table_test_split_is_test_path_labelled_with_train_classes(tmp_path: Path) -> None:
    train = write_table(tmp_path / "train.csv", {"text": ["a", "b", "c"], "label": [0, 1, 2]})
    test = write_table(tmp_path / "test.csv", {"text": ["x", "y", "z"], "label": [2, 0, 1]})
    classes = ts.read_texts(train, "train", test_path=test).classes
    read = ts.read_texts(train, "test", test_path=test, classes=classes)
    assert read.texts == ["x", "y", "z"]
    assert read.labels.tolist() == [2, 0, 1]
    assert ts.read_texts(train, "train", test_path=test).texts == ["a", "b", "c"]


def test_a_table_without_test_path_holds_out_a_share_of_each_label(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = {"text": [f"text {i}" for i in range(300)], "label": ["x"] * 200 + ["y"] * 100}
    table = write_table(tmp_path / "all.csv", rows)
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        train = ts.read_texts(table, "train")
    assert "of its 300 rows" in caplog.text and "[data] test_path" in caplog.text
    test = ts.read_texts(table, "test", classes=train.classes)
    # About a fifth of each label, by default, on one side only; the same rows every time.
    held = np.bincount(test.labels).tolist()
    assert 25 <= held[0] <= 55 and 10 <= held[1] <= 30, held
    assert sorted(train.texts + test.texts) == sorted(rows["text"])
    assert ts.read_texts(table, "test", classes=train.classes).texts == test.texts
    assert 120 <= len(ts.read_texts(table, "test", test_fraction=0.5).texts) <= 180
    # Rows of one group stay together: whole groups are held out.
    rows["author"] = [f"a{i % 40}" for i in range(300)]
    grouped = write_table(tmp_path / "grouped.csv", rows)
    columns = ts.TextColumns(group="author")
    held_out = ts.read_texts(grouped, "test", columns=columns)
    kept = ts.read_texts(grouped, "train", columns=columns)
    assert held_out.groups is not None and kept.groups is not None
    assert not set(held_out.groups.tolist()) & set(kept.groups.tolist())
    assert held_out.texts and len(held_out.texts) + len(kept.texts) == 300
    # A row's copies go to the side of its first: never one copy in train and one in test.
    rows = {"text": [f"text {i % 150}" for i in range(300)], "label": ["x", "y"] * 150}
    doubled = write_table(tmp_path / "doubled.csv", rows)
    train, test = ts.read_texts(doubled, "train"), ts.read_texts(doubled, "test")
    assert not set(train.texts) & set(test.texts)
    assert len(train.texts) + len(test.texts) == 300 and 40 <= len(test.texts) <= 80
    # Copies as the tokenizer sees them (case, punctuation and whitespace aside) too; and
    # groups that share a text are held out as one (the same review under two authors).
    rows = {"text": [f"Text  {i % 150}!\r\n" if i >= 150 else f"text {i}" for i in range(300)]}
    rows.update(label=["x", "y"] * 150, author=[f"a{i}" for i in range(300)])
    spelled = write_table(tmp_path / "spelled.csv", rows)
    for columns in (ts.TextColumns(), ts.TextColumns(group="author")):
        train = ts.read_texts(spelled, "train", columns=columns)
        test = ts.read_texts(spelled, "test", columns=columns)
        seen = {as_tokens(text) for text in train.texts}
        assert test.texts and not {as_tokens(text) for text in test.texts} & seen
        assert len(train.texts) + len(test.texts) == 300
    with pytest.raises(DataError, match=r"test table .*nope\.csv.*missing"):
        ts.read_texts(table, "test", test_path=tmp_path / "nope.csv")


def test_copies_in_a_folder_of_class_folders_are_held_out_together(tmp_path: Path) -> None:
    # Held out by name alone, a text saved twice ("12 (copy).txt") fell on each side: the test
    # set scored texts the search trained on.
    root = tmp_path / "reviews"
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for i in range(60):
            (root / label / f"{i:02d}.txt").write_text(f"{label} words {i}")
            copy = f"{label.upper()} words,\t{i}!\n"
            (root / label / f"{i:02d} (copy).TXT").write_text(copy)
    train = ts.read_texts(root, "train")
    test = ts.read_texts(root, "test", classes=train.classes)
    seen = {as_tokens(text) for text in train.texts}
    assert test.texts and not {as_tokens(text) for text in test.texts} & seen
    assert len(train.texts) + len(test.texts) == 240


def test_a_folder_of_class_folders_holds_out_a_share_of_each_class(tmp_path: Path) -> None:
    root = tmp_path / "reviews"
    counts = {"neg": 2, "pos": 40}
    for label, count in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(count):
            (root / label / f"{i:02d}.txt").write_text(f"{label} {i}")
    train = ts.read_texts(root, "train")
    test = ts.read_texts(root, "test", classes=train.classes)
    # Every class on both sides, even a class of two.
    assert np.bincount(test.labels)[0] == 1 and 1 <= np.bincount(test.labels)[1] < 40
    assert sorted(train.texts + test.texts) == sorted(
        f"{label} {i}" for label, count in counts.items() for i in range(count)
    )
    # One folder above it, as an archive unpacks, reads the same; files added later join
    # one side and move no other.
    assert ts.read_texts(tmp_path, "test").texts == test.texts
    for i in range(40, 60):
        (root / "pos" / f"{i:02d}.txt").write_text(f"pos {i}")
    again = ts.read_texts(root, "test")
    assert set(test.texts) <= set(again.texts)
    assert not ts.has_test_split(root) and ts.has_test_split(write_folder(tmp_path / "split"))


@pytest.mark.parametrize(
    ("columns", "key", "name"),
    [
        (ts.TextColumns(), "text_column", "text"),
        (ts.TextColumns(text="body"), "label_column", "label"),
        (ts.TextColumns(text="body", label="topic", group="user"), "group_column", "user"),
    ],
)
def test_missing_column_names_it_the_columns_found_and_the_key(
    tmp_path: Path, columns: ts.TextColumns, key: str, name: str
) -> None:
    path = write_table(tmp_path / "train.csv", TRAIN_ROWS)
    with pytest.raises(ConfigError) as caught:
        ts.read_texts(path, "train", columns=columns)
    message = str(caught.value)
    assert f"no column '{name}'" in message
    assert "['body', 'topic', 'author']" in message
    assert f"`{key}`" in message


def test_empty_texts_and_missing_labels_are_dropped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,label,g\nkeep one,x,\n,y,u\n"   ",x,u\nno label,,v\nkeep two,y,v\n')
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(path, "train", columns=ts.TextColumns(group="g"), test_path=path)
    assert read.texts == ["keep one", "keep two"]
    assert read.labels.tolist() == [0, 1]
    assert read.groups is not None
    assert read.groups.tolist() == ["<row 0>", "v"]  # a row without a group is its own group
    assert "dropped 3 of 5 train rows (2 with empty text, 1 without label)" in caplog.text


def test_labels_spelled_as_a_missing_value_are_kept_and_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "NaN", "nan" and "NA" were classes of their own with nothing said, where data.md said
    # that rows with no label are dropped.
    labels = ["pos", "NaN", "neg", "nan", "NA", "pos", "neg", "none"]
    path = write_table(tmp_path / "train.csv", {"text": list("abcdefgh"), "label": labels})
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(path, "train", test_path=path)
    assert read.classes == ["NA", "NaN", "nan", "neg", "none", "pos"]
    assert "3 row(s) are labelled 'NA' or 'NaN' or 'nan', as a spreadsheet or pandas" in caplog.text
    assert "kept as classes. If they have no label, empty those cells" in caplog.text
    caplog.clear()
    plain = write_table(tmp_path / "plain.csv", {"text": list("ab"), "label": ["NAN ", "pos"]})
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        ts.read_texts(plain, "train", test_path=plain)
    assert "1 row(s) are labelled 'NAN', as" in caplog.text and "kept as a class." in caplog.text


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_labels_are_read_without_surrounding_whitespace_in_train_and_test(
    tmp_path: Path, suffix: str
) -> None:
    # "pos " (a spreadsheet cell with a trailing space) was a class of its own beside "pos".
    train = write_table(
        tmp_path / f"train{suffix}",
        {"text": list("abcdef"), "label": ["pos", "pos ", " neg", "neg\t", "pos", "  "]},
    )
    test = write_table(
        tmp_path / f"test{suffix}", {"text": list("xyz"), "label": [" pos ", "neg", "neg "]}
    )
    read = ts.read_texts(train, "train", test_path=test)
    assert read.classes == ["neg", "pos"]
    assert read.texts == list("abcde")  # a label of spaces alone is no label
    assert read.labels.tolist() == [1, 1, 0, 0, 1]
    held = ts.read_texts(train, "test", test_path=test, classes=read.classes)
    assert held.labels.tolist() == [1, 0, 0]


def test_test_labels_must_match_train_classes(tmp_path: Path) -> None:
    train = write_table(tmp_path / "train.csv", {"text": list("abc"), "label": list("xyz")})
    unknown = write_table(tmp_path / "u.csv", {"text": list("abc"), "label": list("xyq")})
    with pytest.raises(ConfigError, match=r"unknown \['q'\], without examples \['z'\]"):
        ts.read_texts(train, "test", test_path=unknown, classes=["x", "y", "z"])
    fewer = write_table(tmp_path / "f.csv", {"text": list("ab"), "label": list("xy")})
    with pytest.raises(ConfigError, match=r"unknown \[\], without examples \['z'\]"):
        ts.read_texts(train, "test", test_path=fewer, classes=["x", "y", "z"])


def test_number_labels_read_as_numbers_so_a_train_1_0_is_a_test_1(tmp_path: Path) -> None:
    # A spreadsheet's "0.0"/"1.0" beside a test table's "0"/"1" were four classes; a Parquet float
    # column already read 1.0 as "1".
    train = write_table(tmp_path / "train.csv", {"text": list("abcd"), "label": ["0.0", "1.0"] * 2})
    test = write_table(tmp_path / "test.csv", {"text": list("xyz"), "label": ["1", " 0", "+1"]})
    read = ts.read_texts(train, "train", test_path=test)
    assert read.classes == ["0", "1"]
    held = ts.read_texts(train, "test", test_path=test, classes=read.classes)
    assert held.labels.tolist() == [1, 0, 1]
    halves = write_table(
        tmp_path / "halves.csv", {"text": list("abc"), "label": ["0.50", "1", ".5"]}
    )
    assert ts.read_texts(halves, "train", test_path=test).classes == ["0.5", "1.0"]
    words = write_table(tmp_path / "words.csv", {"text": list("abc"), "label": ["1.0", "nan", "2"]})
    assert ts.read_texts(words, "train", test_path=test).classes == ["1.0", "2", "nan"]


def test_a_test_table_is_checked_from_its_header_alone(tmp_path: Path) -> None:
    train = write_table(
        tmp_path / "train.csv", {"text": list("abc"), "label": ["0.0", "1.0", "2.0"]}
    )
    # Labels train has not: not read before the search (hpo ensemble refuses them).
    fine = write_table(tmp_path / "fine.csv", {"label": ["2", "1", "9"], "text": list("xyz")})
    ts.check_test_table(train, fine)
    with pytest.raises(ConfigError, match=r"has no column 'label' .*columns are \['text', 'y'\]"):
        ts.check_test_table(train, write_table(tmp_path / "y.csv", {"text": ["x"], "y": [0]}))
    with pytest.raises(ConfigError, match=r"has no column 'text' .*columns are \['label'\]"):
        ts.check_test_table(train, write_table(tmp_path / "l.csv", {"label": ["0"]}))
    with pytest.raises(DataError, match=r"the test table .*gone\.csv .* is missing"):
        ts.check_test_table(train, tmp_path / "gone.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: cannot be read as a table"):
        ts.check_test_table(train, tmp_path / "empty.csv")
    ts.check_test_table(train, None)  # no test table: nothing to check


def test_fewer_than_two_classes_is_a_data_error(tmp_path: Path) -> None:
    table = write_table(tmp_path / "one.csv", {"text": ["a", "b"], "label": ["x", "x"]})
    with pytest.raises(DataError, match=r"1 class\(es\) \['x'\].*at least 2"):
        ts.read_texts(table, "train")
    folder = write_folder(tmp_path / "set", {"train": {"only": 2}})
    with pytest.raises(DataError, match="at least 2"):
        ts.read_texts(folder, "train")


def test_locate_prefers_flag_then_env_then_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = write_folder(tmp_path / "flag")
    env = write_table(tmp_path / "env.csv", TRAIN_ROWS)
    study = write_table(tmp_path / "study.tsv", TRAIN_ROWS)
    monkeypatch.setenv(ts.ENV_VAR, str(env))
    assert ts.locate_texts(flag, study) == flag.resolve()
    assert ts.locate_texts(None, study) == env.resolve()
    monkeypatch.delenv(ts.ENV_VAR)
    assert ts.locate_texts(None, str(study)) == study.resolve()


def test_locate_without_data_or_with_a_bad_path_says_how_to_give_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ts.ENV_VAR, raising=False)
    with pytest.raises(DataError, match=r"--data PATH.*\$HPO_TEXT_PATH.*`\[data\] path`"):
        ts.locate_texts(None, None)
    with pytest.raises(DataError, match=r"--data points at .*nope, which does not exist"):
        ts.locate_texts(tmp_path / "nope", None)
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(DataError, match=r"the study file's data.path .* is not a <root>"):
        ts.locate_texts(None, tmp_path / "notes.json")


def test_texts_in_another_encoding_are_named_with_the_setting_that_reads_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A table Excel saved on Windows (cp1252), another in UTF-16 with its byte-order mark (Excel's
    # "Unicode text"), and a folder with a UTF-8 file that begins with UTF-8's mark.
    rows = "text,label\ncafé crème,négatif\nnaïve,positif\nplain,positif\n"
    windows = tmp_path / "windows.csv"
    windows.write_bytes(rows.encode("cp1252"))
    unicode = tmp_path / "unicode.tsv"
    unicode.write_bytes(rows.replace(",", "\t").encode("utf-16"))
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        default = ts.read_texts(windows, "train", test_path=windows)
    # UTF-8 cannot read it: the bytes become U+FFFD, counted, with the setting that reads them.
    assert default.texts[:2] == ["caf\ufffd cr\ufffdme", "na\ufffdve"]
    assert "2 of 3 table rows held bytes that are not utf-8 (the first: data row 1)" in caplog.text
    assert "[data] encoding" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        for path, encoding in ((windows, "cp1252"), (unicode, "utf-8")):
            read = ts.read_texts(path, "train", test_path=path, encoding=encoding)
            assert read.texts == ["café crème", "naïve", "plain"]
            assert read.classes == ["négatif", "positif"]
    assert caplog.text == ""

    folder = write_folder(tmp_path / "texts", {"train": {"a": 1, "b": 1}})
    (folder / "train" / "a" / "00.txt").write_bytes("\ufeffcrème".encode())
    (folder / "train" / "b" / "00.txt").write_bytes("crème".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(folder, "train")
    assert read.texts == ["crème", "cr\ufffdme"]  # UTF-8's mark is no part of the text
    assert "1 of 2 train files held bytes that are not utf-8 (the first: b/00.txt)" in caplog.text


def test_utf16_without_a_byte_order_mark_is_read_as_utf16_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Read as UTF-8, such a file had a NUL between every two letters: garbage tokens, and for a
    # table a column error asking for text_column 't\x00e\x00x\x00t\x00'.
    counts = {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}}
    folder = write_folder(tmp_path / "texts", counts)
    (folder / "train" / "a" / "00.txt").write_bytes("good film, é".encode("utf-16-le"))
    (folder / "train" / "b" / "01.txt").write_bytes("bad film".encode("utf-16-be"))
    (folder / "train" / "b" / "00.txt").write_bytes(b"padded film\x00")  # UTF-8, one NUL
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(folder, "train")
    assert read.texts == ["good film, é", "train a 1 é", "padded film\x00", "bad film"]
    assert "2 of 4 train files are UTF-16 without a byte-order mark (the first: a/00.txt)" in (
        caplog.text
    )
    caplog.clear()
    table = tmp_path / "wide.csv"
    table.write_bytes("text,label\ngood film,pos\nbad film,neg\n".encode("utf-16-le"))
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        read = ts.read_texts(table, "train", test_path=table)
    assert read.texts == ["good film", "bad film"]
    assert read.classes == ["neg", "pos"]
    assert f"{table} is UTF-16 without a byte-order mark" in caplog.text
    assert 'encoding = "utf-16-le"' in caplog.text
    # Set so, the encoding is read without a word; other encodings are never second-guessed.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=ts.__name__):
        ts.read_texts(table, "train", test_path=table, encoding="utf-16-le")
    assert caplog.text == ""
    assert ts.sniffed_encoding("ab".encode("utf-16-le"), "latin-1") == "latin-1"
    assert ts.sniffed_encoding(b"a\x00", "utf-8") == "utf-8-sig"  # too short to tell


def test_a_csv_of_semicolon_separated_fields_is_read_by_them(tmp_path: Path) -> None:
    # As Excel saves a CSV where the decimal mark is a comma; commas inside the texts stay.
    path = tmp_path / "train.csv"
    path.write_text('text;label;author\n"good, very good";pos;a\nbad;neg;b\n')
    read = ts.read_texts(path, "train", columns=ts.TextColumns(group="author"), test_path=path)
    assert read.texts == ["good, very good", "bad"]
    assert read.classes == ["neg", "pos"]
    assert read.groups is not None
    assert read.groups.tolist() == ["a", "b"]


def test_semicolon_fields_are_told_by_the_header_before_texts_with_commas(
    tmp_path: Path,
) -> None:
    # Read by commas first, the row with three commas stopped pandas ("Expected 1 fields in
    # line 4, saw 4") before the semicolon read was tried.
    rows = ["text;label", "good film;pos", "bad film;neg", "well, it was, you know, fine;pos"]
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("\n".join(rows) + "\n")
    read = ts.read_texts(semicolons, "train", test_path=semicolons)
    assert read.texts == ["good film", "bad film", "well, it was, you know, fine"]
    assert read.labels.tolist() == [1, 0, 1]
    # A comma-separated header keeps commas, whatever semicolons the texts hold; so does a UTF-16
    # one, its header decoded before it is split.
    commas = tmp_path / "commas.csv"
    commas.write_text('text,label\n"one; two; three",pos\nfour;five,neg\n')
    by_commas = ts.read_texts(commas, "train", test_path=commas)
    assert by_commas.texts == ["one; two; three", "four;five"]
    wide = tmp_path / "wide.csv"
    wide.write_bytes("\n".join(rows).encode("utf-16"))
    assert ts.read_texts(wide, "train", test_path=wide).texts == read.texts


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("text,label\nloved it, a lot,pos\nhated it, all,neg\n", r"'loved it' in the first row"),
        ("id,text,label\n1,loved it, a lot,pos\n2,hated it, all,neg\n", r"'1' in the first row"),
        ("text,label\na, b, c,pos\nd, e, f,neg\n", r"has 2 fields more .*'a, b' in the first"),
        ("text;label\nloved it; a lot;pos\nhated it; all;neg\n", r"unquoted semicolon"),
        # An empty first field: pandas gives it as NaN (the message's join failed on it).
        ("text,label\n,a, b,pos\nx,y, z,neg\n", r"',a' in the first row"),
    ],
    ids=["text,label", "id,text,label", "two commas", "semicolons", "empty first field"],
)
def test_texts_with_an_unquoted_comma_in_every_row_are_refused_not_cut(
    tmp_path: Path, content: str, said: str
) -> None:
    # Every data row one field longer than the header: pandas read the first field as the
    # row's index, so each text lost its words before the comma and the search ran at chance.
    path = tmp_path / "train.csv"
    path.write_text(content)
    fix = "Quote each text that holds a"
    with pytest.raises(DataError, match=rf"more than its header: a text holds an unquoted .*{fix}"):
        ts.read_texts(path, "train", test_path=path)
    with pytest.raises(DataError, match=said):
        ts.read_texts(path, "train", test_path=path)
    # The test table's header, read alone before the search, passes: hpo ensemble refuses it.
    train = write_table(tmp_path / "ok.csv", {"text": ["a", "b"], "label": ["neg", "pos"]})
    ts.check_test_table(train, path)


def test_row_names_as_r_writes_them_are_read_as_earlier_releases_read_them(
    tmp_path: Path,
) -> None:
    # R's write.table: a quoted row number before each row, one field more than the header.
    # A first fix refused it as a text with an unquoted comma; earlier releases dropped them.
    path = tmp_path / "r.csv"
    path.write_text('"text","label"\n"1","loved it, a lot","pos"\n"2","hated it","neg"\n')
    read = ts.read_texts(path, "train", test_path=path)
    assert read.texts == ["loved it, a lot", "hated it"]
    assert list(read.classes) == ["neg", "pos"]
    # After a subset or a sort, R's row names are numbers in any order, with gaps.
    path.write_text('"text","label"\n"3","loved it","pos"\n"1","hated it","neg"\n')
    assert ts.read_texts(path, "train", test_path=path).texts == ["loved it", "hated it"]
    # Named rows other than numbers, or unquoted numbers (an id before an unquoted comma),
    # are not told from a text cut short: refused, naming both.
    for content in (
        '"text","label"\n"a","loved it","pos"\n"b","hated it","neg"\n',
        "id,text,label\n1,loved it, a,pos\n2,b, c,neg\n",
        # Quoted ids before texts that R would have quoted too; a name R never writes.
        'id,text,label\n"907",loved it, a lot,pos\n"112",hated it, truly,neg\n',
        '"text","label"\n"3","loved it","pos"\n-1,"hated it","neg"\n',
    ):
        path.write_text(content)
        with pytest.raises(DataError, match=r"first field names each row \(R's write.table"):
            ts.read_texts(path, "train", test_path=path)


def test_rows_that_end_with_a_separator_or_some_with_a_comma_more_are_refused(
    tmp_path: Path,
) -> None:
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("text,label\nloved it,pos,\nhated it,neg,\n")
    with pytest.raises(DataError, match=r"each data row ends with a comma.*Remove the comma"):
        ts.read_texts(trailing, "train", test_path=trailing)
    # Rows of both lengths: pandas names the first longer one; the fix is the same.
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("text,label\nloved it,pos\nhated it, all,neg\n")
    with pytest.raises(DataError, match=r"Expected 2 fields in line 3, saw 3\): .* unquoted comma"):
        ts.read_texts(mixed, "train", test_path=mixed)
    tabs = tmp_path / "tabs.tsv"
    tabs.write_text("text\tlabel\nloved it\ta lot\tpos\nhated it\tall\tneg\n")
    with pytest.raises(DataError, match=r"unquoted tab.*Replace the tabs in the texts"):
        ts.read_texts(tabs, "train", test_path=tabs)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("", "is empty: it holds no header and no rows"),
        ("text,label\n", r"has no rows below its header \['text', 'label'\]"),
        ('text,label\n"good,\nvery good",pos\n"bad, cut', "a quoted field never closes"),
    ],
    ids=["empty", "header only", "cut inside a quote"],
)
def test_a_table_without_rows_or_cut_inside_a_quote_is_named_as_such(
    tmp_path: Path, content: str, said: str
) -> None:
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=said):
        ts.read_texts(path, "train", test_path=path)
