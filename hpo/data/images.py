"""Labelled image data sets: finding them and decoding them (see `image_cache` for the cache).

Four sources are read, told apart by their content: a folder in the
`keras.utils.image_dataset_from_directory` layout (`<root>/<split>/<class>/<image>`, optionally
one folder deeper), a `.tar`/`.tar.gz` archive of one (streamed, never extracted), a folder of
class folders without splits (`<root>/<class>/<image>`, or a `train/` folder without `test/`,
whose test split is held out by `hpo.data.holdout`), and CIFAR-10's "python version"
(`cifar-10-batches-py/`, as a folder or its archive).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from hpo._paths import expand_user
from hpo.backend import import_keras
from hpo.data.archives import open_archive, zip_hint
from hpo.data.holdout import TEST_FRACTION, held_out_root, held_out_side
from hpo.data.layout import (
    SPLITS,
    MemberSplits,
    check_not_one_class,
    class_folders,
    data_splits,
    has_split,
    hidden,
    split_folder,
    visible_files,
)
from hpo.data.provenance import given_origin, origin_fix
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "CIFAR10_ENV_VAR",
    "CIFAR10_URL",
    "ENV_VARS",
    "HELD_OUT_FILES",
    "IMAGES_ENV_VAR",
    "LabelledImages",
    "has_test_split",
    "has_val_split",
    "load_image",
    "locate_images",
    "read_split",
]

CIFAR10_ENV_VAR = "HPO_CIFAR10_PATH"
IMAGES_ENV_VAR = "HPO_IMAGES_PATH"
# The environment variable that may point at each data set's files.
ENV_VARS = {"cifar10": CIFAR10_ENV_VAR, "images": IMAGES_ENV_VAR}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_META = "batches.meta"
_LAYOUT = "<root>/{split}/<class>/<image>"
# Which files a test split held out of class folders is chosen among, recorded in the image
# cache's key beside `HOLDOUT_RULES` (2: the files named as images; before: every file, a
# README.md among them, which could be a class's one test example).
HELD_OUT_FILES = 2
_log = logging.getLogger(__name__)

# (class name, name within the split, a loader giving the RGB array or None if unreadable)
_Item = tuple[str, str, "Callable[[], np.ndarray | None]"]


@dataclass(frozen=True)
class LabelledImages:
    """One split's images, ordered by class, then by file name.

    Attributes:
        x: RGB pixels, uint8, shape [n, height, width, 3].
        y: Class of each image (int32), an index into `classes`.
        classes: Class names (folder names), sorted unless the caller fixed the order.
        skipped: Unreadable or non-image files left out of this split.
    """

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    skipped: int


def locate_images(
    data_arg: str | Path | None, study_path: str | Path | None, *, env_var: str, download: bool
) -> Path:
    """Finds an image data set: `--data`, then `$env_var`, then the study file, then a download.

    Args:
        data_arg: The `--data` flag, or None.
        study_path: The study file's `data.path`, or None.
        env_var: The environment variable to consult, one of `ENV_VARS`' values.
        download: Whether to fetch CIFAR-10 (python version) into the Keras cache when nothing
            else is given.

    Returns:
        A folder or archive that `read_split` accepts.

    Raises:
        DataError: A given path is not usable, nothing is given without `download`, or the
            download fails.
    """
    for origin, value in (
        (given_origin(data_arg), data_arg),
        (f"${env_var}", os.environ.get(env_var) or None),
        (given_origin(study_path, "the study file's data.path"), study_path),
    ):
        if value is not None:
            return _check_source(expand_user(value, origin), origin, env_var)
    fix = f"Pass --data PATH, set ${env_var}, or set `[data] path` in the study file"
    if not download:
        raise DataError(f"no image data given. {fix} (a {_LAYOUT} folder or a .tar.gz of one).")
    keras = import_keras()

    try:
        # The file name keras.datasets.cifar10 uses, so both share one download.
        extracted = keras.utils.get_file(
            fname="cifar-10-batches-py-target",
            origin=CIFAR10_URL,
            extract=True,
            file_hash=_CIFAR10_SHA256,
        )
    except Exception as exc:
        raise DataError(f"the download from {CIFAR10_URL} failed ({exc}). {fix}.") from exc
    return _check_source(Path(extracted), "the download", env_var)


def _check_source(path: Path, origin: str, env_var: str) -> Path:
    if path.is_file() and tarfile.is_tarfile(path):
        return path.resolve()
    if path.is_dir():
        if (batches := _batches_dir(path)) is not None:
            return batches.resolve()
        if data_splits(path) or held_out_root(path):
            return path.resolve()
        check_not_one_class(path, "<root>/<class>/<image>")
    fix = origin_fix(
        origin, f"Fix the path given by --data, ${env_var} or the study file's data.path."
    )
    if not path.exists():
        raise DataError(f"{origin} points at {path}, which does not exist. {fix}")
    raise DataError(
        f"{origin} points at {path}, which is neither a {_LAYOUT.format(split='train')} folder, "
        f"a folder of class folders (<root>/<class>/<image>), a cifar-10-batches-py/ folder, "
        f"nor a .tar(.gz) archive of one.{zip_hint(path)} {fix}"
    )


def has_test_split(source: Path) -> bool:
    """Whether the data set holds a test split of its own (else one is held out of it)."""
    return _held_out_root(source) is None


def has_val_split(source: Path) -> bool:
    """Whether the data set holds a validation split of its own (a `val/` folder, or one of
    its other names: `hpo.data.layout.SPLIT_NAMES`), which is then the validation set; an
    archive's members are listed to tell (once per process)."""
    return _batches_dir(source) is None and has_split(source, "val")


