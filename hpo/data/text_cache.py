"""Tokenize a text data set once per study and cache the integer arrays on disk.

Trials that sample a smaller vocabulary or a shorter sequence derive their inputs from the
cached arrays (`derive`), which gives exactly what a `TextVectorization` layer restricted to the
first `vocab_size` entries of the vocabulary and `seq_len` tokens would give: ids past the
vocabulary become the out-of-vocabulary id 1, and sequences keep their first `seq_len` tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.data import array_cache
from hpo.data.tokenizer import Tokenizer

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "OOV_ID",
    "TokenizedSplits",
    "cached_classes",
    "derive",
    "fingerprint",
    "load_cached",
    "save_cached",
    "vectorize",
]

OOV_ID = 1
_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


@dataclass(frozen=True)
class TokenizedSplits:
    """Integer-encoded train and validation data at the study's largest vocabulary and length.

    Attributes:
        x_train, y_train, x_val, y_val: Token ids (int32, shape [n, max_len]) and labels.
        vocabulary: The vocabulary, index = token id (0 = padding, 1 = out of vocabulary).
        max_len: Sequence length of the arrays.
        classes: Class names, label index = position.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    vocabulary: list[str]
    max_len: int
    classes: list[str] = dataclasses.field(default_factory=lambda: ["negative", "positive"])


def fingerprint(folder: Path) -> str:
    """A hash of the cached data itself (token ids, labels, vocabulary), not of where it came
    from: two caches with the same fingerprint hold the same examples in the same split."""
    splits = load_cached(folder)
    if splits is None:
        raise FileNotFoundError(f"no tokenized data in {folder}")
    return array_cache.fingerprint(
        {name: getattr(splits, name) for name in _ARRAYS}, splits.vocabulary
    )


def load_cached(folder: Path) -> TokenizedSplits | None:
    """Loads a cache written by `save_cached`, or returns None if there is none."""
    loaded = array_cache.load_arrays(folder, _ARRAYS)
    if loaded is None:
        return None
    arrays, meta = loaded
    return TokenizedSplits(
        **arrays,
        vocabulary=meta["vocabulary"],
        max_len=meta["max_len"],
        # Caches from before other text tasks were all IMDB's.
        classes=meta.get("classes", ["negative", "positive"]),
    )


def cached_classes(folder: Path) -> list[str]:
    """The class names of the cache in `folder`, read from its record alone (no array)."""
    loaded = array_cache.load_arrays(folder, ())
    if loaded is None:
        raise FileNotFoundError(f"no tokenized data in {folder}")
    return list(loaded[1].get("classes", ["negative", "positive"]))


def save_cached(folder: Path, splits: TokenizedSplits, settings: dict[str, Any]) -> None:
    """Writes the cache atomically (see `hpo.data.array_cache.save_arrays`)."""
    array_cache.save_arrays(
        folder,
        {name: getattr(splits, name) for name in _ARRAYS},
        {
            "settings": settings,
            "vocabulary": splits.vocabulary,
            "max_len": splits.max_len,
            "classes": splits.classes,
        },
    )


def vectorize(
    train_texts: Sequence[str],
    other_texts: Sequence[Sequence[str]],
    *,
    max_vocab: int,
    max_len: int,
) -> tuple[list[str], list[np.ndarray]]:
    """Learns a vocabulary on `train_texts` and encodes them and each of `other_texts`.

    The vocabulary and ids are exactly `TextVectorization`'s (`hpo.data.tokenizer`), computed
    without TensorFlow, so every backend prepares the same cache.

    Returns:
        The vocabulary, and the encoded arrays: train first, then one per `other_texts` entry.
    """
    tokenizer = Tokenizer.fit(train_texts, max_vocab, max_len)
    return tokenizer.vocabulary, [tokenizer.encode(texts) for texts in (train_texts, *other_texts)]


def make_vectorizer(
    *, max_len: int, max_vocab: int | None = None, vocabulary: list[str] | None = None
) -> Any:
    """A Keras `TextVectorization` layer with the project's fixed standardization and split:
    `hpo.data.tokenizer`'s (Keras's default, and NUL as a space)."""
    from keras import layers

    from hpo.models._tokens import standardize_text

    return layers.TextVectorization(
        max_tokens=max_vocab if vocabulary is None else None,
        standardize=standardize_text,
        output_mode="int",
        output_sequence_length=max_len,
        vocabulary=vocabulary,
    )


def derive(x: np.ndarray, vocab_size: int, seq_len: int) -> np.ndarray:
    """Restricts cached token ids to a smaller vocabulary and a shorter sequence."""
    if seq_len > x.shape[1]:
        raise ValueError(f"seq_len {seq_len} exceeds the cached length {x.shape[1]}")
    x = x[:, :seq_len]
    return np.where(x >= vocab_size, OOV_ID, x).astype(np.int32)
