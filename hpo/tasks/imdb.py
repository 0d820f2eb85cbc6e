"""IMDB movie-review sentiment: the built-in instance of the text task (`hpo.tasks.text`).

What is IMDB's own: where the archive is found (`$HPO_IMDB_PATH` or the official download), its
reader, and its validation split, balanced and grouped by movie, since the test set shares no
movies with the training set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpo.data import imdb
from hpo.tasks.text import encode_test, prepare_tokens, text_task, token_cache

if TYPE_CHECKING:
    from pathlib import Path

    from hpo.config import StudyConfig
    from hpo.space import Space
    from hpo.tasks._base import TestSet

__all__ = ["IMDB", "read_split"]

CLASSES = ["negative", "positive"]


def locate(config: StudyConfig, data_arg: str | None) -> Path:
    """The IMDB source: --data, $HPO_IMDB_PATH, the study file's data.path, or a download."""
    return imdb.locate_imdb(data_arg, config.data.path)


def read_split(
    config: StudyConfig, source: Path
) -> tuple[list[str], np.ndarray, list[str], np.ndarray, list[str]]:
    """The study's training and validation reviews, as raw text, before tokenizing.

    Returns:
        Train texts, train labels, validation texts, validation labels and the class names:
        the rows every trial of the study trains and is scored on (`benchmarks/bench_nbsvm.py`
        fits its linear reference on the same ones). The test split is not read.
    """
    reviews = imdb.read_reviews(source, "train")
    train_index, val_index = imdb.split_by_movie(reviews, config.data.val_size, config.data.seed)
    if config.data.train_size:
        train_index = _balanced_subset(
            reviews.labels, train_index, config.data.train_size, config.data.seed
        )
    train, val = reviews.take(train_index), reviews.take(val_index)
    return train.texts, train.labels, val.texts, val.labels, CLASSES


def prepare(config: StudyConfig, data_arg: str | None, space: Space) -> Path:
    """Tokenizes the training reviews once per study and caches the arrays (see `text`)."""
    return prepare_tokens(config, locate(config, data_arg), space, name="imdb", read=read_split)


def cache_folder(config: StudyConfig, source: Path, space: Space) -> Path:
    """The folder `prepare` caches the tokenized reviews in (see `text.token_cache`)."""
    return token_cache(config, source, space, name="imdb")[0]


def load_test(config: StudyConfig, data_arg: str | None, folder: Path) -> TestSet:
    """Reads the official test reviews and encodes them with the study's vocabulary.

    Only the ensemble's final evaluation calls this; the search never reads the test set.
    """
    source = imdb.locate_imdb(data_arg, config.data.path)
    reviews = imdb.read_reviews(source, "test")
    return encode_test(folder, reviews.texts, reviews.labels, source)


def _balanced_subset(labels: np.ndarray, index: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    parts = [rng.permutation(index[labels[index] == label])[: size // 2] for label in (0, 1)]
    return np.sort(np.concatenate(parts))


IMDB = text_task(
    "imdb", locate=locate, prepare=prepare, cache_folder=cache_folder, load_test=load_test
)
