from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.config import load_study_config
from hpo.data import array_cache, text_cache
from hpo.study import search_space
from hpo.tasks import imdb as imdb_task

from ..conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path

TEXTS = ["The cat sat on the mat. It was good!", "a dog, a cat and zebras", "mat mat mat dog"] * 4


def test_derive_matches_a_restricted_vectorizer() -> None:
    vocabulary, (x,) = text_cache.vectorize(TEXTS, [], max_vocab=9, max_len=7)
    assert vocabulary[:2] == ["", "[UNK]"]
    layer = text_cache.make_vectorizer(max_len=4, vocabulary=vocabulary[:5])
    expected = np.asarray(layer(np.array(TEXTS, dtype=object)))
    derived = text_cache.derive(x, vocab_size=5, seq_len=4)
    np.testing.assert_array_equal(derived, expected)
    assert derived.max() < 5
    with pytest.raises(ValueError, match="exceeds"):
        text_cache.derive(x, vocab_size=5, seq_len=8)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    vocabulary, (x_train, x_val) = text_cache.vectorize(TEXTS, [TEXTS[:3]], max_vocab=20, max_len=6)
    splits = text_cache.TokenizedSplits(
        x_train=x_train,
        y_train=np.arange(len(TEXTS)) % 2,
        x_val=x_val,
        y_val=np.array([0, 1, 0]),
        vocabulary=vocabulary,
        max_len=6,
    )
    folder = tmp_path / "cache" / "key"
    assert text_cache.load_cached(folder) is None
    text_cache.save_cached(folder, splits, {"a": 1})
    loaded = text_cache.load_cached(folder)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.x_train, x_train)
    np.testing.assert_array_equal(loaded.y_val, splits.y_val)
    assert loaded.vocabulary == vocabulary
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]


def test_cache_key_changes_with_settings() -> None:
    assert array_cache.cache_key({"a": 1}) == array_cache.cache_key({"a": 1})
    assert array_cache.cache_key({"a": 1}) != array_cache.cache_key({"a": 2})


def test_prepare_hits_the_cache_and_misses_on_changed_settings(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_study_config(write_study(tmp_path, fake_imdb))
    space = search_space(imdb_task.IMDB, config.space).shared
    calls: list[int] = []
    real_vectorize = text_cache.vectorize

    def counting_vectorize(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real_vectorize(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(text_cache, "vectorize", counting_vectorize)
    first = imdb_task.prepare(config, None, space)
    assert imdb_task.prepare(config, None, space) == first
    assert len(calls) == 1
    data = imdb_task.IMDB.trial_data(first, {"vocab_size": 12, "seq_len": 50})
    assert data.x_train.shape == (240 - 60, 50)
    assert data.x_val.shape == (60, 50)
    assert data.x_train.max() < 12

    changed = config.with_overrides(data=type(config.data)(path=config.data.path, val_size=40))
    second = imdb_task.prepare(changed, None, space)
    assert second != first
    assert len(calls) == 2
