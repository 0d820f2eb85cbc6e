"""The `nbconv` family: NBSVM and a SeparableConv1D classifier in one model, probabilities mixed."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.contract import load_keras_file
from hpo.data.batching import predict_bucketed
from hpo.models import nbconv

from ..data.test_batching import _padded

if TYPE_CHECKING:
    from pathlib import Path

SMALL = {
    **nbconv.DEFAULTS,
    "vocab_size": 300,
    "seq_len": 40,
    "nb_buckets": 1024,
    "embedding_dim": 8,
    "filters": 8,
    "dropout": 0.0,
}


def _words_decide(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Word 10..19 in positive texts, 20..29 in negative ones, amid 100 neutral words."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(30, 130, (n, 20)).astype(np.int32)
    x[np.arange(n), rng.integers(0, 20, n)] = np.where(y == 1, 10, 20) + rng.integers(0, 10, n)
    return x, y


def test_it_mixes_the_two_paths_probabilities_by_nb_share_whatever_the_padding() -> None:
    params = {**SMALL, "nb_share": 0.3, "classes": 2}
    x = _padded([12, 30, 7, 25], 40)
    y = np.array([0, 1, 1, 0])
    model = nbconv.build(params)
    nbconv.adapt(model, x, y, params)
    nb = np.asarray(model.get_layer(nbconv.NB_PATH)(x))
    conv = np.asarray(model.get_layer(nbconv.CONV_PATH)(x))
    mixed = np.asarray(model(x))
    assert mixed.shape == (4, 1)
    np.testing.assert_allclose(mixed, 0.3 * nb + 0.7 * conv, atol=1e-6)
    # Cut batches score as padded ones: the runner may cut them to their longest text.
    alone = np.concatenate(
        [np.asarray(model(x[i : i + 1, :n])) for i, n in enumerate([12, 30, 7, 25])]
    )
    np.testing.assert_allclose(mixed, alone, atol=1e-5)
    np.testing.assert_allclose(predict_bucketed(model, x, 2), alone, atol=1e-5)


def test_ratios_are_set_on_the_nbsvm_path_and_saved_with_the_model(tmp_path: Path) -> None:
    params = {**SMALL, "nb_order": 3, "classes": 3}
    x = _padded([12, 30, 7, 25, 9, 14], 32)
    y = np.array([0, 1, 2, 2, 1, 0])
    model = nbconv.build(params)
    nbconv.adapt(model, x, y, params)
    ratios = np.asarray(model.get_layer(nbconv.NB_PATH).get_layer("naive_bayes").ratios)
    assert np.abs(ratios).max() > 0.1
    before = np.asarray(model(x))
    assert before.shape == (6, 3)
    np.testing.assert_allclose(before.sum(axis=1), 1, atol=1e-6)
    path = tmp_path / "nbconv.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded: Any = load_keras_file(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), before, atol=1e-6)


def test_the_convolutional_path_learns_beside_an_nbsvm_path_that_fits_the_texts() -> None:
    """Trained together, the NBSVM path fits the training texts at once; the convolutional path
    must still learn the task on its own (mixing probabilities keeps its gradient)."""
    import keras

    x, y = _words_decide(600, seed=1)
    params = {**SMALL, "nb_order": 1, "nb_l2": 0.0, "classes": 2, "kernel_size": 3}
    keras.utils.set_random_seed(0)
    model = nbconv.build(params)
    nbconv.adapt(model, x[:400], y[:400], params)
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
    model.fit(x[:400], y[:400], epochs=8, batch_size=32, verbose=0)

    def accuracy(path: str) -> float:
        p = np.asarray(model.get_layer(path)(x[400:]))[:, 0]
        return float(np.mean((p > 0.5) == y[400:]))

    assert accuracy(nbconv.NB_PATH) > 0.95
    assert accuracy(nbconv.CONV_PATH) > 0.9


def test_a_study_that_names_it_searches_it(fake_imdb: Path, tmp_path: Path) -> None:
    from hpo.command_options import open_study
    from hpo.config import load_study_config
    from hpo.search import run_search

    from ..conftest import write_study

    study_file = write_study(
        tmp_path,
        fake_imdb,
        n_trials=1,
        families='["nbconv"]',
        extra="nb_buckets = [262144]\nnb_share = [0.6, 0.6]\n",
    )
    assert run_search(load_study_config(study_file), progress=False).finished == 1
    _, study = open_study(study_file, None, None)
    (trial,) = study.trials
    assert trial.params["family"] == "nbconv" and trial.params["nb_share"] == 0.6
    assert trial.value is not None and trial.user_attrs["padding"] == "bucketed"
