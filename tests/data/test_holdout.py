"""A data folder's layout: split folders told by name, class folders, symbolic links followed
once, and the test split held out of data without one."""

from __future__ import annotations

import logging
import shutil
import tarfile
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from hpo.data import images, text_sources
from hpo.data.holdout import held_out, held_out_root
from hpo.data.layout import check_split_classes, data_splits, visible_files
from hpo.errors import ConfigError, DataError
from hpo.tasks._base import folder_signature
from tests.data.test_images import write_folder as write_images
from tests.data.test_text_sources import COUNTS
from tests.data.test_text_sources import write_folder as write_texts

if TYPE_CHECKING:
    from pathlib import Path


def _classes(root: Path) -> None:
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for n in range(3):
            (root / label / f"{label}{n}.txt").write_text(f"{label} {n}")


def test_a_link_back_up_the_tree_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    _classes(data)
    before = folder_signature(data)
    # `ln -s .. data/pos/loop`: followed, it read pos's files again and again, and neg's as pos's.
    (data / "pos" / "loop").symlink_to("..", target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        assert [p.name for p in visible_files(data / "pos")] == ["pos0.txt", "pos1.txt", "pos2.txt"]
    assert f"left out {data / 'pos' / 'loop'}: it leads to {data}" in caplog.text
    assert folder_signature(data) == before


def test_a_folder_linked_twice_is_read_once_and_a_plain_link_is_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    _classes(data)
    elsewhere.mkdir()
    (elsewhere / "more.txt").write_text("pos 3")
    (data / "pos" / "a").symlink_to(elsewhere, target_is_directory=True)
    (data / "pos" / "b").symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        files = visible_files(data / "pos")
    assert [p.relative_to(data / "pos").as_posix() for p in files] == [
        "a/more.txt",
        "pos0.txt",
        "pos1.txt",
        "pos2.txt",
    ]
    assert f"left out {data / 'pos' / 'b'}" in caplog.text


def test_a_small_class_gives_up_at_most_its_fraction_rounded_up() -> None:
    # 200 classes of 6: by the hash alone, some gave up 4 or 5 of their 6.
    items = [(f"class{c}", f"{c}-{n}.txt") for c in range(200) for n in range(6)]
    test = held_out(items, 0.2)
    per_class = Counter(label for label, _ in test)
    assert set(per_class.values()) <= {1, 2} and len(per_class) == 200
    # A larger class's share is the hash's, about the fraction.
    large = held_out([("a", f"{n}.txt") for n in range(2000)], 0.2)
    assert 360 < len(large) < 440
    # Two items: one a side, whatever the fraction.
    assert len(held_out([("a", "x"), ("a", "y")], 0.9)) == 1


def test_class_folders_spelled_in_two_unicode_forms_are_named_as_such(tmp_path: Path) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    for split, name in (
        ("train", composed),
        ("train", "tea"),
        ("test", decomposed),
        ("test", "tea"),
    ):
        (tmp_path / split / name).mkdir(parents=True)
        (tmp_path / split / name / "1.txt").write_text(name)
    with pytest.raises(ConfigError, match="differ only in how their accented letters are encoded"):
        check_split_classes(tmp_path)


def test_a_class_folder_counts_only_where_it_holds_a_file(tmp_path: Path) -> None:
    # An empty test/frog/ passed before the search, and hpo ensemble failed after it ("missing
    # ['frog']"); an empty train/frog/ beside a filled test/frog/ the same.
    root = write_images(tmp_path / "set", {"train": {"cat": 1, "dog": 1}, "test": {"cat": 1}})
    (root / "train" / "dog" / "more").mkdir()  # a class's files may lie deeper
    (root / "train" / "dog" / "00.png").rename(root / "train" / "dog" / "more" / "00.png")
    (root / "test" / "dog" / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "test" / "dog" / ".ipynb_checkpoints" / "00.png").write_bytes(b"a copy")
    empty = rf"missing \['dog'\], unknown \[\] \({root / 'test' / 'dog'}/ holds no file\)"
    with pytest.raises(ConfigError, match=empty):
        check_split_classes(root)
    (root / "test" / "dog" / "00.png").write_bytes(b"an image")
    check_split_classes(root)
    write_images(root, {"train": {"frog": 0}, "test": {"frog": 1}})
    with pytest.raises(ConfigError, match=rf"unknown \['frog'\] \({root / 'train' / 'frog'}/ hold"):
        check_split_classes(root)
    # Texts count only as .txt files: a class folder of notes is no class.
    texts = write_texts(tmp_path / "texts", COUNTS)
    (texts / "test" / "music").mkdir()
    (texts / "test" / "music" / "notes.md").write_text("not a text")
    check_split_classes(texts, ".txt")
    (texts / "test" / "sport" / "00.txt").rename(texts / "test" / "sport" / "00.md")
    with pytest.raises(ConfigError, match=r"missing \['sport'\], .*sport/ holds no \.txt file"):
        check_split_classes(texts, ".txt")


def _tar(folder: Path, arcname: str) -> Path:
    archive = folder.parent / f"{folder.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


@pytest.mark.parametrize(
    ("train", "test"), [("Training", "Testing"), ("Train", "Test"), ("training", "TESTING")]
)
def test_split_folders_are_told_by_name_in_any_case_and_by_their_other_names(
    tmp_path: Path, train: str, test: str
) -> None:
    # Kaggle's Training/ and Testing/ were read as a folder of two classes named after them.
    counts = {"train": {"cat": 3, "dog": 3}, "test": {"cat": 1, "dog": 1}}
    root = write_images(tmp_path / "pets", counts)
    (root / "train").rename(root / train)
    (root / "test").rename(root / test)
    archive = _tar(root, "pets")
    for source in (root, tmp_path, archive):
        located = images.locate_images(source, None, env_var="UNSET_VAR", download=False)
        assert images.has_test_split(located)
        read = images.read_split(located, "train")
        assert read.classes == ["cat", "dog"] and len(read.y) == 6
        assert len(images.read_split(located, "test", classes=read.classes).y) == 2
    texts = write_texts(tmp_path / "texts", COUNTS)
    (texts / "train").rename(texts / train)
    (texts / "test").rename(texts / test)
    for source in (texts, _tar(texts, "texts")):
        assert text_sources.has_test_split(source)
        read_texts = text_sources.read_texts(source, "train")
        assert read_texts.classes == sorted(COUNTS["train"])
        assert len(read_texts.texts) == sum(COUNTS["train"].values())
    # The test split is no part of what the search reads, under any name.
    before = folder_signature(texts)
    (texts / test / "art" / "new.txt").write_text("test art new")
    assert folder_signature(texts) == before


def test_two_folders_that_name_one_split_are_refused_naming_both(tmp_path: Path) -> None:
    root = write_images(tmp_path / "pets", {"train": {"cat": 1, "dog": 1}})
    write_images(root.parent / "more", {"Training": {"cat": 1, "dog": 1}})
    (root.parent / "more" / "Training").rename(root / "Training")
    both = r"Training/ and train/ both name the train split"
    with pytest.raises(ConfigError, match=both):
        images.locate_images(root, None, env_var="UNSET_VAR", download=False)
    with pytest.raises(ConfigError, match=r"train/ and Training/|Training/ and train/"):
        images.read_split(_tar(root, "pets"), "train")
    texts = write_texts(tmp_path / "texts", {"train": COUNTS["train"], "validation": {"art": 1}})
    (texts / "validation").rename(texts / "Dev")
    (texts / "val" / "art").mkdir(parents=True)  # a split holds class folders
    with pytest.raises(ConfigError, match=r"Dev/ and val/ both name the val split"):
        text_sources.read_texts(texts, "train")


def test_class_folders_of_the_same_subfolders_are_read_as_classes_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # <root>/<split>/<class>/... with split folders hpo does not know by name, or classes of
    # subgroups (cat/{indoor,outdoor}/, which Keras reads): refusing them refused valid data.
    root = write_images(tmp_path / "data", {"seg_train": {"sea": 2, "street": 2}})
    write_images(root, {"seg_test": {"sea": 1, "street": 1}})
    with caplog.at_level(logging.WARNING):
        assert images.read_split(root, "train").classes == ["seg_test", "seg_train"]
    assert "its classes ['seg_test', 'seg_train'] hold no file, each only folders" in caplog.text
    assert "name the splits train/ (or training/), test/" in caplog.text
    subgroups = {"indoor": 3, "outdoor": 3}
    rooms = write_images(tmp_path / "rooms", {"cat": subgroups, "dog": subgroups})
    read, held = images.read_split(rooms, "train"), images.read_split(rooms, "test")
    assert read.classes == held.classes == ["cat", "dog"] and len(read.y) + len(held.y) == 12
    texts = write_texts(tmp_path / "texts", {"part1": COUNTS["train"], "part2": COUNTS["test"]})
    assert text_sources.read_texts(texts, "train").classes == ["part1", "part2"]
    # A class's images in folders of their own (albums), other in each class, are read.
    albums = write_images(tmp_path / "albums", {"cat": {"a": 2, "b": 2}, "dog": {"c": 2, "d": 2}})
    read, held = images.read_split(albums, "train"), images.read_split(albums, "test")
    assert read.classes == held.classes == ["cat", "dog"] and len(read.y) + len(held.y) == 8


def test_a_class_named_as_a_split_among_classes_is_a_class(tmp_path: Path) -> None:
    # vehicles/{Bus,Car,Train}: Train/ was taken as the train split (names in any case), Bus and
    # Car were lost, and the search stopped on "no readable train images".
    vehicles = write_images(tmp_path / "vehicles", {"": {"Bus": 3, "Car": 3, "Train": 3}})
    assert images.read_split(vehicles, "train").classes == ["Bus", "Car", "Train"]
    # A train/ of class folders is a split, whatever is beside it: a test/ of loose files (a
    # competition's unlabelled set) is refused, not read with train/ as two classes.
    texts = write_texts(tmp_path / "texts", {"train": COUNTS["train"]})
    (texts / "test").mkdir()
    (texts / "test" / "0001.txt").write_text("unlabelled")
    assert text_sources.read_texts(texts, "train").classes == sorted(COUNTS["train"])
    with pytest.raises(ConfigError, match=r"its class folders differ from those of"):
        check_split_classes(texts, ".txt")
    extra = write_images(tmp_path / "extra", {"train": {"cat": 3, "dog": 3}, "notes": {"x": 1}})
    assert data_splits(extra) == {"train": extra / "train"}


def test_a_macos_zips_metadata_folder_is_no_class_and_holds_no_example(tmp_path: Path) -> None:
    # Unzipped, a zip made on macOS holds __MACOSX/ beside the data: it made pets/{cat,ship}
    # fail with "1 class(es) ['pets']".
    root = tmp_path / "unzipped"
    write_images(root, {"pets": {"cat": 4, "ship": 4}})
    for path in (root / "pets").rglob("*.png"):
        copy = root / "__MACOSX" / path.relative_to(root).parent / f"._{path.name}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    (root / "__MACOSX" / "pets" / "cat" / "00.png").write_bytes(path.read_bytes())
    located = images.locate_images(root, None, env_var="UNSET_VAR", download=False)
    train = images.read_split(located, "train")
    test = images.read_split(located, "test", classes=train.classes)
    assert train.classes == ["cat", "ship"] and len(train.y) + len(test.y) == 8
    split = write_texts(tmp_path / "texts", COUNTS)
    (split / "__MACOSX" / "train" / "art").mkdir(parents=True)
    (split / "__MACOSX" / "train" / "art" / "00.txt").write_text("metadata")
    for source in (split, _tar(split, "texts")):
        assert "metadata" not in text_sources.read_texts(source, "train").texts


def test_a_val_folder_is_a_split_of_its_own_and_never_a_class(tmp_path: Path) -> None:
    counts = {"train": {"cat": 4, "dog": 4}, "val": {"cat": 1, "dog": 2}}
    root = write_images(tmp_path / "set", counts)
    # No test/: the test split is still held out of train/, and val/ is no class.
    assert held_out_root(root) == root / "train" and held_out_root(tmp_path) == root / "train"
    assert not images.has_test_split(root) and images.has_val_split(root)
    for source in (root, _tar(root, "set")):
        assert images.has_val_split(source)
        val = images.read_split(source, "val", classes=["cat", "dog"])
        assert val.y.tolist() == [0, 1, 1]
    write_images(root, {"test": {"cat": 1, "dog": 1}})
    assert held_out_root(root) is None and images.has_test_split(root)
    assert not images.has_val_split(write_images(tmp_path / "plain", {"train": counts["train"]}))
    texts = write_texts(tmp_path / "texts", {"train": COUNTS["train"], "dev": COUNTS["test"]})
    assert not text_sources.has_test_split(texts) and text_sources.has_val_split(texts)
    for source in (texts, _tar(texts, "texts")):
        read = text_sources.read_texts(source, "val", classes=sorted(COUNTS["train"]))
        assert sorted(read.texts) == sorted(
            f"dev {label} {i} é" for label, n in COUNTS["test"].items() for i in range(n)
        )
    assert "dev" not in text_sources.read_texts(texts, "test").classes
    with pytest.raises(ConfigError, match=r"texts/dev: .*missing \['sport'\]"):
        shutil.rmtree(texts / "dev" / "sport")
        check_split_classes(texts, ".txt")


def test_a_folder_of_one_class_folder_is_refused_naming_it(tmp_path: Path) -> None:
    # It was "neither a <root>/train/<class>/<image> folder, a folder of class folders, ...".
    single = write_images(tmp_path / "edge", {"single": {"cat": 3}}) / "single"
    for given in (single, single.parent):
        with pytest.raises(DataError, match=r"holds one class folder, cat/ .* at least 2"):
            images.locate_images(given, None, env_var="UNSET_VAR", download=False)
    texts = write_texts(tmp_path / "texts", {"reviews": {"pos": 3}}) / "reviews"
    with pytest.raises(DataError, match=r"reviews holds one class folder, pos/ .* at least 2"):
        text_sources.read_texts(texts, "train")


def test_a_folder_named_as_a_val_split_among_class_folders_alone_is_a_class(
    tmp_path: Path,
) -> None:
    # Beside neither train/ nor test/, dev/ may well be a class: tickets for dev, ops and sales.
    tickets = write_texts(tmp_path / "data", {"tickets": {"dev": 5, "ops": 5, "sales": 5}})
    assert not text_sources.has_test_split(tickets) and not text_sources.has_val_split(tickets)
    assert text_sources.read_texts(tickets, "train").classes == ["dev", "ops", "sales"]
