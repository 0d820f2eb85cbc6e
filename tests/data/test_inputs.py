"""Several inputs kept as one structured array: packed, batched and handed back as given."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.data import array_cache
from hpo.data.in_memory import input_array, split_arrays
from hpo.data.inputs import describe, given_as_list, is_several, keras_inputs, model_inputs
from hpo.errors import DataError

if TYPE_CHECKING:
    from pathlib import Path


def _inputs(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(1, 50, size=(n, 6)).astype("int32"), rng.normal(size=(n, 3)).astype(
        "float32"
    )


def test_a_dict_and_a_list_of_inputs_come_back_as_given_from_rows_of_one_array(
    tmp_path: Path,
) -> None:
    tokens, numbers = _inputs()
    by_name = input_array({"tokens": tokens, "numbers": numbers}, "x")
    in_order = input_array([tokens, numbers], "x")
    assert by_name.shape == in_order.shape == (10,)
    assert not given_as_list(by_name) and given_as_list(in_order)
    rows = np.array([7, 2])
    as_dict = model_inputs(by_name[rows])
    assert list(as_dict) == ["numbers", "tokens"]  # by name: Keras matches a dict so
    np.testing.assert_array_equal(as_dict["tokens"], tokens[rows])
    np.testing.assert_array_equal(as_dict["numbers"], numbers[rows])
    assert all(a.flags["C_CONTIGUOUS"] for a in as_dict.values())
    first, second = model_inputs(in_order[rows])
    np.testing.assert_array_equal(first, tokens[rows])
    np.testing.assert_array_equal(second, numbers[rows])
    assert describe(in_order) == (
        "a list of inputs ('input_0': int32 (6,), 'input_1': float32 (3,))"
    )
    # Written, memory-mapped and read back (the study's cache): still a list, still the rows.
    array_cache.save_arrays(tmp_path / "c", {"x": in_order}, {})
    assert array_cache.cached(tmp_path / "c")
    mapped = np.load(tmp_path / "c" / "x.npy", mmap_mode="r")
    assert given_as_list(mapped)
    np.testing.assert_array_equal(model_inputs(mapped[rows])[1], numbers[rows])
    assert array_cache.fingerprint({"x": in_order}, 0) != array_cache.fingerprint({"x": by_name}, 0)
    # Keras inputs named as the data name them.
    import keras

    named = keras_inputs(by_name)
    assert {k: (v.shape, v.dtype) for k, v in named.items()} == {
        "numbers": ((None, 3), "float32"),
        "tokens": ((None, 6), "int32"),
    }
    assert [i.name for i in keras_inputs(in_order)] == ["input_0", "input_1"]
    assert isinstance(keras_inputs(tokens), keras.KerasTensor)


def test_a_list_of_arrays_is_inputs_or_rows_as_the_examples_tell() -> None:
    tokens, numbers = _inputs()
    assert is_several([tokens, numbers], examples=10)
    assert is_several([tokens, numbers])  # two arrays of ten rows: inputs
    rows = list(tokens)
    assert not is_several(rows, examples=10)
    assert not is_several(rows)  # ten arrays of six: rows
    assert not is_several([tokens])  # one array in a list: Keras unwraps it
    # Rows of several lengths (token lists): not inputs, and not an array either.
    ragged = [np.arange(n) for n in range(1, 11)]
    assert not is_several(ragged, examples=10)
    with pytest.raises(DataError, match=r"rows of different lengths.*pad_sequences"):
        split_arrays(ragged, np.arange(10) % 2, validation_split=0.5)
    # The same rows as an array of objects, or a tf.RaggedTensor: named as such too.
    import tensorflow as tf

    as_objects = np.empty(10, dtype=object)
    as_objects[:] = ragged
    for given in (as_objects, tf.ragged.constant([list(r) for r in ragged])):
        with pytest.raises(
            DataError, match=r"different lengths \(1 to 10 values a row\).*to_tensor"
        ):
            split_arrays(given, np.arange(10) % 2, validation_split=0.5)


def test_several_inputs_that_do_not_fit_together_are_refused_naming_the_input() -> None:
    tokens, numbers = _inputs()
    y = np.arange(10) % 2
    with pytest.raises(DataError, match=r"different numbers of examples \(numbers: 9, tokens: 10"):
        split_arrays({"tokens": tokens, "numbers": numbers[:9]}, y, validation_split=0.5)
    mixed = np.array(["good", 1] * 5, dtype=object)
    with pytest.raises(DataError, match=r"input 'text' holds object, neither numbers nor text"):
        split_arrays({"tokens": tokens, "text": mixed}, y, validation_split=0.5)
    with pytest.raises(DataError, match="input names must be strings"):
        split_arrays({0: tokens, 1: numbers}, y, validation_split=0.5)
    with pytest.raises(DataError, match="empty dict"):
        input_array({}, "x")
    with pytest.raises(DataError, match=r"x: input 'scale' is a single value"):
        input_array({"tokens": tokens, "scale": np.float32(1.0)}, "x", examples=10)
    # Validation inputs must be the same inputs, of the same shapes.
    with pytest.raises(DataError, match=r"validation inputs are a dict of inputs \('numbers'"):
        split_arrays(
            {"tokens": tokens, "numbers": numbers},
            y,
            validation_data=({"tokens": tokens, "numbers": numbers[:, :2]}, y),
        )


def test_a_dataset_of_single_examples_is_refused_naming_how_to_batch_it() -> None:
    # KerasTuner's custom training loop guide passes search() unbatched datasets: an image
    # beside a one-hot label read as a batch of 32 inputs and 10 labels.
    import tensorflow as tf

    images = np.zeros((40, 32, 32, 3), np.uint8)
    one_hot = np.eye(10, dtype=np.float32)[np.arange(40) % 10]
    examples = tf.data.Dataset.from_tensor_slices((images, one_hot))
    with pytest.raises(DataError, match=r"x: the dataset yields single examples \(shapes \(\(32, "):
        split_arrays(examples, None, validation_split=0.25)
    with pytest.raises(DataError, match=r"validation_data: the dataset yields single examples"):
        split_arrays(examples.batch(8), None, validation_data=examples)
    # Batched, with a known batch size too (drop_remainder), it reads.
    for batched in (examples.batch(8), examples.batch(8, drop_remainder=True)):
        split = split_arrays(batched, None, validation_split=0.25)
        assert len(split.x_train) + len(split.x_val) == 40


def test_datasets_of_dict_inputs_are_read_once_and_batched_back_as_dicts() -> None:
    import tensorflow as tf

    from hpo.data.batches import PlannedBatches, epoch_batches
    from hpo.data.batching import fixed_plan

    tokens, numbers = _inputs(40)
    y = np.arange(40) % 2
    batches = tf.data.Dataset.from_tensor_slices(({"tokens": tokens, "numbers": numbers}, y))
    split = split_arrays(batches.batch(16), None, validation_split=0.25)
    np.testing.assert_array_equal(split.x_train["tokens"], tokens[:30])
    np.testing.assert_array_equal(split.y_val, y[30:])

    def plan(epoch: int) -> list[np.ndarray]:
        return fixed_plan(30, 16, None)

    for listed in (False, True):
        x = input_array(
            [tokens, numbers] if listed else {"tokens": tokens, "numbers": numbers}, "x"
        )
        # Through tf.data (TensorFlow) and a PyDataset (JAX, PyTorch): labelled, and alone,
        # where a tuple of inputs must not be read as (inputs, labels).
        first = next(iter(epoch_batches(x, y, plan)))
        alone = next(iter(epoch_batches(x, None, plan)))
        planned = PlannedBatches(x, None, plan)[0]
        if listed:
            assert len(first[0]) == 2 and len(alone) == 1 and len(planned) == 1
            np.testing.assert_array_equal(np.asarray(alone[0][1]), numbers[:16])
            np.testing.assert_array_equal(planned[0][0], tokens[:16])
        else:
            np.testing.assert_array_equal(np.asarray(first[0]["tokens"]), tokens[:16])
            np.testing.assert_array_equal(np.asarray(alone["numbers"]), numbers[:16])
            np.testing.assert_array_equal(planned["numbers"], numbers[:16])
        np.testing.assert_array_equal(np.asarray(first[1]), y[:16])


def test_a_model_that_does_not_take_the_inputs_as_given_is_told_each_inputs_shape_and_name() -> (
    None
):
    import keras

    from hpo.errors import ConfigError
    from hpo.training.interface import member_model, read_output

    tokens, numbers = _inputs()
    x = input_array({"tokens": tokens, "numbers": numbers}, "x")
    words = keras.Input(shape=(6,), dtype="int32", name="words")  # not the data's name
    other = keras.Input(shape=(3,), name="numbers")
    joined = keras.layers.Concatenate()(
        [keras.layers.Flatten()(keras.layers.Embedding(50, 2)(words)), other]
    )
    model = keras.Model({"words": words, "numbers": other}, keras.layers.Dense(2)(joined))
    with pytest.raises(
        ConfigError, match=r"keras\.Input\(shape=\(6,\), dtype='int32', name='tokens'\)"
    ):
        read_output(model, x[:4], 2, "mine")
    # Named as the data name them: its logits become the probabilities members give.
    words = keras.Input(shape=(6,), dtype="int32", name="tokens")
    joined = keras.layers.Concatenate()(
        [keras.layers.Flatten()(keras.layers.Embedding(50, 2)(words)), other]
    )
    model = keras.Model({"tokens": words, "numbers": other}, keras.layers.Dense(2)(joined))
    output = read_output(model, x[:4], 2, "mine")
    assert output.from_logits
    member = member_model(model, output, x[:1])
    probabilities = np.asarray(member.predict(model_inputs(x), verbose=0))
    assert probabilities.shape == (10,) or probabilities.shape == (10, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_model_of_text_and_numbers_is_called_on_them_as_tensors_alike() -> None:
    """Keras refuses a call on numpy arrays mixed with tensors: beside text (TensorFlow
    strings), numbers become tensors too."""
    import keras

    from hpo.data.inputs import tensors

    words = keras.Input(shape=(1,), dtype="string", name="words")
    count = keras.Input(shape=(1,), name="count")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(words)
    model = keras.Model(
        {"words": words, "count": count},
        keras.layers.Dense(1)(keras.layers.Concatenate()([lookup, count])),
    )
    x = input_array({"words": np.array([["a"], ["b"], ["c"]]), "count": np.ones((3, 1))}, "x")
    assert model(tensors(x)).shape == (3, 1)
    assert isinstance(tensors(input_array(np.ones((3, 2)), "x")), np.ndarray)  # numbers alone


def test_a_dataframe_of_numbers_and_one_hot_booleans_is_one_array_of_their_common_type() -> None:
    import pandas as pd

    frame = pd.DataFrame({"weight": [1.5, 2.0, 3.25], "cylinders": [4, 6, 8]})
    # `pd.get_dummies` makes bool columns: numpy alone would give an array of objects.
    frame = pd.concat([frame, pd.get_dummies(pd.Series(["us", "eu", "us"]))], axis=1)
    assert frame.to_numpy().dtype == object

    array = input_array(frame, "x")

    assert array.dtype == np.float64
    np.testing.assert_array_equal(array[:, -2:], [[0, 1], [1, 0], [0, 1]])
    nullable = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"), "b": [0.5, 1.0, 2.0]})
    assert np.isnan(input_array(nullable, "x")[1, 0])
    texts = pd.DataFrame({"review": ["good", "bad"]})
    assert input_array(texts, "x").dtype.kind == "S"  # text, as UTF-8 bytes


def test_a_dataframe_with_a_column_of_text_beside_numbers_is_refused_naming_it() -> None:
    import pandas as pd

    frame = pd.DataFrame({"weight": [1.5, 2.0], "origin": ["us", "eu"]})
    with pytest.raises(DataError, match=r"\['origin'\] hold \w+ beside columns of numbers"):
        input_array(frame, "x")


def test_validation_split_cuts_where_kerass_fit_cuts() -> None:
    """The training side is rounded down, as Keras's `train_validation_split` rounds it: 100
    examples at 0.3 train on 70 (hpo rounded up: 71), and a split Keras refuses for an empty
    side is refused."""
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    for n, fraction in [(100, 0.3), (10, 0.25), (240, 0.1), (7, 0.5)]:
        x = np.arange(n * 2, dtype="float32").reshape(n, 2)
        y = np.arange(n) % 2
        split = split_arrays(x, y, validation_split=fraction)
        (kx, _), (vx, _) = train_validation_split((x, y), validation_split=fraction)
        assert (len(split.x_train), len(split.x_val)) == (len(kx), len(vx)), (n, fraction)
    x, y = np.zeros((3, 2), dtype="float32"), np.array([0, 1, 0])
    with pytest.raises(ValueError, match="not sufficient to split"):
        train_validation_split((x, y), validation_split=0.7)
    with pytest.raises(DataError, match=r"validation_split=0.7 of 3 examples leaves the train"):
        split_arrays(x, y, validation_split=0.7)


def test_labels_beside_a_dataset_are_refused_as_keras_refuses_them() -> None:
    """A dataset carries its labels in its batches: y beside one is refused as such (it was
    "the inputs hold object, neither numbers nor text")."""
    import keras
    import tensorflow as tf

    tokens, _ = _inputs(8)
    y = np.arange(8) % 2

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            return tokens, y

    given = [tf.data.Dataset.from_tensor_slices((tokens, y)).batch(4), Batches()]
    given.append(iter([(tokens, y)]))
    kinds = ["tf.data.Dataset", "keras.utils.PyDataset", "list_iterator"]
    for dataset, kind in zip(given, kinds, strict=True):
        with pytest.raises(DataError, match=rf"x: labels are given beside a {kind}, .* a y arg"):
            split_arrays(dataset, y, validation_split=0.5)
    with pytest.raises(DataError, match=r"validation_data: labels are given beside a tf\.data"):
        split_arrays(tokens, y, validation_data=(given[0], y))


def test_a_dataset_larger_than_the_memory_left_is_refused_as_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read whole before any check: a dataset of images as float32 ran the machine out of
    # memory. It stops at the share of the memory left, naming how to make it smaller.
    import keras

    from hpo.data import in_memory

    read: list[int] = []

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return 100

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            read.append(index)
            return np.zeros((8, 64), dtype="float32"), np.zeros(8, dtype="int64")

    monkeypatch.setattr(in_memory, "memory_available", lambda: 10_000.0)  # 10 kB left
    with pytest.raises(DataError, match=r"passed 0\.0 GiB read into memory.*dataset\.take\(n\)"):
        in_memory.read_batches(Batches(), "x")
    assert len(read) < 5
    monkeypatch.setattr(in_memory, "memory_available", lambda: float("inf"))
    assert in_memory.read_batches(Batches(), "x")[0].shape == (800, 64)
