"""Text classification: any labelled text folder or table, binary or multi-class.

`task = "text"` reads the user's own data (`hpo.data.text_sources`: a `<split>/<class>/*.txt`
folder or archive, or a CSV/TSV/Parquet table with a test table of its own), splits off a
seeded validation set that keeps each group (`[data] group_column`) on one side, tokenizes once
per study and trains the same Conv1D / SeparableConv1D families as IMDB, which is this task's
built-in instance (`hpo.tasks.imdb`). Everything here after reading is shared with it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import CategoricalDistribution

from hpo.data import array_cache, batching, stratify, text_cache, text_sources
from hpo.data.holdout import HOLDOUT_RULES
from hpo.data.layout import VAL_SPLIT_SETTINGS, check_split_classes, note_val_split
from hpo.data.tokenizer import Tokenizer
from hpo.errors import ConfigError, DataError
from hpo.models import conv1d, nbsvm, ngram, sepconv1d
from hpo.space import fit_value
from hpo.tasks._base import Task, TestSet, TrialData, source_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hpo.config import StudyConfig
    from hpo.space import Space

__all__ = ["TEXT", "text_task"]

_log = logging.getLogger(__name__)

SPACE: Space = {
    "vocab_size": CategoricalDistribution([10000, 20000, 30000, 40000]),
    "seq_len": CategoricalDistribution([200, 400, 800, 1600]),
}
DEFAULTS = {"vocab_size": 30000, "seq_len": 800}


def token_cache(
    config: StudyConfig,
    source: Path,
    space: Space,
    *,
    name: str,
    extra_settings: Mapping[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The token cache's folder and the settings that key it, from the data's file sizes and
    times alone (nothing is read): the source and every setting that changes the cache's
    content, with the largest vocabulary and sequence length the (narrowed) space allows."""
    settings = {
        **source_settings(config, source),
        **(extra_settings or {}),
        "max_vocab": _largest(space["vocab_size"]),
        "max_len": _largest(space["seq_len"]),
    }
    return array_cache.cache_folder(config.cache_dir, name, settings), settings


