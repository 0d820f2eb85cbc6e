"""IMDB movie-review sentiment: binary classification of review text."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution

from hpo.data import array_cache, batching, imdb, text_cache
from hpo.models import conv1d, sepconv1d
from hpo.space import fit_value
from hpo.tasks._base import Task, TestSet, TrialData

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from hpo.config import StudyConfig
    from hpo.space import Space

_log = logging.getLogger(__name__)

SPACE: Space = {
    "vocab_size": CategoricalDistribution([10000, 20000, 30000, 40000]),
    "seq_len": CategoricalDistribution([200, 400, 800, 1600]),
}
DEFAULTS = {"vocab_size": 30000, "seq_len": 800}


def locate(config: StudyConfig, data_arg: str | None) -> Path:
    """The IMDB source: --data, $HPO_IMDB_PATH, the study file's data.path, or a download."""
    return imdb.locate_imdb(data_arg, config.data.path)


def prepare(config: StudyConfig, data_arg: str | None, space: Space) -> Path:
    """Tokenizes the training reviews once per study and caches the arrays.

    The vocabulary and sequence length are the largest the (narrowed) space allows; the cache
    is keyed by the data source and every setting that changes its content.

    Returns:
        The cache folder, for `trial_data`.
    """
    source = locate(config, data_arg)
    max_vocab = _largest(space["vocab_size"])
    max_len = _largest(space["seq_len"])
    stat = source.stat()
    settings = {
        "source": str(source),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "val_size": config.data.val_size,
        "train_size": config.data.train_size,
        "seed": config.data.seed,
        "max_vocab": max_vocab,
        "max_len": max_len,
    }
    folder = config.cache_dir / f"imdb-{array_cache.cache_key(settings)}"
    if (folder / "meta.json").is_file():
        return folder
    _log.info("tokenizing %s (cache miss: %s)", source, folder)
    reviews = imdb.read_reviews(source, "train")
    train_index, val_index = imdb.split_by_movie(reviews, config.data.val_size, config.data.seed)
    if config.data.train_size:
        train_index = _balanced_subset(
            reviews.labels, train_index, config.data.train_size, config.data.seed
        )
    train, val = reviews.take(train_index), reviews.take(val_index)
    vocabulary, (x_train, x_val) = text_cache.vectorize(
        train.texts, [val.texts], max_vocab=max_vocab, max_len=max_len
    )
    splits = text_cache.TokenizedSplits(
        x_train=x_train,
        y_train=train.labels,
        x_val=x_val,
        y_val=val.labels,
        vocabulary=vocabulary,
        max_len=max_len,
    )
    text_cache.save_cached(folder, splits, settings)
    return folder


def trial_data(folder: Path, params: Mapping[str, Any]) -> TrialData:
    """Derives one trial's inputs (its vocabulary size and sequence length) from the cache."""
    splits = _load(folder)
    return TrialData(
        x_train=member_inputs(splits.x_train, params),
        y_train=splits.y_train,
        x_val=member_inputs(splits.x_val, params),
        y_val=splits.y_val,
    )


def load_test(config: StudyConfig, data_arg: str | None, folder: Path) -> TestSet:
    """Reads the official test reviews and encodes them with the study's vocabulary.

    Only the ensemble's final evaluation calls this; the search never reads the test set.
    """
    splits = _load(folder)
    source = imdb.locate_imdb(data_arg, config.data.path)
    reviews = imdb.read_reviews(source, "test")
    layer = text_cache.make_vectorizer(max_len=splits.max_len, vocabulary=splits.vocabulary)
    return TestSet(
        raw=np.array(reviews.texts, dtype=object),
        x=text_cache.encode(layer, reviews.texts),
        y=reviews.labels,
    )


def member_inputs(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One trial's inputs (its vocabulary and length) from full-size token ids."""
    return text_cache.derive(x, params["vocab_size"], params["seq_len"])


def export_preprocessing(folder: Path, params: Mapping[str, Any]) -> tuple[Any, Any]:
    """A `TextVectorization` from raw text to one trial's token ids, equal to `member_inputs`."""
    splits = _load(folder)
    vocab_size, seq_len = params["vocab_size"], params["seq_len"]
    layer = text_cache.make_vectorizer(max_len=seq_len, vocabulary=splits.vocabulary[:vocab_size])
    return (vocab_size, seq_len), layer


def build_context(folder: Path) -> dict[str, Any]:
    """Text models need nothing beyond their parameters."""
    return {}


def class_names(folder: Path) -> list[str]:
    """Label 0 is a negative review, 1 a positive one."""
    return ["negative", "positive"]


def raw_input(folder: Path) -> Any:
    """A Keras input of review strings, one per example."""
    import keras

    return keras.Input(shape=(), dtype="string", name="review")


def cost_shape(params: Mapping[str, Any]) -> tuple[int, ...]:
    """Models are costed at the trial's full sequence length."""
    return (params["seq_len"],)


def epoch_examples(x: np.ndarray, batch_size: int, params: Mapping[str, Any]) -> float:
    """Full-length equivalents of the token positions one bucketed epoch computes."""
    lengths = batching.token_lengths(x)
    return batching.computed_tokens(lengths, batch_size, x.shape[1]) / params["seq_len"]


def _load(folder: Path) -> text_cache.TokenizedSplits:
    splits = text_cache.load_cached(folder)
    if splits is None:
        raise FileNotFoundError(f"no tokenized data in {folder}; run the search to prepare it")
    return splits


def _largest(dist: Any) -> int:
    if isinstance(dist, CategoricalDistribution):
        return max(int(c) for c in dist.choices)  # type: ignore[arg-type]
    return int(dist.high)


def _balanced_subset(labels: np.ndarray, index: np.ndarray, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    parts = [rng.permutation(index[labels[index] == label])[: size // 2] for label in (0, 1)]
    return np.sort(np.concatenate(parts))


IMDB = Task(
    name="imdb",
    families={"conv1d": conv1d, "sepconv1d": sepconv1d},
    space=SPACE,
    defaults={name: fit_value(SPACE[name], value) for name, value in DEFAULTS.items()},
    locate=locate,
    fingerprint=text_cache.fingerprint,
    prepare=prepare,
    trial_data=trial_data,
    load_test=load_test,
    member_inputs=member_inputs,
    build_context=build_context,
    class_names=class_names,
    export_preprocessing=export_preprocessing,
    raw_input=raw_input,
    dataset=batching.bucketed_dataset,
    predict=batching.predict_bucketed,
    cost_shape=cost_shape,
    epoch_examples=epoch_examples,
)
