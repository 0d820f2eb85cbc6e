from __future__ import annotations

import logging
import os
import pickle
import shutil
import sys
import tarfile
import types
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from hpo.data import array_cache, holdout, image_cache, images
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

COUNTS = {"train": {"dog": 4, "cat": 3, "ant": 5}, "test": {"dog": 2, "cat": 2, "ant": 1}}


def _color(label: str, index: int) -> tuple[int, int, int]:
    """A colour that names its image: red is the class's initial, green the file number."""
    return (ord(label[0]), index * 20, 200)


def write_folder(
    root: Path, counts: dict[str, dict[str, int]] = COUNTS, size: tuple[int, int] = (6, 5)
) -> Path:
    """Writes <root>/<split>/<class>/NN.png images whose colour names them; returns root."""
    for split, per_class in counts.items():
        for label, count in per_class.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", size, _color(label, index)).save(folder / f"{index:02d}.png")
    return root


def tar_folder(root: Path, archive: Path, arcname: str = "set") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname=arcname)
    return archive


def _pickled(value: object, protocol: int) -> bytes:
    """`value` pickled; at protocol 0, with NumPy 1's module names, as Python 2 pickled
    CIFAR-10's own batches."""
    blob = pickle.dumps(value, protocol=protocol)
    return blob.replace(b"numpy._core.", b"numpy.core.") if protocol == 0 else blob


