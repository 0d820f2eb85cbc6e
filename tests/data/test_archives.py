"""A data set's archive cut short (an interrupted download or copy) or altered is an error that
says so, from every task's reader, never a traceback of the decompressor's."""

from __future__ import annotations

import tarfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hpo.data import images, imdb, text_sources
from hpo.errors import ConfigError, DataError
from tests.data.test_images import write_folder as write_images
from tests.data.test_text_sources import COUNTS
from tests.data.test_text_sources import write_folder as write_texts

if TYPE_CHECKING:
    from collections.abc import Callable


READERS: dict[str, Callable[[Path], object]] = {
    "imdb": partial(imdb.read_reviews, split="train"),
    "images": partial(images.read_split, split="train"),
    "text": partial(text_sources.read_texts, split="train"),
}


def _archive(folder: Path, arcname: str) -> bytes:
    archive = folder.parent / f"{folder.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive.read_bytes()


def _cut(whole: bytes) -> bytes:
    return whole[: len(whole) // 2]


def _altered(whole: bytes) -> bytes:
    middle = len(whole) // 2
    return (
        whole[:middle] + bytes(b ^ 0xFF for b in whole[middle : middle + 64]) + whole[middle + 64 :]
    )


@pytest.mark.parametrize("damage", [_cut, _altered], ids=["cut short", "altered"])
@pytest.mark.parametrize("task", ["imdb", "images", "text"])
def test_every_reader_names_a_damaged_archive_and_the_fix(
    task: str, damage: Callable[[bytes], bytes], fake_imdb: Path, tmp_path: Path
) -> None:
    folder, arcname = {
        "imdb": (fake_imdb, "aclImdb"),
        "images": (write_images(tmp_path / "pictures", size=(40, 40)), "pictures"),
        "text": (write_texts(tmp_path / "notes"), "notes"),
    }[task]
    whole = _archive(folder, arcname)
    source = tmp_path / "damaged.tar.gz"
    source.write_bytes(damage(whole))
    with pytest.raises(DataError, match="is cut short or damaged") as caught:
        READERS[task](source)
    assert str(source) in str(caught.value)
    assert "Fetch or copy it again" in str(caught.value)


def test_an_uncompressed_archive_cut_at_a_member_s_end_is_not_read_as_whole(
    tmp_path: Path,
) -> None:
    # Python's tarfile reads the members before such a cut as the whole archive, silently.
    folder = write_texts(tmp_path / "notes")
    whole = tmp_path / "notes.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(folder, arcname="notes")
    with tarfile.open(whole) as tar:
        ends = [m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers() if m.isfile()]
    sound = text_sources.read_texts(whole, "train")
    source = tmp_path / "cut.tar"
    for cut in (ends[len(ends) // 2], ends[len(ends) // 2] - 100):  # at a member's end, within
        source.write_bytes(whole.read_bytes()[:cut])
        with pytest.raises(DataError, match="is cut short or damaged"):
            text_sources.read_texts(source, "train")
    assert len(sound.texts) == sum(COUNTS["train"].values())


LOCATORS: dict[str, Callable[[Path], Path]] = {
    "imdb": lambda path: imdb.locate_imdb(path, None),
    "images": lambda path: images.locate_images(path, None, env_var="UNSET", download=False),
    "text": lambda path: text_sources.locate_texts(path, None),
}


@pytest.mark.parametrize("task", sorted(LOCATORS))
def test_a_zip_given_as_data_is_named_with_how_to_unpack_it(tmp_path: Path, task: str) -> None:
    import zipfile

    archive = tmp_path / "flowers.zip"  # as a data set's download often comes
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("train/a/1.txt", "text")
    with pytest.raises(DataError) as raised:
        LOCATORS[task](archive)
    assert f"It is a .zip archive, which hpo does not read: unpack it (unzip {archive} -d " in str(
        raised.value
    )
    assert f"-d {tmp_path / 'flowers'}) and give the folder." in str(raised.value)
    (tmp_path / "notes.bin").write_bytes(b"neither")  # not a zip: no such advice
    with pytest.raises(DataError) as raised:
        LOCATORS[task](tmp_path / "notes.bin")
    assert ".zip" not in str(raised.value)


@pytest.mark.parametrize("task", sorted(LOCATORS))
def test_data_under_an_unknown_users_home_is_named_as_such(task: str) -> None:
    # `--data '~nosuchuser/x'` stopped with Python's bare RuntimeError and its traceback.
    with pytest.raises(ConfigError, match=r"--data is '~no_such_user_hpo/x', whose home folder"):
        LOCATORS[task](Path("~no_such_user_hpo/x"))