def _held_out_root(source: Path) -> Path | None:
    """The folder of class folders a test split is held out of, or None (`held_out_root`;
    an archive or CIFAR-10's batches always have a test split)."""
    if not source.is_dir() or _batches_dir(source) is not None:
        return None
    return held_out_root(source)


def _batches_dir(path: Path) -> Path | None:
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / _META).is_file():
            return folder
    return None


def read_split(
    source: Path,
    split: str,
    *,
    image_size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
    limit_per_class: int | None = None,
    test_fraction: float = TEST_FRACTION,
) -> LabelledImages:
    """Decodes one split ("train", "test" or "val") of a folder, an archive or CIFAR-10 batches.

    Unreadable and non-image files are skipped, counted and logged as one warning.

    Args:
        source: What `locate_images` returned.
        split: "train", "test" or "val" (a folder's or an archive's own: `has_val_split`).
        image_size: (height, width) to resize every image to (bilinear); None keeps the
            size, which must then be the same for every image.
        classes: The class order to label with (the train split's classes when reading test);
            None sorts the classes found. The split must hold exactly these classes.
        limit_per_class: Keep at most this many images of each class, the first ones met
            (archives are still read in one pass); None keeps all.
        test_fraction: A folder of class folders without splits: the share of each class's
            images held out as its test split (`hpo.data.holdout`).

    Raises:
        DataError: The split is missing, has no readable image, or fewer than 2 classes.
        ConfigError: Mixed sizes without `image_size`, a bad setting, or classes that differ
            from `classes`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _check_settings(image_size, limit_per_class)
    images, skipped = _gather(
        _items(source, split, test_fraction), limit_per_class, image_size, split
    )
    if skipped:
        _log.warning(
            "%s: skipped %d unreadable or non-image files (or images over Pillow's size limit) "
            "in the %s split, e.g. %s",
            source,
            len(skipped),
            split,
            skipped[0],
        )
        found = {label for label, _, _ in images}
        if lost := sorted({name.split("/")[0] for name in skipped} - found):
            if split == "test" and (root := _held_out_root(source)) is not None:
                raise DataError(_unreadable_held_out(root, lost, skipped))
            _log.warning(
                "%s: class folder(s) %s of the %s split hold no readable image, so they are "
                "left out, not classes. Convert their files to a format Pillow opens (JPEG, "
                "PNG), or move the folders out of the data.",
                source,
                lost,
                split,
            )
    if not images:
        raise DataError(
            f"no readable {split} images in {source} ({len(skipped)} files skipped); expected "
            f"{_LAYOUT.format(split=split)} files that Pillow can open"
            + (
                "; or unpack the archive: a folder without test/ gives up a test split."
                if source.is_file() and split == "test" and not skipped
                else "."
            )
        )
    images.sort(key=lambda item: (item[0], item[1]))
    names = _check_classes(sorted({label for label, _, _ in images}), classes, source, split)
    index = {name: i for i, name in enumerate(names)}
    return LabelledImages(
        x=np.stack(_same_size([item[1:] for item in images], image_size, split)),
        y=np.array([index[label] for label, _, _ in images], dtype=np.int32),
        classes=names,
        skipped=len(skipped),
    )


def _unreadable_held_out(root: Path, lost: list[str], skipped: list[str]) -> str:
    unread = [name for name in skipped if name.split("/")[0] in lost]
    return (
        f"{root} has no test split of its own, so hpo held one out of its class folders, and "
        f"of class(es) {lost} it held out only files no image can be read from: {unread}. "
        "The search never decodes the test split, so this shows only now. Replace each with "
        "a readable image of the same name: the split, and the data the study's trials saw, "
        "stay as they are (removing or renaming one moves another file to the test split "
        "and changes the data, which then needs a new study)."
    )


def _check_settings(image_size: tuple[int, int] | None, limit: int | None) -> None:
    if image_size is not None and (
        len(image_size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in image_size)
    ):
        raise ConfigError(
            f"data.image_size must be two positive integers [height, width], got {image_size!r}. "
            "Use e.g. `image_size = [32, 32]` in the study file's [data] table."
        )
    if limit is not None and limit < 1:
        raise ConfigError(f"limit_per_class must be at least 1 or None, got {limit}.")


def _items(source: Path, split: str, test_fraction: float) -> Iterator[_Item]:
    if source.is_file():
        yield from _archive_items(source, split)
    elif (batches := _batches_dir(source)) is not None:
        if split not in _BATCHES:
            raise DataError(f"{batches}: CIFAR-10's python batches hold no {split} split.")
        paths = [batches / name for name in (*_BATCHES[split], _META)]
        blobs = {path.name: path.read_bytes for path in paths if path.is_file()}
        yield from _batch_items(blobs, split, batches)
    elif split != "val" and (root := _held_out_root(source)) is not None:
        files = _class_files(root, images_only=True)
        kept = held_out_side(files, split, test_fraction, source, "files", _copy_key)
        for label, name, path in kept:
            yield label, name, partial(_decode, path.read_bytes)
    else:
        top = split_folder(source, split)
        if top is None:
            raise DataError(
                f"no {split}/ folder in {source} (nor one folder below it); expected "
                f"{_LAYOUT.format(split=split)}. Fix --data or the study file's data.path."
            )
        for label, name, path in _class_files(top):
            yield label, name, partial(_decode, path.read_bytes)


def _copy_key(path: Path) -> bytes:
    """What makes two image files copies: the same bytes (a file copied under a new name)."""
    return hashlib.sha256(path.read_bytes()).digest()


def _class_files(top: Path, *, images_only: bool = False) -> list[tuple[str, str, Path]]:
    """The `(class, name within top, path)` of the files in `top`'s class folders; an empty
    one is named as left out. `images_only` keeps only the files named as images
    (`_is_image_name`), which are a held-out test split's examples: a README.md held out as
    a class's one test example would leave the class out of the test split."""
    files = []
    others: list[Path] = []
    for folder in class_folders(top):
        found = visible_files(folder)
        kept = [path for path in found if _is_image_name(path)] if images_only else found
        if len(kept) < len(found):
            named = set(kept)  # a set: a list made this quadratic in a class's files
            others += [path for path in found if path not in named]
        if not kept:
            _log.warning(
                "%s/ is left out, not a class: it %s. Put the class's images in it, or "
                "move the folder out of the data.",
                folder,
                "holds no file named as an image" if found else "is empty",
            )
        files += [(folder.name, path.relative_to(top).as_posix(), path) for path in kept]
    if others:
        _log.warning(
            "%s: %d files in its class folders are not named as images (e.g. %s), so they are "
            "no examples: neither held out as the test split nor trained on",
            top,
            len(others),
            others[0].relative_to(top).as_posix(),
        )
    return files


