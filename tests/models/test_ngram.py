from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import pytest

from hpo.command_options import open_study
from hpo.config import load_study_config
from hpo.contract import load_keras_file
from hpo.data.batching import predict_bucketed
from hpo.ensemble import build_ensemble
from hpo.ensemble.weighting import Method
from hpo.models import ngram
from hpo.models._masking import NGramHash
from hpo.search import run_search
from hpo.tasks.imdb import IMDB

from ..conftest import write_study
from ..data.test_batching import _padded
from .test_families import _edge

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {"vocab_size": 300, "ngram_dim": 8, "ngram_buckets": 1024, "ngram_dropout": 0.0}


def test_hash_gives_equal_ngrams_equal_ids_and_padding_none() -> None:
    tokens = np.array([[5, 6, 5, 6, 7, 0, 0], [6, 5, 0, 0, 0, 0, 0]], np.int32)
    ids = np.asarray(NGramHash(2, 1024)(tokens))
    assert ids.shape == (2, 6)
    assert ids[0, 0] == ids[0, 2]  # "5 6" twice
    assert ids[0, 0] != ids[1, 0]  # "6 5" is another bigram
    assert np.all(ids[0, :4] > 0) and np.all(ids < 1024)
    assert not ids[0, 4:].any() and not ids[1, 1:].any()  # n-grams that touch padding
    trigrams = np.asarray(NGramHash(3, 1024)(tokens))
    assert trigrams.shape == (2, 5)
    assert np.count_nonzero(trigrams[0]) == 3 and not trigrams[1].any()
    # Shorter than n: no n-gram at all, not an error.
    assert np.asarray(NGramHash(3, 1024)(tokens[:, :2])).shape == (2, 0)


def _reference_hash(x: np.ndarray, n: int, buckets: int) -> np.ndarray:
    """Hash version 2 in numpy: int32 arithmetic wrapping modulo 2^32, then a floor modulo."""
    with np.errstate(over="ignore"):
        width = x.shape[1] - n + 1
        h = np.zeros((len(x), width), np.int32)
        real = np.ones_like(h)
        for offset in range(n):
            part = x[:, offset : offset + width].astype(np.int32)
            h = h * np.int32(1_000_003) + part
            real *= part != 0
        return ((np.mod(h, buckets - 1) + 1) * real).astype(np.int32)


