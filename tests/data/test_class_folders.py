"""A class folder that holds no example is named, not dropped without a word."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hpo.data import images
from hpo.data import text_sources as ts
from tests.data.test_images import write_folder as write_images

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_class_folder_without_a_txt_file_is_named_as_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for label in ("neg", "pos"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for n in range(2):
            (tmp_path / "train" / label / f"{n}.txt").write_text(f"{label} {n}")
    (tmp_path / "train" / "neutral").mkdir()
    for name in ("a.md", "b.md"):
        (tmp_path / "train" / "neutral" / name).write_text("neutral")
    (tmp_path / "train" / "empty").mkdir()
    with caplog.at_level(logging.WARNING):
        read = ts.read_texts(tmp_path, "train")
    assert read.classes == ["neg", "pos"]
    neutral, empty = tmp_path / "train" / "neutral", tmp_path / "train" / "empty"
    assert f"{neutral}/ is left out, not a class: its 2 files (such as a.md) are not" in caplog.text
    assert f"{empty}/ is left out, not a class: it is empty, and only .txt files" in caplog.text


def test_an_empty_image_class_folder_is_named_as_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A folder without splits dropped it without a word, where texts said so.
    flat = write_images(tmp_path / "flat", {"photos": {"cat": 4, "dog": 4}}) / "photos"
    split = write_images(tmp_path / "split", {"train": {"cat": 1, "dog": 1}})
    for source, root in ((flat, flat), (split, split / "train")):
        (root / "frog").mkdir()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            read = images.read_split(source, "train")
        assert read.classes == ["cat", "dog"]
        assert f"{root / 'frog'}/ is left out, not a class: it is empty" in caplog.text
