from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from hpo.command_options import open_study
from hpo.config import load_study_config
from hpo.contract import load_keras_file
from hpo.data.batching import predict_bucketed
from hpo.ensemble import build_ensemble
from hpo.ensemble.weighting import Method
from hpo.models import nbsvm
from hpo.models._nb import NGramFeatures, log_count_ratios
from hpo.search import run_search
from hpo.tasks._base import TrialData
from hpo.tasks.imdb import IMDB
from hpo.training.runner import prepare_model

from ..conftest import write_study
from ..data.test_batching import _padded

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {"vocab_size": 300, "nb_buckets": 1024, "nb_alpha": 1.0, "nb_l2": 0.0}


def _reference_ratios(rows: list[set[int]], labels: list[int], features: int) -> np.ndarray:
    """Wang & Manning's r for two classes, from each text's set of feature ids."""
    p = np.ones(features)
    q = np.ones(features)
    for ids, label in zip(rows, labels, strict=True):
        for i in ids:
            (p if label == 1 else q)[i] += 1
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    r[0] = 0.0
    return r


def test_ratios_count_each_feature_once_per_text_and_padding_never() -> None:
    ids = np.array([[3, 3, 3, 5, 0, 0], [5, 2, 0, 0, 0, 0], [4, 4, 1, 0, 0, 0]])
    labels = np.array([1, 0, 1])
    ratios = log_count_ratios(iter([ids[:2], ids[2:]]), labels, 8, 1, alpha=1.0)
    expected = _reference_ratios([{3, 5}, {5, 2}, {4, 1}], [1, 0, 1], 8)
    assert ratios.shape == (8, 1)
    np.testing.assert_allclose(ratios[:, 0], expected, rtol=1e-6)
    assert ratios[3, 0] > 0 > ratios[2, 0]  # only in positive / only in negative texts