def write_batches(
    root: Path, protocol: int = pickle.DEFAULT_PROTOCOL
) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tiny cifar-10-batches-py/ folder with unsorted label names; returns it and, per split,
    the images (HWC) and the labels as indices into the sorted names."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"truck", b"airplane", b"cat"]  # sorted: airplane, cat, truck
    to_sorted = np.array([2, 0, 1])
    (folder / "batches.meta").write_bytes(_pickled({b"label_names": names}, protocol))
    rng = np.random.default_rng(0)
    expected: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for split, batch_names in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", ["test_batch"]),
    ):
        for name in batch_names:
            x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
            labels = [0, 1, 2, int(rng.integers(0, 3))]
            data = x.transpose(0, 3, 1, 2).reshape(4, 3072)
            (folder / name).write_bytes(_pickled({b"data": data, b"labels": labels}, protocol))
            expected[split].append((x, to_sorted[labels]))
    merged = {
        split: (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
        for split, parts in expected.items()
    }
    return folder, merged


def _expected_y(split: str) -> np.ndarray:
    classes = sorted(COUNTS[split])
    return np.repeat(np.arange(len(classes)), [COUNTS[split][c] for c in classes])


def test_folder_nested_folder_and_tarball_read_the_same_images(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "plain")
    nested = write_folder(tmp_path / "outer" / "set")
    archive = tar_folder(root, tmp_path / "set.tar.gz")
    # Hidden folders hold no class and no image: Jupyter's checkpoints, a class's .git.
    for hidden in (root / "train" / ".ipynb_checkpoints", root / "train" / "cat" / ".cache"):
        hidden.mkdir()
        shutil.copy(next((root / "train" / "ant").iterdir()), hidden / "copy.png")
    for source in (root, nested.parent, archive, tar_folder(root, tmp_path / "hidden.tar.gz")):
        located = images.locate_images(source, None, env_var="UNSET_VAR", download=False)
        train = images.read_split(located, "train")
        assert train.classes == ["ant", "cat", "dog"]
        assert train.x.dtype == np.uint8 and train.x.shape == (12, 5, 6, 3)
        assert train.y.dtype == np.int32
        np.testing.assert_array_equal(train.y, _expected_y("train"))
        # Sorted by class, then file name: the colours say which file each row came from.
        colors = [_color(c, i) for c in train.classes for i in range(COUNTS["train"][c])]
        np.testing.assert_array_equal(train.x[:, 0, 0], np.array(colors))
        assert train.skipped == 0
        test = images.read_split(located, "test", classes=train.classes)
        np.testing.assert_array_equal(test.y, _expected_y("test"))


def test_a_folder_of_class_folders_holds_out_a_share_of_each_class_as_test(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # keras.utils.image_dataset_from_directory's layout: class folders, no splits.
    root = tmp_path / "flowers"
    counts = {"daisy": 30, "rose": 2, "tulip": 25}
    write_folder(tmp_path, {"flowers": counts})
    (root / "rose" / ".DS_Store").write_bytes(b"\x00")
    (root / "LICENSE.txt").write_text("not a class")
    for given in (root, tmp_path):  # or one folder above it, as an archive unpacks
        located = images.locate_images(given, None, env_var="UNSET_VAR", download=False)
        assert located == given.resolve() and not images.has_test_split(located)
        with caplog.at_level(logging.WARNING, logger=images.__name__):
            train = images.read_split(located, "train")
        assert "no test split of its own" in caplog.text and "test_fraction" in caplog.text
        test = images.read_split(located, "test", classes=train.classes)
        assert train.classes == test.classes == ["daisy", "rose", "tulip"]
        # Every class on both sides, each image on one; hidden files are not images.
        held = np.bincount(test.y, minlength=3)
        assert held[1] == 1 and (held >= 1).all() and held.sum() < 20, held
        assert (np.bincount(train.y) + held).tolist() == list(counts.values())
        assert train.skipped == test.skipped == 0
    assert images.has_test_split(write_folder(tmp_path / "split"))
    # A train/ folder without test/ (a test split without labels, say) gives one up too.
    only_train = write_folder(tmp_path / "kaggle", {"train": counts})
    assert not images.has_test_split(only_train)
    held = images.read_split(only_train, "test")
    assert held.classes == ["daisy", "rose", "tulip"] and len(held.y) == len(test.y)


def _indices(split: images.LabelledImages, label: str) -> list[int]:
    """The file numbers (`_color`'s green) of `split`'s images of `label`."""
    rows = split.y == split.classes.index(label)
    return sorted(int(green) // 20 for green in split.x[rows, 0, 0, 1])


def test_a_held_out_test_split_is_chosen_among_files_named_as_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_folder(tmp_path, {"flowers": {"daisy": 12, "rose": 5, "tulip": 3}}) / "flowers"
    rose = root / "rose"
    (rose / "README.md").write_text("roses, collected 2026")
    # The raw listing's hash would hold the README out as the rose's one test example.
    listing = [("rose", f"rose/{path.name}") for path in rose.iterdir()]
    assert holdout.held_out(listing, 0.2) == {("rose", "rose/README.md")}
    for path in (root / "tulip").iterdir():  # an image's extension in any case
        path.rename(path.with_suffix(".PNG"))
    with caplog.at_level(logging.WARNING, logger=images.__name__):
        train = images.read_split(root, "train")
    test = images.read_split(root, "test", classes=train.classes)
    assert "1 files in its class folders are not named as images (e.g. rose/README.md)" in (
        caplog.text
    )
    assert "of its 20 files" in caplog.text  # not 21: the README is no example
    assert train.skipped == test.skipped == 0
    assert len(_indices(train, "tulip")) + len(_indices(test, "tulip")) == 3
    assert _indices(test, "rose") == [0] and _indices(train, "rose") == [1, 2, 3, 4]
    # Where every file is named as an image, the same ones are held out as before.
    daisy = [("daisy", f"daisy/{index:02d}.png") for index in range(12)]
    before = sorted(int(name[6:8]) for _, name in holdout.held_out(daisy, 0.2))
    assert _indices(test, "daisy") == before
    assert _indices(train, "daisy") == sorted(set(range(12)) - set(before))


def test_an_unreadable_held_out_image_is_named_when_the_test_split_is_read(
    tmp_path: Path,
) -> None:
    root = write_folder(tmp_path, {"flowers": {"daisy": 4, "rose": 5}}) / "flowers"
    (root / "rose" / "00.png").write_bytes(b"not a png")  # the rose's one test example
    train = images.read_split(root, "train")
    with pytest.raises(DataError) as caught:
        images.read_split(root, "test", classes=train.classes)
    message = str(caught.value)
    assert "no test split of its own, so hpo held one out of its class folders" in message
    assert "['rose/00.png']" in message and "Replace each with a readable image" in message


# 0: as Python 2 wrote CIFAR-10's own files (NumPy 1's names); 2 and 5: as Python 3 writes.
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_python_batches_folder_and_archive(tmp_path: Path, protocol: int) -> None:
    folder, expected = write_batches(tmp_path / "raw", protocol)
    archive = tar_folder(folder, tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    for given in (folder, folder.parent, archive):
        located = images.locate_images(given, None, env_var="UNSET_VAR", download=False)
        for split, (x, y) in expected.items():
            read = images.read_split(located, split)
            assert read.classes == ["airplane", "cat", "truck"]
            order = np.argsort(y, kind="stable")
            np.testing.assert_array_equal(read.y, y[order])
            np.testing.assert_array_equal(read.x, x[order])
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"batches .*test_batch.* are unreadable"):
        images.read_split(folder, "test")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"batches lack \['data_batch_3'\] for the train split"):
        images.read_split(folder, "train")


def test_test_split_is_labelled_in_the_given_class_order(tmp_path: Path) -> None:
    root = write_folder(tmp_path)
    test = images.read_split(root, "test", classes=["dog", "ant", "cat"])
    assert test.classes == ["dog", "ant", "cat"]
    red = test.x[:, 0, 0, 0]
    for label, name in enumerate(test.classes):
        assert set(red[test.y == label]) == {_color(name, 0)[0]}


def test_class_missing_from_or_extra_in_test_is_a_config_error(tmp_path: Path) -> None:
    root = write_folder(tmp_path, {"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1, "c": 1}})
    with pytest.raises(ConfigError, match=r"missing \[\].*extra \['c'\]"):
        images.read_split(root, "test", classes=["a", "b"])
    with pytest.raises(ConfigError, match=r"missing \['z'\]"):
        images.read_split(root, "test", classes=["a", "b", "c", "z"])


def test_corrupt_and_non_image_files_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_folder(tmp_path / "set")
    good = (root / "train" / "cat" / "00.png").read_bytes()
    (root / "train" / "cat" / "broken.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "dog" / "notes.txt").write_text("not a picture")
    Image.new("L", (6, 5), 90).save(root / "train" / "dog" / "zz_gray.jpg")
    archive = tar_folder(root, tmp_path / "set.tar")
    for source in (root, archive):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hpo.data.images"):
            train = images.read_split(source, "train")
        assert train.skipped == 2
        assert len(train.y) == 13  # the 12 PNGs and the grayscale JPEG, as RGB
        np.testing.assert_allclose(train.x[-1], 90, atol=2)
        assert "skipped 2 unreadable" in caplog.text and "broken.png" in caplog.text
        assert "left out, not classes" not in caplog.text


def test_a_class_folder_of_no_readable_image_is_named_as_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_folder(tmp_path / "set")
    (root / "train" / "bird").mkdir()
    (root / "train" / "bird" / "a.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    for source in (root, tar_folder(root, tmp_path / "set.tar")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hpo.data.images"):
            train = images.read_split(source, "train")
        assert train.classes == ["ant", "cat", "dog"]
        assert "class folder(s) ['bird'] of the train split hold no readable image" in caplog.text


def test_grey_of_16_bits_keeps_its_high_byte_as_tensorflow_reads_it(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set", {"train": {"ant": 1, "cat": 1}})
    grey = np.arange(5 * 6, dtype=np.uint16).reshape(5, 6) * 2000  # 0 to 58,000
    Image.fromarray(grey).save(root / "train" / "ant" / "00.png")
    assert Image.open(root / "train" / "ant" / "00.png").mode == "I;16"
    train = images.read_split(root, "train")
    np.testing.assert_array_equal(train.x[0], np.repeat((grey >> 8)[..., None], 3, axis=-1))
    assert train.x[0].max() == 226  # Pillow's conversion to RGB gave 255 from the second on


def test_too_few_classes_missing_split_and_no_images_are_data_errors(tmp_path: Path) -> None:
    one = write_folder(tmp_path / "one", {"train": {"a": 2}})
    with pytest.raises(DataError, match=r"1 class\(es\) \['a'\].*at least 2 \(<root>/train/"):
        images.read_split(one, "train")
    # A folder of class folders without splits names its own layout (it named train/'s): its
    # second class's files are not named as images.
    flat = write_folder(tmp_path / "flat", {"classes": {"a": 5}}) / "classes"
    (flat / "b").mkdir()
    for index in range(5):
        Image.new("RGB", (6, 5)).save(flat / "b" / f"{index:02d}", format="PNG")
    with pytest.raises(DataError, match=r"\['a'\]; .*at least 2 \(<root>/<class>/<image>\)"):
        images.read_split(flat, "train")
    # A train/ folder alone gives up a test split; an archive has to hold one.
    archive = tar_folder(one, tmp_path / "one.tar.gz")
    with pytest.raises(DataError, match=r"no readable test images.*or unpack the archive"):
        images.read_split(archive, "test")
    junk = tmp_path / "junk" / "train" / "a"
    junk.mkdir(parents=True)
    (junk / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"no readable train images.*1 files skipped"):
        images.read_split(junk.parents[1], "train")


def test_mixed_sizes_need_image_size_which_resizes(tmp_path: Path) -> None:
    root = write_folder(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    Image.new("RGB", (9, 7), (1, 2, 3)).save(root / "train" / "b" / "big.png")
    with pytest.raises(ConfigError, match=r"2 sizes.*5x6.*7x9.*image_size = \[H, W\]"):
        images.read_split(root, "train")
    train = images.read_split(root, "train", image_size=(4, 3))
    assert train.x.shape == (5, 4, 3, 3)
    np.testing.assert_array_equal(train.x[4], np.broadcast_to([1, 2, 3], (4, 3, 3)))
    with pytest.raises(ConfigError, match=r"image_size .*got \(0, 3\)"):
        images.read_split(root, "train", image_size=(0, 3))


def test_images_of_two_sizes_are_refused_at_the_second_size_not_after_all_are_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every photo was decoded at full size before the error: a folder of phone photos ran
    # the machine out of memory first.
    root = write_folder(tmp_path, {"train": {"a": 30, "b": 30}})
    Image.new("RGB", (9, 7)).save(root / "train" / "a" / "01.png")
    decode = images._decode
    decoded: list[object] = []

    def counted(read: Callable[[], bytes]) -> np.ndarray | None:
        decoded.append(read)
        return decode(read)

    monkeypatch.setattr(images, "_decode", counted)
    with pytest.raises(ConfigError, match=r"the train images come in 2 sizes, e.g. a/00.png"):
        images.read_split(root, "train")
    assert len(decoded) == 2


def test_large_images_are_resized_one_by_one_as_they_are_decoded(tmp_path: Path) -> None:
    import tracemalloc

    # Eight photos of 1,000 x 1,000 (3 MB each, decoded), read at 8 x 8: no more than a couple
    # are ever held at full size (all eight were, until the last was decoded).
    counts = {"train": {"ant": 4, "cat": 4}, "test": {"ant": 1, "cat": 1}}
    root = write_folder(tmp_path / "set", counts, size=(1000, 1000))
    one = 1000 * 1000 * 3
    tracemalloc.start()
    try:
        train = images.read_split(root, "train", image_size=(8, 8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert train.x.shape == (8, 8, 8, 3)
    assert peak < 5 * one, peak / one  # 3.0 images measured (a decode, its copies), 9.1 before


def test_limit_per_class_keeps_the_first_images_of_each_class(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "set")
    archive = tmp_path / "interleaved.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        # Classes interleaved, as an archive may store them.
        for index in range(5):
            for label in ("dog", "ant", "cat"):
                path = root / "train" / label / f"{index:02d}.png"
                if path.exists():
                    tar.add(path, arcname=f"top/train/{label}/{index:02d}.png")
    for source in (root, archive):
        train = images.read_split(source, "train", limit_per_class=2)
        np.testing.assert_array_equal(train.y, [0, 0, 1, 1, 2, 2])
        np.testing.assert_array_equal(train.x[:, 0, 0, 1], [0, 20] * 3)


def test_limit_per_class_on_the_real_archive(real_cifar10: Path) -> None:
    test = images.read_split(real_cifar10, "test", limit_per_class=20)
    names = "airplane automobile bird cat deer dog frog horse ship truck"
    assert test.classes == names.split(" ")
    assert test.x.shape == (200, 32, 32, 3) and test.skipped == 0
    np.testing.assert_array_equal(np.bincount(test.y), [20] * 10)
    assert 20 < test.x.mean() < 235 and test.x.std() > 20


def _splits(x_val: np.ndarray) -> image_cache.ImageSplits:
    x = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    y = np.array([0, 1, 0, 1], np.int32)
    return image_cache.ImageSplits(x, y, x_val, y[:2], classes=["a", "b"], skipped=3)


def test_cache_round_trip_and_fingerprint(tmp_path: Path) -> None:
    splits = _splits(np.zeros((2, 2, 2, 3), np.uint8))
    folder = tmp_path / "cache" / array_cache.cache_key({"source": "x", "image_size": None})
    assert image_cache.load_cached(folder) is None
    with pytest.raises(DataError, match="no cached images"):
        image_cache.fingerprint(folder)
    image_cache.save_cached(folder, splits, {"source": "x"})
    loaded = image_cache.load_cached(folder)
    assert loaded is not None
    for name in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(splits, name))
        assert getattr(loaded, name).dtype == getattr(splits, name).dtype
    assert (loaded.classes, loaded.skipped) == (["a", "b"], 3)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary left
    first = image_cache.fingerprint(folder)
    assert len(first) == 16 and image_cache.fingerprint(folder) == first
    image_cache.save_cached(folder, _splits(np.ones((2, 2, 2, 3), np.uint8)), {})  # kept: exists
    assert image_cache.fingerprint(folder) == first
    other = tmp_path / "other"
    image_cache.save_cached(other, _splits(np.ones((2, 2, 2, 3), np.uint8)), {"source": "x"})
    assert image_cache.fingerprint(other) != first


@pytest.mark.parametrize("damage", ["cut short", "garbled record"])
def test_a_damaged_cache_is_deleted_to_be_written_again(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "cache" / "images-0123"
    image_cache.save_cached(folder, _splits(np.zeros((2, 2, 2, 3), np.uint8)), {})
    assert array_cache.cached(folder)
    if damage == "cut short":
        path = folder / "x_train.npy"
        path.write_bytes(path.read_bytes()[:-20])
    else:
        (folder / array_cache.META_NAME).write_text('{"classes": [')
    with caplog.at_level(logging.WARNING):
        assert not array_cache.cached(folder)
    assert "is damaged" in caplog.text and "write it again" in caplog.text
    assert not folder.exists() and list(folder.parent.iterdir()) == []
    image_cache.save_cached(folder, _splits(np.zeros((2, 2, 2, 3), np.uint8)), {})
    assert array_cache.cached(folder) and image_cache.load_cached(folder) is not None


def test_locate_prefers_flag_then_env_var_then_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env, study = (write_folder(tmp_path / name, {"train": {"a": 1}}) for name in "fes")
    var = images.IMAGES_ENV_VAR
    assert images.ENV_VARS["images"] == var == "HPO_IMAGES_PATH"
    monkeypatch.setenv(var, str(env))
    assert images.locate_images(flag, study, env_var=var, download=True) == flag.resolve()
    assert images.locate_images(None, study, env_var=var, download=True) == env.resolve()
    monkeypatch.delenv(var)
    assert images.locate_images(None, study, env_var=var, download=True) == study.resolve()
    with pytest.raises(DataError, match=rf"no image data given.*--data.*\${var}.*\[data\] path"):
        images.locate_images(None, None, env_var=var, download=False)
    with pytest.raises(DataError, match=rf"--data points at .*nope, which does not exist.*\${var}"):
        images.locate_images(tmp_path / "nope", None, env_var=var, download=False)


class _Runs:
    """Unpickled, it calls `os.mkdir(path)`: what a crafted data file could make any
    function do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("where", ["batches.meta", "data_batch_2"])
def test_python_batches_are_read_as_data_and_a_pickle_that_calls_a_function_is_refused(
    tmp_path: Path, where: str
) -> None:
    folder, _ = write_batches(tmp_path / "raw")
    ran = tmp_path / "ran"
    (folder / where).write_bytes(pickle.dumps({b"label_names": [b"a"], b"x": _Runs(ran)}))
    with pytest.raises(DataError, match=r"unreadable .*names posix\.mkdir, which is not data"):
        images.read_split(folder, "train")
    assert not ran.exists()


def test_download_gives_the_batches_folder_or_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = write_batches(tmp_path / "keras-cache")
    var = images.CIFAR10_ENV_VAR
    monkeypatch.delenv(var, raising=False)
    calls: list[dict[str, object]] = []

    def fake_get_file(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(folder.parent)  # Keras extracts next to the archive, one folder up

    # A stand-in for keras: the real one takes seconds to import and would reach the network.
    keras = types.SimpleNamespace(utils=types.SimpleNamespace(get_file=fake_get_file))
    monkeypatch.setitem(sys.modules, "keras", keras)
    assert images.locate_images(None, None, env_var=var, download=True) == folder.resolve()
    assert calls[0]["origin"] == images.CIFAR10_URL and calls[0]["extract"] is True

    def offline(**kwargs: object) -> str:
        raise OSError("network unreachable")

    keras.utils.get_file = offline
    with pytest.raises(DataError, match=rf"download .* failed.*unreachable.*\${var}"):
        images.locate_images(None, None, env_var=var, download=True)


def test_an_image_over_pillows_size_limit_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 15000x15000 scan was "not an image file", and one of half that limit printed Pillow's
    # DecompressionBombWarning; the limit scaled down here, to images of a few hundred pixels.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (20, 20), (10, 20, 30)).save(tmp_path / "scan.png")  # over twice the limit
    Image.new("RGB", (15, 10), (10, 20, 30)).save(tmp_path / "big.png")  # over the limit
    with pytest.raises(DataError, match=r"scan.png: an image over Pillow's limit .* Shrink it"):
        images.load_image(tmp_path / "scan.png", (4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert images.load_image(tmp_path / "big.png", (4, 4)).shape == (4, 4, 3)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.png: not an image file"):
        images.load_image(tmp_path / "notes.png", (4, 4))


def test_a_postscript_file_is_never_run_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow opens EPS by running Ghostscript on the file's own PostScript, a program: a data
    # file named .jpg, or .eps, made every reader of the folder run it. A stand-in gs records.
    ran = tmp_path / "gs-ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f'#!/bin/sh\necho "$@" >> {ran}\necho 10.0\n')
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    program = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n(runs) print\nshowpage\n"
    root = write_folder(tmp_path / "set")
    (root / "train" / "cat" / "photo.jpg").write_bytes(program)
    (root / "train" / "dog" / "figure.eps").write_bytes(program)
    for source in (root, tar_folder(root, tmp_path / "set.tar")):
        assert images.read_split(source, "train").skipped == 2
    with pytest.raises(DataError, match=r"photo.jpg: PostScript \(EPS\), a program .* PNG"):
        images.load_image(root / "train" / "cat" / "photo.jpg", (4, 4))
    assert ".eps" not in images._image_suffixes()
    assert not ran.exists()


def test_copies_of_an_image_are_held_out_together_whatever_their_names(tmp_path: Path) -> None:
    # Held out by name alone, an image saved twice fell on each side of the test split.
    root = tmp_path / "set"
    for label, red in (("cat", 10), ("dog", 200)):
        (root / label).mkdir(parents=True)
        for i in range(30):
            Image.new("RGB", (4, 4), (red, i, 0)).save(root / label / f"{i:02d}.png")
            shutil.copy(root / label / f"{i:02d}.png", root / label / f"IMG_{i:02d} copy.png")
    train, test = images.read_split(root, "train"), images.read_split(root, "test")
    assert len(train.y) + len(test.y) == 120 and len(test.y) > 0
    assert not {x.tobytes() for x in test.x} & {x.tobytes() for x in train.x}