def _is_image_name(path: Path) -> bool:
    """Whether the file's extension, in any case, is one Pillow opens (`.jpg`, `.png`, ...)."""
    return path.suffix.lower() in _image_suffixes()


@cache
def _image_suffixes() -> frozenset[str]:
    formats = Image.registered_extensions().items()
    return frozenset(suffix for suffix, name in formats if name in _raster_formats())


# Formats Pillow opens by running a program on the file: EPS through Ghostscript, on the file's
# own PostScript, a programming language (whose sandbox has had escapes). A data file is data:
# hpo opens every image with the other formats only, whatever its name says.
_PROGRAM_FORMATS = frozenset({"EPS"})
# How PostScript starts: as text, or in the DOS EPS binary header.
_POSTSCRIPT_MAGIC = (b"%!", b"\xc5\xd0\xd3\xc6")


@cache
def _raster_formats() -> tuple[str, ...]:
    """The formats Pillow may open a data file as: all it opens but those run as programs."""
    Image.init()
    return tuple(sorted(set(Image.OPEN) - _PROGRAM_FORMATS))


def _archive_items(source: Path, split: str) -> Iterator[_Item]:
    blobs: dict[str, Callable[[], bytes]] = {}
    batches = (*_BATCHES[split], _META) if split in _BATCHES else ()
    splits = MemberSplits(source)
    with open_archive(source) as archive:
        for member in archive:
            parts = member.name.removeprefix("./").split("/")
            if not member.isfile() or hidden(parts):
                continue
            if len(parts) <= 2 and parts[-1] in batches:
                blobs[parts[-1]] = partial(bytes, _read_member(archive, member))
            elif (found := splits.split_at(parts)) is not None and found[0] == split:
                at = found[1]
                read = partial(_read_member, archive, member)
                yield parts[at + 1], "/".join(parts[at + 1 :]), partial(_decode, read)
    if blobs:
        yield from _batch_items(blobs, split, source)


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None  # regular files always have contents
    return handle.read()


