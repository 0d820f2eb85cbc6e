from __future__ import annotations

import numpy as np
import pytest

from hpo.data.batching import (
    batch_plan,
    batch_width,
    bucketed_dataset,
    computed_tokens,
    predict_bucketed,
    token_lengths,
)
from hpo.models import conv1d, sepconv1d


def _padded(lengths: np.ndarray, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), width), np.int32)
    for row, length in enumerate(lengths):
        x[row, :length] = rng.integers(2, 300, length)
    return x


def test_plan_uses_every_row_once_and_groups_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 600, 1000)
    plan = batch_plan(lengths, 16, np.random.default_rng(1), chunk_batches=8)
    rows = np.concatenate(plan)
    assert sorted(rows.tolist()) == list(range(1000))
    assert len(plan) == -(-1000 // 16)
    spread = np.mean([np.ptp(lengths[b]) for b in plan])
    assert spread < 0.2 * np.ptp(lengths)
    again = batch_plan(lengths, 16, np.random.default_rng(2), chunk_batches=8)
    assert [b.tolist() for b in again] != [b.tolist() for b in plan]


def _epoch(dataset: object) -> list[tuple[np.ndarray, np.ndarray]]:
    """One pass over a `tf.data` dataset (TensorFlow) or a `PyDataset` (other backends)."""
    if hasattr(dataset, "as_numpy_iterator"):
        return list(dataset.as_numpy_iterator())
    batches = [dataset[i] for i in range(len(dataset))]  # type: ignore[index, arg-type]
    dataset.on_epoch_end()  # type: ignore[attr-defined]
    return batches


def test_dataset_batches_are_cut_keep_labels_and_reshuffle_each_epoch() -> None:
    lengths = np.array([3, 50, 7, 0, 120, 9, 64, 33, 2, 77])
    x = _padded(lengths, 128)
    y = np.arange(10, dtype=np.float32)  # a label that names its row
    dataset = bucketed_dataset(x, y, 4, seed=5)
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in _epoch(dataset):
            rows = yb.astype(int)
            assert xb.shape[1] == batch_width(lengths[rows], 128)
            assert xb.shape[1] % 8 == 0 or xb.shape[1] == 128
            np.testing.assert_array_equal(xb, x[rows, : xb.shape[1]])
            assert not x[rows, xb.shape[1] :].any()
            seen += rows.tolist()
        assert sorted(seen) == list(range(10))
        epochs.append(seen)
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("family", [conv1d, sepconv1d])
@pytest.mark.parametrize("pool", ["max", "average"])
def test_bucketed_predictions_equal_padded_ones(family: object, pool: str) -> None:
    lengths = np.random.default_rng(3).integers(1, 90, 40)
    lengths[0] = 0
    x = _padded(lengths, 96)
    params = {
        **family.DEFAULTS,  # type: ignore[attr-defined]
        "vocab_size": 300,
        "seq_len": 96,
        "embedding_dim": 8,
        "filters": 8,
        "blocks": 3,
        "branches": 2,
        "block_pool": pool,
        "global_pool": pool,
        "batch_norm": True,
        "residual": True,
        "dense_units": 8,
    }
    model = family.build(params)  # type: ignore[attr-defined]
    padded = model.predict(x, batch_size=40, verbose=0)
    assert np.std(padded) > 1e-4  # the comparison below could not pass by accident
    np.testing.assert_allclose(predict_bucketed(model, x, batch_size=6), padded, atol=1e-5)
    alone = np.concatenate(
        [model.predict(x[i : i + 1, : max(1, n)], verbose=0) for i, n in enumerate(lengths)]
    )
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_computed_tokens_counts_real_tokens_and_the_padding_left() -> None:
    lengths = np.array([8, 8, 16, 16, 100])
    x = _padded(lengths, 128)
    np.testing.assert_array_equal(token_lengths(x), lengths)
    assert computed_tokens(lengths, 2, 128) >= lengths.sum()
    assert computed_tokens(lengths, 1, 128) == 8 + 8 + 16 + 16 + 104


def test_a_compiling_backend_meets_a_handful_of_widths() -> None:
    from hpo.data import batching

    lengths = np.arange(1, 1601)
    widths = {batching.batch_width(lengths[i : i + 1], 1600) for i in range(len(lengths))}
    assert len(widths) == 200  # multiples of 8
    batching.use_width_ladder(True)
    try:
        laddered = {batching.batch_width(lengths[i : i + 1], 1600) for i in range(len(lengths))}
        # Every row still fits its batch, from a handful of shapes: 32, 64, ..., 1024, 1600.
        assert laddered == {32, 64, 128, 256, 512, 1024, 1600}
        assert all(
            batching.batch_width(lengths[i : i + 1], 1600) >= lengths[i] for i in range(1600)
        )
    finally:
        batching.use_width_ladder(False)


def test_restricted_tokens_in_an_export_equal_a_trial_s_inputs() -> None:
    from hpo.data.text_cache import derive
    from hpo.models._tokens import RestrictTokens

    x = np.random.default_rng(0).integers(0, 500, (6, 40)).astype(np.int32)
    restricted = np.asarray(RestrictTokens(vocab_size=100, seq_len=25)(x))
    np.testing.assert_array_equal(restricted, derive(x, vocab_size=100, seq_len=25))


def test_an_evaluation_plan_is_the_rows_sorted_by_length_in_batches() -> None:
    lengths = np.array([5, 1, 9, 1, 3, 7, 2])
    plan = batch_plan(lengths, 3)
    # Sorted by length, ties in row order, cut into batches of 3, the last one short.
    assert [b.tolist() for b in plan] == [[1, 3, 6], [4, 0, 5], [2]]


def test_a_training_plan_sorts_within_chunks_and_keeps_full_batches() -> None:
    lengths = np.arange(40)[::-1].copy()  # row i has 39 - i tokens
    plan = batch_plan(lengths, 4, np.random.default_rng(0), chunk_batches=2)
    assert sorted(len(b) for b in plan) == [4] * 10
    assert sorted(np.concatenate(plan).tolist()) == list(range(40))
    for rows in plan:
        # Each batch is length-sorted (ascending) within its chunk of 8 rows.
        assert np.all(np.diff(lengths[rows]) >= 0), lengths[rows]
    # A batch of the last chunk (8 rows) and a short batch when 8 does not divide the rows.
    short = batch_plan(np.arange(10), 4, np.random.default_rng(0), chunk_batches=2)
    assert sorted(len(b) for b in short) == [2, 4, 4]


def test_batch_width_rounds_up_to_a_multiple_and_stays_within_the_limit() -> None:
    assert batch_width(np.array([1]), 600) == 8
    assert batch_width(np.array([8]), 600) == 8
    assert batch_width(np.array([9, 3]), 600) == 16
    assert batch_width(np.array([597]), 600) == 600
    assert batch_width(np.array([0, 0]), 600) == 8  # empty rows still get a column
    assert batch_width(np.array([5]), 4) == 4
    assert batch_width(np.array([0]), 1) == 1


def test_a_fixed_plan_is_in_order_or_shuffled_and_covers_every_row() -> None:
    from hpo.data.batching import fixed_plan

    assert [b.tolist() for b in fixed_plan(7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    shuffled = fixed_plan(7, 3, np.random.default_rng(0))
    assert [len(b) for b in shuffled] == [3, 3, 1]
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(7))
    assert np.concatenate(shuffled).tolist() != list(range(7))


def _row_and_width_model() -> object:
    """A model that answers each row with its token sum and the width it was given (and a
    dropout that would change both if a prediction ran in training mode)."""
    import keras
    from keras import ops

    tokens = keras.Input(shape=(None,), dtype="int32")

    def answer(t: object) -> object:
        total = ops.sum(ops.cast(t, "float32"), axis=1)
        width = ops.ones_like(total) * ops.cast(ops.shape(t)[1], "float32")
        return ops.stack([total, width], axis=1)

    return keras.Model(
        tokens, keras.layers.Dropout(0.5, seed=0)(keras.layers.Lambda(answer)(tokens))
    )


def test_predictions_come_back_in_row_order_from_the_widths_each_plan_gives() -> None:
    from hpo.data.batching import cut_predictions

    lengths = np.array([3, 50, 7, 0, 120, 9, 64, 33, 2, 77])
    x = _padded(lengths, 128)
    model = _row_and_width_model()
    sums = x.sum(axis=1)

    bucketed = predict_bucketed(model, x, batch_size=3)  # type: ignore[arg-type]
    np.testing.assert_allclose(bucketed[:, 0], sums)
    # Sorted by length in threes: the batch of each row is cut to its longest, rounded up.
    order = np.argsort(lengths, kind="stable")
    for start in range(0, 10, 3):
        rows = order[start : start + 3]
        assert set(bucketed[rows, 1]) == {batch_width(lengths[rows], 128)}

    padded = predict_bucketed(model, x, batch_size=3, bucketed=False)  # type: ignore[arg-type]
    np.testing.assert_allclose(padded[:, 0], sums)
    assert set(padded[:, 1]) == {128}

    alone = cut_predictions(model, x)  # type: ignore[arg-type]
    np.testing.assert_allclose(alone[:, 0], sums)
    np.testing.assert_array_equal(
        alone[:, 1], [batch_width(lengths[i : i + 1], 128) for i in range(10)]
    )
    assert cut_predictions(model, x[:0]).shape == (0,)  # type: ignore[arg-type]


def test_sample_weights_ride_with_their_rows_on_tf_data_and_a_py_dataset() -> None:
    from hpo.data.batches import PlannedBatches, epoch_batches

    x = np.arange(12, dtype="float32").reshape(6, 2)
    y = np.arange(6) % 2
    weights = np.linspace(0.5, 3.0, 6).astype("float32")
    rows = [np.array([4, 1, 3]), np.array([0, 5, 2])]
    for batches in (
        epoch_batches(x, y, lambda epoch: rows, weights=weights),
        PlannedBatches(x, y, lambda epoch: rows, weights=weights),
    ):
        first = next(iter(batches)) if not isinstance(batches, PlannedBatches) else batches[0]
        inputs, labels, weighed = (np.asarray(part) for part in first)
        np.testing.assert_array_equal(inputs, x[rows[0]])
        np.testing.assert_array_equal(labels, y[rows[0]])
        np.testing.assert_array_equal(weighed, weights[rows[0]])