def prepare_tokens(
    config: StudyConfig,
    source: Path,
    space: Space,
    *,
    name: str,
    read: Any,
    extra_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Reads and splits the training texts once per study, tokenizes them and caches the arrays
    (in `token_cache`'s folder).

    Args:
        read: `read(config, source)` gives train texts, labels, validation texts, labels and the
            class names; it never reads the test split.

    Returns:
        The cache folder, for `trial_data`.
    """
    folder, settings = token_cache(config, source, space, name=name, extra_settings=extra_settings)
    if array_cache.cached(folder):
        return folder
    _log.info("tokenizing %s (cache miss: %s)", source, folder)
    train_texts, y_train, val_texts, y_val, classes = read(config, source)
    max_vocab, max_len = settings["max_vocab"], settings["max_len"]
    vocabulary, (x_train, x_val) = text_cache.vectorize(
        train_texts, [val_texts], max_vocab=max_vocab, max_len=max_len
    )
    splits = text_cache.TokenizedSplits(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        vocabulary=vocabulary,
        max_len=max_len,
        classes=classes,
    )
    text_cache.save_cached(folder, splits, settings)
    return folder


def encode_test(folder: Path, texts: list[str], labels: np.ndarray, source: Path) -> TestSet:
    """The test texts (read from `source`) encoded with the study's vocabulary, at the cached
    length."""
    x = tokenizer(folder).encode(texts)
    return TestSet(raw=np.array(texts, dtype=object), x=x, y=labels, source=source)


def tokenizer(folder: Path) -> Tokenizer:
    """The study's tokenizer: its vocabulary and length, as the cache was encoded."""
    splits = load(folder)
    return Tokenizer(splits.vocabulary, splits.max_len)


def trial_data(folder: Path, params: Mapping[str, Any]) -> TrialData:
    """Derives one trial's inputs (its vocabulary size and sequence length) from the cache."""
    splits = load(folder)
    return TrialData(
        x_train=member_inputs(splits.x_train, params),
        y_train=splits.y_train,
        x_val=member_inputs(splits.x_val, params),
        y_val=splits.y_val,
    )


def member_inputs(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One trial's inputs (its vocabulary and length) from full-size token ids."""
    return text_cache.derive(x, params["vocab_size"], params["seq_len"])


# How the training reviews are altered for distillation (`augmented`): each token is masked (the
# out-of-vocabulary id) with this probability, or else dropped with this one; then this share of
# the reviews is cut to a window of their tokens, of a share of them drawn between these bounds.
AUGMENT_MASK = 0.1
AUGMENT_DROP = 0.1
AUGMENT_WINDOW = 0.5
AUGMENT_WINDOW_SHARE = (0.1, 0.5)


def augmented(folder: Path, params: Mapping[str, Any], copies: int, seed: int) -> np.ndarray:
    """`copies` altered copies of the training reviews, as one trial's inputs (see
    `Task.augmented`): in each, every token is masked with probability `AUGMENT_MASK` or dropped
    with probability `AUGMENT_DROP`, then a share `AUGMENT_WINDOW` of the reviews keep only a
    window of their tokens (Tang et al. 2019 augment text this way, by masking and n-gram
    sampling, to distil into small models: on a part of a review the teacher is unsure, and its
    probabilities say how). The same seed alters the same tokens for every trial."""
    x = load(folder).x_train
    rows = [
        member_inputs(_altered(x, np.random.default_rng([seed, copy])), params)
        for copy in range(copies)
    ]
    return np.concatenate(rows) if rows else member_inputs(x[:0], params)


def _altered(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Padding (id 0, at the end) stays; the kept tokens close up to the front.
    draw = rng.random(x.shape)
    real = x != 0
    masked = np.where(real & (draw < AUGMENT_MASK), text_cache.OOV_ID, x)
    kept = real & ~((draw >= AUGMENT_MASK) & (draw < AUGMENT_MASK + AUGMENT_DROP))
    # A share AUGMENT_WINDOW of the rows keep only a window of their kept tokens, counted in
    # their order (`rank`).
    lengths = kept.sum(axis=1)
    cut = rng.random(len(x)) < AUGMENT_WINDOW
    size = np.maximum(1, np.round(lengths * rng.uniform(*AUGMENT_WINDOW_SHARE, len(x))))
    start = np.floor(rng.random(len(x)) * np.maximum(lengths - size + 1, 1)).astype(int)
    rank = np.cumsum(kept, axis=1) - 1
    inside = (rank >= start[:, None]) & (rank < (start + size)[:, None])
    kept &= ~cut[:, None] | inside
    order = np.argsort(~kept, axis=1, kind="stable")
    return np.take_along_axis(np.where(kept, masked, 0), order, axis=1).astype(x.dtype)


def build_context(folder: Path) -> dict[str, Any]:
    """Models are built for the data's number of classes (one sigmoid unit for two)."""
    return {"classes": len(load(folder).classes)}


def class_names(folder: Path) -> list[str]:
    """The class names, in label order."""
    return list(load(folder).classes)


def export_preprocessing(folder: Path, params: Mapping[str, Any], backend: str) -> tuple[Any, Any]:
    """The layer from the export's inputs to one trial's token ids, equal to `member_inputs`.

    An export made for TensorFlow (`backend`) takes raw text: a `TextVectorization` with the
    study's vocabulary cut to the trial's. One made for another backend takes the study's token
    ids (`tokenizer.json` beside it makes them): a `RestrictTokens` layer.
    """
    vocab_size, seq_len = params["vocab_size"], params["seq_len"]
    if not _exports_text(backend):
        from hpo.models._tokens import RestrictTokens

        return (vocab_size, seq_len), RestrictTokens(vocab_size, seq_len)
    splits = load(folder)
    layer = text_cache.make_vectorizer(max_len=seq_len, vocabulary=splits.vocabulary[:vocab_size])
    return (vocab_size, seq_len), layer


def raw_input(folder: Path, backend: str) -> Any:
    """The export's input: text strings for TensorFlow (`backend`), else the study's token
    ids."""
    import keras

    if not _exports_text(backend):
        return keras.Input(shape=(load(folder).max_len,), dtype="int32", name="tokens")
    return keras.Input(shape=(), dtype="string", name="review")


def validation(folder: Path) -> TestSet:
    """The validation split: texts spelled back from the cached token ids (`Tokenizer.decode`),
    which encode to the same ids, with the ids and labels.

    Raises:
        DataError: The texts do not encode back to the cached ids.
    """
    splits, study_tokenizer = load(folder), tokenizer(folder)
    texts = study_tokenizer.decode(splits.x_val)
    if not np.array_equal(study_tokenizer.encode(texts), splits.x_val):
        raise DataError(
            f"the validation texts spelled back from the token cache in {folder} do not encode "
            f"to its ids; delete that folder and run hpo search to tokenize the data again."
        )
    return TestSet(np.array(texts, dtype=object), splits.x_val, splits.y_val, folder)


def _exports_text(backend: str) -> bool:
    """Whether an export made for `backend` takes raw text: `TextVectorization` needs
    TensorFlow's string ops, so a text study made on JAX or PyTorch exports token ids, even
    where TensorFlow writes its SavedModel."""
    return backend == "tensorflow"


def cost_shape(params: Mapping[str, Any]) -> tuple[int, ...]:
    """Models are costed at the trial's full sequence length."""
    return (params["seq_len"],)


def epoch_examples(x: np.ndarray, batch_size: int, params: Mapping[str, Any]) -> float:
    """Full-length equivalents of the token positions one bucketed epoch computes."""
    lengths = batching.token_lengths(x)
    return batching.computed_tokens(lengths, batch_size, x.shape[1]) / params["seq_len"]


def load(folder: Path) -> text_cache.TokenizedSplits:
    """The cached, tokenized splits in `folder`."""
    splits = text_cache.load_cached(folder)
    if splits is None:
        raise FileNotFoundError(f"no tokenized data in {folder}; run the search to prepare it")
    return splits


def _largest(dist: Any) -> int:
    if isinstance(dist, CategoricalDistribution):
        return max(int(c) for c in dist.choices)  # type: ignore[arg-type]
    return int(dist.high)


def text_task(
    name: str,
    *,
    locate: Callable[[StudyConfig, str | None], Path],
    prepare: Callable[[StudyConfig, str | None, Space], Path],
    cache_folder: Callable[[StudyConfig, Path, Space], Path],
    load_test: Callable[[StudyConfig, str | None, Path], TestSet],
    fingerprint: Callable[[Path], str] = text_cache.fingerprint,
) -> Task:
    """A text task: its own data reading, and the shared tokens, batches and families."""
    return Task(
        name=name,
        families={"conv1d": conv1d, "sepconv1d": sepconv1d, "ngram": ngram, "nbsvm": nbsvm},
        space=SPACE,
        defaults={key: fit_value(SPACE[key], value) for key, value in DEFAULTS.items()},
        locate=locate,
        fingerprint=fingerprint,
        prepare=prepare,
        cache_folder=cache_folder,
        trial_data=trial_data,
        load_test=load_test,
        member_inputs=member_inputs,
        build_context=build_context,
        class_names=class_names,
        export_preprocessing=export_preprocessing,
        raw_input=raw_input,
        validation=validation,
        dataset=batching.bucketed_dataset,
        predict=batching.predict_bucketed,
        cost_shape=cost_shape,
        epoch_examples=epoch_examples,
        padded=True,
        tokenizer=tokenizer,
        augmented=augmented,
    )


# The user's own data.


def _locate(config: StudyConfig, data_arg: str | None) -> Path:
    return text_sources.locate_texts(data_arg, config.data.path)


def _columns(config: StudyConfig) -> text_sources.TextColumns:
    return text_sources.TextColumns(
        text=config.data.text_column, label=config.data.label_column, group=config.data.group_column
    )


def _test_path(config: StudyConfig) -> Path | None:
    """The test table, absolute. A relative one is the folder's this runs in (a configuration
    made in Python), except in a configuration read from a study store (`import_families` is
    False there): an hpo before test_path was recorded absolute recorded it relative to the
    folder its search ran in, which `recorded_config` places where it can tell that folder."""
    if not config.data.test_path:
        return None
    path = Path(config.data.test_path)
    if not path.is_absolute() and not config.import_families:
        raise ConfigError(
            f"study {config.name!r} records [data] test_path {path} relative to the folder its "
            f"search ran in, which it does not record (hpo recorded it so before it recorded "
            f"test_path absolute); it is not read from this folder, where it may name another "
            f"table. Pass the study's file, --study FILE, from whose folder test_path is read."
        )
    return path.resolve()


def _read_own(
    config: StudyConfig, source: Path
) -> tuple[list[str], np.ndarray, list[str], np.ndarray, list[str]]:
    data = text_sources.read_texts(
        source,
        "train",
        columns=_columns(config),
        test_path=_test_path(config),
        test_fraction=config.data.test_fraction,
        encoding=config.data.encoding,
    )
    if text_sources.has_val_split(source):
        note_val_split(source, config.data.val_size)
        val_part = text_sources.read_texts(
            source, "val", classes=data.classes, encoding=config.data.encoding
        )
        train = np.arange(len(data))
    else:
        train, val = stratify.grouped_split(
            data.labels,
            data.groups,
            config.data.val_size,
            config.data.seed,
            data.classes,
            held_out=not text_sources.has_test_split(source, _test_path(config)),
        )
        val_part = data.take(val)
    if config.data.train_size:
        train = stratify.stratified_subset(
            data.labels, train, config.data.train_size, config.data.seed
        )
    train_part = data.take(train)
    return train_part.texts, train_part.labels, val_part.texts, val_part.labels, data.classes


def _own_settings(config: StudyConfig, source: Path) -> dict[str, Any]:
    """What the cache of the user's own texts depends on besides `token_cache`'s settings."""
    columns, test_path = _columns(config), _test_path(config)
    extra: dict[str, Any] = {
        "columns": [columns.text, columns.label, columns.group],
        "test_path": None if test_path is None else str(test_path),
    }
    if not text_sources.has_test_split(source, test_path):
        extra["test_fraction"] = config.data.test_fraction
        extra["holdout_rules"] = HOLDOUT_RULES
    if text_sources.has_val_split(source):
        extra.update(VAL_SPLIT_SETTINGS)
    if config.data.encoding != text_sources.ENCODING:  # the default's caches keep their keys
        extra["encoding"] = config.data.encoding
    if text_sources.is_table(source):  # labels read by other rules may name other classes
        extra["label_rules"] = text_sources.LABEL_RULES
    return extra


def _own_cache_folder(config: StudyConfig, source: Path, space: Space) -> Path:
    extra = _own_settings(config, source)
    return token_cache(config, source, space, name="text", extra_settings=extra)[0]


def _prepare_own(config: StudyConfig, data_arg: str | None, space: Space) -> Path:
    source = _locate(config, data_arg)
    text_sources.check_test_path(source, _test_path(config))
    check_split_classes(source, ".txt")
    folder = prepare_tokens(
        config,
        source,
        space,
        name="text",
        read=_read_own,
        extra_settings=_own_settings(config, source),
    )
    # The test table's header is checked before the search; its rows (its labels included)
    # only by hpo ensemble, once, as it reads them.
    text_sources.check_test_table(
        source, _test_path(config), columns=_columns(config), encoding=config.data.encoding
    )
    return folder


def _load_own_test(config: StudyConfig, data_arg: str | None, folder: Path) -> TestSet:
    source, test_path = _locate(config, data_arg), _test_path(config)
    # A study searched before the check was: its ensemble would score its training rows.
    text_sources.check_test_path(source, test_path)
    test = text_sources.read_texts(
        source,
        "test",
        columns=_columns(config),
        test_path=test_path,
        classes=class_names(folder),
        test_fraction=config.data.test_fraction,
        encoding=config.data.encoding,
    )
    # A table's test split is a table of its own; a folder's or archive's is inside it.
    return encode_test(folder, test.texts, test.labels, test_path or source)


TEXT = text_task(
    "text",
    locate=_locate,
    prepare=_prepare_own,
    cache_folder=_own_cache_folder,
    load_test=_load_own_test,
)
