from __future__ import annotations

import shutil
import tarfile
from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.data import imdb
from hpo.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path


def test_folder_and_tarball_read_the_same_reviews(fake_imdb: Path, fake_imdb_tarball: Path) -> None:
    from_folder = imdb.read_reviews(imdb.locate_imdb(fake_imdb, None), "train")
    from_tar = imdb.read_reviews(imdb.locate_imdb(fake_imdb_tarball, None), "train")
    assert len(from_folder) == 240
    assert from_folder.texts == from_tar.texts
    np.testing.assert_array_equal(from_folder.labels, from_tar.labels)
    np.testing.assert_array_equal(from_folder.movies, from_tar.movies)
    assert set(from_folder.labels.tolist()) == {0, 1}
    assert all(m.startswith("tt") for m in from_folder.movies)


def test_reading_train_never_reads_test_reviews(fake_imdb: Path, fake_imdb_tarball: Path) -> None:
    for source in (fake_imdb, fake_imdb_tarball):
        train = imdb.read_reviews(imdb.locate_imdb(source, None), "train")
        assert all(text.endswith("train") for text in train.texts)
        test = imdb.read_reviews(imdb.locate_imdb(source, None), "test")
        assert all(text.endswith("test") for text in test.texts)


def test_train_split_reads_an_archive_without_test_members(fake_imdb: Path, tmp_path: Path) -> None:
    archive = tmp_path / "train-only.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_imdb / "train", arcname="aclImdb/train")
    assert len(imdb.read_reviews(archive, "train")) == 240
    with pytest.raises(DataError, match="no test reviews"):
        imdb.read_reviews(archive, "test")


def test_locate_accepts_parent_folder_and_prefers_flag_then_env(
    fake_imdb: Path, fake_imdb_tarball: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert imdb.locate_imdb(fake_imdb.parent, None) == fake_imdb.resolve()
    monkeypatch.setenv(imdb.ENV_VAR, str(fake_imdb_tarball))
    assert imdb.locate_imdb(None, fake_imdb) == fake_imdb_tarball.resolve()
    assert imdb.locate_imdb(fake_imdb, None) == fake_imdb.resolve()
    monkeypatch.delenv(imdb.ENV_VAR)
    assert imdb.locate_imdb(None, fake_imdb) == fake_imdb.resolve()


def test_locate_rejects_a_wrong_path_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"--data.*nope, which does not exist.*HPO_IMDB_PATH"):
        imdb.locate_imdb(tmp_path / "nope", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"--data.*empty, which is neither an aclImdb/ .*task = \"text\""
    ):
        imdb.locate_imdb(tmp_path / "empty", None)


def test_no_data_and_no_network_names_env_var_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("network unreachable")

    monkeypatch.delenv(imdb.ENV_VAR, raising=False)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError, match=r"download .* failed.*--data.*HPO_IMDB_PATH"):
        imdb.locate_imdb(None, None)


def test_missing_urls_file_is_a_clear_error(fake_imdb: Path, tmp_path: Path) -> None:
    copy = tmp_path / "aclImdb"
    shutil.copytree(fake_imdb, copy)
    (copy / "train" / "urls_pos.txt").unlink()
    with pytest.raises(DataError, match=r"urls_pos\.txt"):
        imdb.read_reviews(copy, "train")


def test_split_is_balanced_fixed_and_grouped_by_movie(fake_imdb: Path) -> None:
    reviews = imdb.read_reviews(fake_imdb, "train")
    train, val = imdb.split_by_movie(reviews, val_size=60, seed=1)
    again_train, again_val = imdb.split_by_movie(reviews, val_size=60, seed=1)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert len(val) == 60
    assert (reviews.labels[val] == 1).sum() == (reviews.labels[val] == 0).sum() == 30
    assert not set(reviews.movies[train]) & set(reviews.movies[val])
    assert not set(train) & set(val)
    _, other_val = imdb.split_by_movie(reviews, val_size=60, seed=2)
    assert set(other_val) != set(val)


def test_split_refuses_a_validation_set_too_large(fake_imdb: Path) -> None:
    reviews = imdb.read_reviews(fake_imdb, "train")
    with pytest.raises(DataError, match="val_size=200"):
        imdb.split_by_movie(reviews, val_size=200, seed=0)


@pytest.mark.e2e
def test_real_split_is_balanced_grouped_and_disjoint_from_test(real_imdb: Path) -> None:
    train_reviews = imdb.read_reviews(real_imdb, "train")
    test_reviews = imdb.read_reviews(real_imdb, "test")
    assert len(train_reviews) == len(test_reviews) == 25_000
    train, val = imdb.split_by_movie(train_reviews, val_size=5000, seed=0)
    assert len(val) == 5000
    assert (train_reviews.labels[val] == 1).sum() == 2500
    assert len(train) + len(val) <= 25_000
    assert len(train) >= 19_900
    assert not set(train_reviews.movies[train]) & set(train_reviews.movies[val])
    # The official splits share exactly one movie; validation may hold it, no other test movie.
    shared = set(train_reviews.movies) & set(test_reviews.movies)
    assert len(shared) == 1
    assert set(train_reviews.movies[val]) & set(test_reviews.movies) <= shared
