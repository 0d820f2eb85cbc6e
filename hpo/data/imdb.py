"""The IMDB Large Movie Review data set: finding it, reading it, and its movie-grouped split."""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpo._paths import expand_user
from hpo.backend import import_keras
from hpo.data.archives import open_archive, zip_hint
from hpo.data.layout import hidden, visible_files
from hpo.data.provenance import given_origin, origin_fix
from hpo.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["ENV_VAR", "Reviews", "locate_imdb", "read_reviews", "split_by_movie"]

ENV_VAR = "HPO_IMDB_PATH"
URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_REVIEW = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_URLS = re.compile(r"aclImdb/(train|test)/urls_(pos|neg)\.txt$")
_MOVIE = re.compile(r"(tt\d+)")


@dataclass(frozen=True)
class Reviews:
    """Reviews of one official split, in a fixed order (label, then review id).

    Attributes:
        texts: Review texts.
        labels: 1 for positive, 0 for negative.
        movies: IMDb title id of the movie each review is about.
    """

    texts: list[str]
    labels: np.ndarray
    movies: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, index: np.ndarray) -> Reviews:
        """Returns the reviews at `index`, in that order."""
        return Reviews([self.texts[i] for i in index], self.labels[index], self.movies[index])


def locate_imdb(data_arg: str | Path | None, study_path: str | Path | None) -> Path:
    """Finds the IMDB data: `--data`, then $HPO_IMDB_PATH, then the study file, then a download.

    Each may name an `aclImdb/` folder, a folder holding one, or an `aclImdb_v1.tar.gz`-style
    archive. Without any of them the official archive is fetched into the Keras cache.

    Raises:
        DataError: A given path is not usable, or nothing is given and the download fails.
    """
    for origin, value in (
        (given_origin(data_arg), data_arg),
        (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None),
        (given_origin(study_path, "the study file's data.path"), study_path),
    ):
        if value is not None:
            return _check_source(expand_user(value, origin), origin)
    keras = import_keras()

    try:
        archive = keras.utils.get_file(origin=URL, extract=False)
    except Exception as exc:
        raise DataError(
            f"IMDB data not found and the download from {URL} failed ({exc}). "
            f"Point --data or ${ENV_VAR} at an aclImdb/ folder or aclImdb_v1.tar.gz archive."
        ) from exc
    return _check_source(Path(archive), "the download")


def _check_source(path: Path, origin: str) -> Path:
    if path.is_file() and tarfile.is_tarfile(path):
        return path.resolve()
    if path.is_dir():
        for candidate in (path, path / "aclImdb"):
            if (candidate / "train" / "pos").is_dir():
                return candidate.resolve()
    if not path.exists():
        raise DataError(
            f"{origin} points at {path}, which does not exist. "
            + origin_fix(origin, f"Fix the path given by --data or ${ENV_VAR}.")
        )
    fix = (
        f"Fix the path given by --data or ${ENV_VAR}; texts of your own (a table, or a folder "
        f'of .txt files by class) are task = "text".'
    )
    raise DataError(
        f"{origin} points at {path}, which is neither an aclImdb/ folder (with train/pos/) nor "
        f"a .tar.gz archive of one.{zip_hint(path)} {origin_fix(origin, fix)}"
    )


def read_reviews(source: Path, split: str) -> Reviews:
    """Reads one official split ("train" or "test") from a folder or an archive.

    Only the members of that split are read: reading "train" never opens a test review.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    texts: dict[tuple[int, int], str] = {}
    urls: dict[int, list[str]] = {}
    for name, read in _members(source, split):
        if match := _REVIEW.search(name):
            label = int(match.group(2) == "pos")
            texts[(label, int(match.group(3)))] = read().decode("utf-8")
        elif match := _URLS.search(name):
            urls[int(match.group(2) == "pos")] = read().decode("utf-8").splitlines()
    if not texts:
        raise DataError(
            f"no {split} reviews found in {source}; expected aclImdb/{split}/pos/*.txt."
        )
    keys = sorted(texts)
    movies = []
    for label, review_id in keys:
        lines = urls.get(label)
        if lines is None or review_id >= len(lines):
            raise DataError(
                f"{source}: aclImdb/{split}/urls_{'pos' if label else 'neg'}.txt is missing or "
                f"has no line for review {review_id}; the movie-grouped split needs it."
            )
        found = _MOVIE.search(lines[review_id])
        movies.append(found.group(1) if found else lines[review_id].strip())
    return Reviews(
        texts=[texts[k] for k in keys],
        labels=np.array([label for label, _ in keys], dtype=np.int32),
        movies=np.array(movies),
    )


def _members(source: Path, split: str) -> Iterator[tuple[str, Callable[[], bytes]]]:
    prefix = f"aclImdb/{split}/"
    if source.is_dir():
        root = source.parent
        for path in visible_files(source / split):
            if path.suffix != ".txt":
                continue
            yield path.relative_to(root).as_posix(), path.read_bytes
        return
    with open_archive(source, "r:*") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if member.isfile() and name.startswith(prefix) and not hidden(name.split("/")):
                handle = archive.extractfile(member)
                assert handle is not None
                yield name, handle.read


def split_by_movie(reviews: Reviews, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits reviews into train and validation indices, keeping each movie on one side.

    The validation side holds `val_size` reviews (rounded down to even), half of each class.
    Movies are taken in a seeded random order while they fit the per-class quota; a few reviews
    of the last movies are dropped from both sides if that is what exact balance costs.

    Returns:
        (train_index, val_index), each sorted.
    """
    per_class = val_size // 2
    counts = {label: int((reviews.labels == label).sum()) for label in (0, 1)}
    if per_class > min(counts.values()) // 2:
        raise DataError(
            f"data.val_size={val_size} leaves too little to train on: the data has "
            f"{counts[0]} negative and {counts[1]} positive reviews. Use a smaller val_size."
        )
    rng = np.random.default_rng(seed)
    movies, inverse = np.unique(reviews.movies, return_inverse=True)
    order = rng.permutation(len(movies))
    taken = {0: 0, 1: 0}
    in_val = np.zeros(len(movies), dtype=bool)
    per_movie = np.zeros((len(movies), 2), dtype=np.int64)
    np.add.at(per_movie, (inverse, reviews.labels), 1)
    for movie in order:
        neg, pos = per_movie[movie]
        if taken[0] + neg <= per_class and taken[1] + pos <= per_class:
            in_val[movie] = True
            taken[0] += int(neg)
            taken[1] += int(pos)
        if taken[0] == per_class and taken[1] == per_class:
            break
    val_mask = in_val[inverse]
    val_index = np.flatnonzero(val_mask)
    # Trim the larger class so the classes are exactly balanced; trimmed reviews are dropped,
    # never moved to the training side, so no movie straddles the split.
    keep = []
    for label in (0, 1):
        of_label = val_index[reviews.labels[val_index] == label]
        keep.append(rng.permutation(of_label)[: min(taken.values())])
    val_index = np.sort(np.concatenate(keep))
    train_index = np.flatnonzero(~val_mask)
    return train_index, val_index