def _batch_items(blobs: dict[str, Callable[[], bytes]], split: str, where: Path) -> Iterator[_Item]:
    wanted = (*_BATCHES[split], _META)
    if missing := [name for name in wanted if name not in blobs]:
        raise DataError(
            f"{where}: the CIFAR-10 python batches lack {missing} for the {split} split. "
            f"Download cifar-10-python.tar.gz again from {CIFAR10_URL}."
        )
    try:
        # CIFAR-10's own format is pickled: read as data only (keras.datasets unpickles it).
        meta = _unpickle_data(blobs[_META]())
        labels = [name.decode() for name in meta[b"label_names"]]
        for name in _BATCHES[split]:
            batch = _unpickle_data(blobs[name]())
            x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for row, label in enumerate(batch[b"labels"]):
                yield labels[label], f"{name}/{row:05d}", partial(x.__getitem__, row)
    except (OSError, EOFError, LookupError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"{where}: the CIFAR-10 python batches {list(wanted)} are unreadable ({exc!r}). "
            f"Download cifar-10-python.tar.gz again from {CIFAR10_URL}."
        ) from exc


# The only globals CIFAR-10's batches name: NumPy's array rebuilding (under NumPy 1's module
# names, as Python 2 pickled them; NumPy 2's `numpy._core` is read as the same), and the codec
# Python 3 pickles bytes with.
_DATA_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)
_NUMPY_CORE = "numpy._core" if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else "numpy.core"


class _DataUnpickler(pickle.Unpickler):
    """Unpickles lists, dictionaries, bytes, numbers and NumPy arrays, and refuses every other
    global: a pickle can name any function to call as it loads (`os.system`, say), and a data
    file must never run code."""

    def find_class(self, module: str, name: str) -> object:
        numpy_1 = module.replace("numpy._core.", "numpy.core.")
        if (numpy_1, name) not in _DATA_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which is not data: CIFAR-10's batches hold only "
                f"lists, bytes and NumPy arrays, and hpo does not run code from a data file"
            )
        if numpy_1.startswith("numpy.core."):  # NumPy 2 warns on its old module names
            module = _NUMPY_CORE + numpy_1.removeprefix("numpy.core")
        return super().find_class(module, name)


def _unpickle_data(blob: bytes) -> Any:
    return _DataUnpickler(io.BytesIO(blob), encoding="bytes").load()


def _decode(read: Callable[[], bytes]) -> np.ndarray | None:
    try:
        with warnings.catch_warnings():
            # Over half its guard's size Pillow only warns, on stderr: decoded all the same.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(read()), formats=_raster_formats()) as image:
                return _rgb(image)
    except Exception:  # Pillow raises many kinds of error on bad files; each means "skip it".
        return None


