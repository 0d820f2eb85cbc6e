"""Walking a data folder: symbolic links followed, each folder read once."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from hpo.data.holdout import check_test_classes, held_out, visible_files
from hpo.errors import ConfigError
from hpo.tasks._base import folder_signature

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
    with pytest.raises(ConfigError, match="differ only in how their accented letters are encoded"):
        check_test_classes(tmp_path)