def test_ratios_for_many_classes_are_each_class_against_the_rest() -> None:
    ids = np.array([[1, 2], [2, 3], [3, 1], [1, 1]])
    labels = np.array([0, 1, 2, 0])
    ratios = log_count_ratios(iter([ids]), labels, 4, 3, alpha=0.5)
    assert ratios.shape == (4, 3)
    for c in range(3):
        binary = log_count_ratios(iter([ids]), (labels == c).astype(int), 4, 1, alpha=0.5)
        np.testing.assert_allclose(ratios[:, c], binary[:, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="3 rows for 4 labels"):
        log_count_ratios(iter([ids[:3]]), labels, 4, 1, alpha=1.0)


def test_features_are_words_then_hashed_ngrams_and_padding_stays_zero() -> None:
    tokens = np.array([[5, 6, 5, 6, 0, 0]], np.int32)
    ids = np.asarray(NGramFeatures(3, 300, 1024)(tokens))
    assert ids.shape == (1, 6 + 5 + 4)
    words, bigrams, trigrams = ids[0, :6], ids[0, 6:11], ids[0, 11:]
    np.testing.assert_array_equal(words, tokens[0])
    assert bigrams[0] == bigrams[2] and np.all(bigrams[:3] >= 300)  # "5 6" twice, after words
    assert not bigrams[3:].any() and np.count_nonzero(trigrams) == 2


def _adapted(params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
    model = nbsvm.build(params)
    nbsvm.adapt(model, x, y, params)
    # Trained weights all alike: the score follows the sum of the text's distinct features'
    # ratios (small enough that the sigmoid does not saturate).
    model.get_layer("naive_bayes").kernel.assign(np.full((params["vocab_size"] + 1024, 1), 0.05))
    return model


def test_a_text_scores_its_set_of_features_whatever_the_padding_and_repetition() -> None:
    params = {**SMALL, "nb_order": 2, "classes": 2}
    rng = np.random.default_rng(0)
    x = _padded([12, 30, 7, 25], 40)
    y = rng.integers(0, 2, len(x))
    model = _adapted(params, x, y)
    alone = np.concatenate(
        [np.asarray(model(x[i : i + 1, :n])) for i, n in enumerate([12, 30, 7, 25])]
    )
    np.testing.assert_allclose(np.asarray(model(x)), alone, atol=1e-6)
    np.testing.assert_allclose(predict_bucketed(model, x, 2), alone, atol=1e-6)
    # The same word and bigram sets: {7}, {"7 7"}; "7 8" adds a feature.
    thrice, twice = np.array([[7, 7, 7, 0]], np.int32), np.array([[7, 7, 0, 0]], np.int32)
    np.testing.assert_allclose(np.asarray(model(thrice)), np.asarray(model(twice)), atol=1e-6)
    other = np.array([[7, 7, 8, 0]], np.int32)
    assert not np.allclose(np.asarray(model(other)), np.asarray(model(twice)))


def test_ratios_are_saved_with_the_model(tmp_path: Path) -> None:
    params = {**SMALL, "nb_order": 3, "classes": 4}
    x = _padded([12, 30, 7, 25, 9, 14], 32)
    y = np.array([0, 1, 2, 3, 1, 2])
    model = nbsvm.build(params)
    nbsvm.adapt(model, x, y, params)
    ratios = np.asarray(model.get_layer("naive_bayes").ratios)
    assert np.abs(ratios).max() > 0.1
    before = np.asarray(model(x))
    assert before.shape == (6, 4)
    np.testing.assert_allclose(before.sum(axis=1), 1, atol=1e-6)
    path = tmp_path / "nbsvm.keras"
    model.save(path)
    with warnings.catch_warnings():
        # Loading builds every layer: one that cannot say it is built makes Keras warn.
        warnings.simplefilter("error", UserWarning)
        loaded: Any = load_keras_file(path)
    np.testing.assert_allclose(np.asarray(loaded.get_layer("naive_bayes").ratios), ratios)
    np.testing.assert_allclose(np.asarray(loaded(x)), before, atol=1e-6)


def test_the_runner_sets_the_ratios_from_the_training_split_only() -> None:
    params = {**SMALL, "nb_order": 2, "classes": 2, "family": "nbsvm", "optimizer": "adam"}
    params["learning_rate"] = 1e-2
    x = _padded([12, 30, 7, 25, 9, 14], 32)
    y = np.array([0, 1, 0, 1, 1, 0])
    # Validation rows hold words of their own: had they been counted, their ratios would move.
    x_val = np.where(x > 0, x % 50 + 250, 0)
    data = TrialData(x_train=x, y_train=y, x_val=x_val, y_val=1 - y)
    model, _ = prepare_model(IMDB, params, data)
    features = model.get_layer("features")
    expected = log_count_ratios(
        iter([np.asarray(features(x))]), y, params["vocab_size"] + 1024, 1, alpha=1.0
    )
    np.testing.assert_allclose(np.asarray(model.get_layer("naive_bayes").ratios), expected)


def test_it_learns_a_task_the_words_decide() -> None:
    import keras

    rng = np.random.default_rng(1)
    # Word 10..19 in positive texts, 20..29 in negative ones, amid 100 neutral words.
    n = 400
    y = rng.integers(0, 2, n)
    x = rng.integers(30, 130, (n, 20)).astype(np.int32)
    x[np.arange(n), rng.integers(0, 20, n)] = np.where(y == 1, 10, 20) + rng.integers(0, 10, n)
    params = {**SMALL, "nb_order": 2, "classes": 2}
    model = nbsvm.build(params)
    nbsvm.adapt(model, x[:300], y[:300], params)
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x[:300], y[:300], epochs=5, batch_size=32, verbose=0)
    accuracy = np.mean((np.asarray(model(x[300:]))[:, 0] > 0.5) == y[300:])
    assert accuracy > 0.95


def test_a_study_searches_it_and_ensembles_it_with_a_convolutional_member(
    fake_imdb: Path, tmp_path: Path
) -> None:
    study_file = write_study(
        tmp_path,
        fake_imdb,
        n_trials=2,
        families='["nbsvm", "conv1d"]',
        extra="nb_buckets = [262144]\n",
    )
    config = load_study_config(study_file)
    assert run_search(config, progress=False).finished == 2
    config, study = open_study(study_file, None, None)
    assert {t.params["family"] for t in study.trials} == {"nbsvm", "conv1d"}
    result = build_ensemble(config, study, top=2, method=Method.UNIFORM, out_dir=tmp_path / "out")
    # The exported model (raw text in, features and ratios inside) reproduces the evaluated
    # test predictions.
    export = result.report["export"]
    assert export["max_abs_difference"] <= export["max_tolerance"]
    assert {m["family"] for m in result.report["members"]} == {"nbsvm", "conv1d"}