def _undecodable(data: bytes) -> str:
    """Why Pillow cannot decode `data`, which `_decode` could not."""
    if data.startswith(_POSTSCRIPT_MAGIC):
        return (
            "PostScript (EPS), a program rather than an image: hpo does not run Ghostscript "
            "on data. Convert it to PNG first, on a file you trust (gs -sDEVICE=png16m "
            "-o image.png image.eps)"
        )
    try:
        with Image.open(io.BytesIO(data), formats=_raster_formats()) as image:
            image.load()
    except Image.DecompressionBombError as exc:
        return (
            f"an image over Pillow's limit for one image ({exc}). Shrink it first (Pillow's "
            f"Image.thumbnail, ImageMagick's convert -resize); the model sees it resized anyway"
        )
    except Exception:
        pass
    return "not an image file (Pillow cannot decode it)"


def _rgb(image: Image.Image) -> np.ndarray:
    """The image's uint8 RGB pixels. Grey of 16 bits (an X-ray's or a microscope's PNG) keeps
    its high byte, as TensorFlow's `decode_png` reads it into 8 bits: Pillow's own conversion
    clips it at 255, an image all but white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image).astype(np.int64)
        if image.mode != "I" or grey.max() > 255:  # "I": 16 bits in 32, or 8 bits
            grey >>= 8
        return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _gather(
    items: Iterable[_Item],
    limit: int | None,
    image_size: tuple[int, int] | None = None,
    split: str = "train",
) -> tuple[list[tuple[str, str, np.ndarray]], list[str]]:
    """The images, each resized to `image_size` as soon as it is decoded (a folder of phone
    photos, 36 MB each decoded, would otherwise be held whole until all are read). Without
    `image_size`, images of two sizes are refused at the second size: they were all decoded
    at full size first, which ran a folder of photos out of memory before the error."""
    images: list[tuple[str, str, np.ndarray]] = []
    skipped: list[str] = []
    taken: Counter[str] = Counter()
    for label, name, load in items:
        if limit is not None and taken[label] >= limit:
            continue
        array = load()
        if array is None:
            skipped.append(name)
            continue
        taken[label] += 1
        if image_size is not None:
            array = _resized(array, image_size)
        elif images and images[0][2].shape[:2] != array.shape[:2]:
            _same_size([(images[0][1], images[0][2]), (name, array)], None, split)
        images.append((label, name, array))
    return images, skipped


def _check_classes(
    found: list[str], expected: list[str] | None, source: Path, split: str
) -> list[str]:
    if expected is None:
        if len(found) < 2:
            # A folder of class folders without splits of its own is <root>/<class>/<image>.
            flat = split != "val" and _held_out_root(source) not in (
                None,
                *data_splits(source).values(),
            )
            layout = "<root>/<class>/<image>" if flat else _LAYOUT.format(split=split)
            raise DataError(
                f"{source}: the {split} split has readable images of {len(found)} class(es) "
                f"{found}; classification needs at least 2 ({layout})."
            )
        return found
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise ConfigError(
            f"{source}: the {split} split's classes differ from train's {expected}: missing "
            f"{missing}, extra {extra}. Give every split a folder with images for each class."
        )
    return list(expected)


def _same_size(
    images: list[tuple[str, np.ndarray]], image_size: tuple[int, int] | None, split: str
) -> list[np.ndarray]:
    if image_size is None:
        sizes: dict[tuple[int, ...], str] = {}
        for name, array in images:
            sizes.setdefault(array.shape[:2], name)
        if len(sizes) > 1:
            (s1, n1), (s2, n2) = list(sizes.items())[:2]
            raise ConfigError(
                f"the {split} images come in {len(sizes)} sizes, e.g. {n1} is {s1[0]}x{s1[1]} "
                f"and {n2} is {s2[0]}x{s2[1]} (height x width). Set `image_size = [H, W]` in "
                "the study file's [data] table to resize them all."
            )
        return [array for _, array in images]
    return [_resized(array, image_size) for _, array in images]


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image at (height, width) `size`, resized bilinearly where it is not."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 RGB `[height, width, 3]`, resized (bilinear) to `size`.

    Raises:
        DataError: The file is missing or is not an image Pillow can read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    array = _decode(lambda: data)
    if array is None:
        raise DataError(f"{path}: {_undecodable(data)}.")
    return _same_size([(path.name, array)], size, "input")[0]