HASH_SCRIPT = """
import sys, numpy as np, keras
from hpo.models._masking import NGramHash
x = np.load(sys.argv[1])
out = [keras.ops.convert_to_numpy(NGramHash(n, 2**18, 2)(x)) for n in (2, 3)]
np.save(sys.argv[2], np.concatenate([out[0][:, 1:], out[1]], axis=1))
print(keras.config.backend())
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_hash_version_2_gives_the_same_ids_on_every_backend(backend: str, tmp_path: Path) -> None:
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec(backend) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{backend} is not installed; .ci/run installs it")
        pytest.skip(f"{backend} is not installed here")
    rng = np.random.default_rng(0)
    # Ids up to the largest vocabulary: h * 1,000,003 overflows int32 from the second token on.
    x = rng.integers(1, 40_002, (8, 60)).astype(np.int32)
    x[:, 45:] = 0
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", HASH_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / "ids.npy")],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip().endswith(backend), result.stderr[-2000:]
    expected = np.concatenate(
        [_reference_hash(x, 2, 2**18)[:, 1:], _reference_hash(x, 3, 2**18)], axis=1
    )
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), expected)
    assert expected.min() == 0 and 0 < expected.max() < 2**18


def test_checkpoints_from_before_hash_versions_keep_version_1() -> None:
    layer = NGramHash.from_config({"n": 2, "buckets": 1024, "name": "hash2"})
    assert layer.version == 1
    tokens = np.array([[5, 6, 7, 0]], np.int32)
    # Version 1's ids, as a checkpoint saved before versions existed computed them.
    h = ((5 * 1_000_003 + 6) % (2**31 - 1), (6 * 1_000_003 + 7) % (2**31 - 1))
    assert np.asarray(layer(tokens)).tolist() == [[h[0] % 1023 + 1, h[1] % 1023 + 1, 0]]
    assert (
        ngram.build({**SMALL, **ngram.DEFAULTS, "vocab_size": 300}).get_layer("hash2").version == 2
    )


@pytest.mark.parametrize("high", [False, True], ids=["low", "high"])
def test_builds_at_the_edges_of_its_space(high: bool) -> None:
    params = {name: _edge(dist, high) for name, dist in ngram.SPACE.items()} | {"vocab_size": 50}
    model = ngram.build(params)
    x = np.random.default_rng(0).integers(0, 50, (3, 27))
    probabilities = np.asarray(model(x, training=False))
    assert probabilities.shape == (3, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    assert len(embeddings) == params["ngram_order"]


def test_defaults_lie_in_its_space_and_the_task_offers_it() -> None:
    for name, dist in ngram.SPACE.items():
        assert dist._contains(dist.to_internal_repr(ngram.DEFAULTS[name])), name
    assert IMDB.families["ngram"] is ngram


def test_padding_and_batching_never_change_a_score() -> None:
    model = ngram.build({**SMALL, "ngram_order": 3})
    x = _padded([0, 1, 2, 3, 9, 40, 80], 96)
    alone = np.concatenate(
        [
            np.asarray(model(row[None, : max(n, 1)]))
            for row, n in zip(x, [0, 1, 2, 3, 9, 40, 80], strict=True)
        ]
    )
    padded = model.predict(x, verbose=0)
    assert np.std(padded) > 1e-4  # the comparison below could not pass by accident
    np.testing.assert_allclose(padded, alone, atol=1e-6)
    np.testing.assert_allclose(predict_bucketed(model, x, batch_size=3), padded, atol=1e-6)


def test_bigrams_learn_what_a_bag_of_words_cannot() -> None:
    """Label 1 when "5 6" occurs, 0 when "6 5" does: both have the same words."""
    rng = np.random.default_rng(0)
    x = rng.integers(10, 300, (600, 20)).astype(np.int32)
    y = rng.integers(0, 2, 600)
    at = rng.integers(0, 19, 600)
    x[np.arange(600), at] = np.where(y == 1, 5, 6)
    x[np.arange(600), at + 1] = np.where(y == 1, 6, 5)

    def accuracy(order: int) -> float:
        keras.utils.set_random_seed(0)
        model = ngram.build({**SMALL, "ngram_order": order})
        model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
        model.fit(x[:400], y[:400], epochs=30, batch_size=50, verbose=0)
        return float(np.mean((model.predict(x[400:], verbose=0)[:, 0] > 0.5) == y[400:]))

    assert accuracy(2) > 0.95
    assert accuracy(1) < 0.7


def test_multi_class_and_a_safe_mode_round_trip(tmp_path: Path) -> None:
    model = ngram.build({**SMALL, "ngram_order": 2, "classes": 4})
    x = _padded([5, 17, 30], 32)
    before = np.asarray(model(x))
    assert before.shape == (3, 4)
    np.testing.assert_allclose(before.sum(axis=1), 1, atol=1e-6)
    path = tmp_path / "ngram.keras"
    model.save(path)
    loaded: Any = load_keras_file(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), before, atol=1e-6)


def test_a_study_searches_it_and_ensembles_it_with_a_convolutional_member(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study_file = write_study(
        tmp_path,
        fake_imdb,
        n_trials=2,
        families='["ngram", "conv1d"]',
        extra="ngram_buckets = [65536]\n",
    )
    config = load_study_config(study_file)
    assert run_search(config, progress=False).finished == 2
    config, study = open_study(study_file, None, None)
    assert {t.params["family"] for t in study.trials} == {"ngram", "conv1d"}
    result = build_ensemble(config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "out")
    # The exported model (raw text in, hashed n-grams computed inside) reproduces the
    # evaluated test predictions.
    export = result.report["export"]
    assert export["max_abs_difference"] <= export["max_tolerance"]
    assert {m["family"] for m in result.report["members"]} == {"ngram", "conv1d"}
