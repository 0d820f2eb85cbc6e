"""Score new inputs with an exported ensemble.

Command line::

    python -m hpo.predict --ensemble ensembles/imdb-top5 "A wonderful film." "Dull and long."
    python -m hpo.predict --ensemble ensembles/imdb-top5 --file reviews.txt   # one review a line
    cat reviews.txt | python -m hpo.predict --ensemble ensembles/imdb-top5
    python -m hpo.predict --ensemble ensembles/cifar10-top5 cat.jpg ship.png  # image ensembles
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from hpo import metrics
from hpo._json import read_json
from hpo.backend import Backend, claim_backend, use_backend
from hpo.contract import CheckpointError, keras_cause, load_keras_file, refuse_unsafe_layers
from hpo.data.layout import visible_files
from hpo.data.tokenizer import Tokenizer
from hpo.ensemble import EXPORT_NAME
from hpo.ensemble.export import TOKENIZER_NAME, takes_text
from hpo.errors import ConfigError, DataError
from hpo.store import sha256_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping, Sequence

    import keras

__all__ = [
    "exported_without_keras",
    "load_export",
    "main",
    "predict",
    "verify_export",
    "verify_tokenizer",
]


def load_export(
    ensemble_dir: Path, backend: Backend | None = None
) -> tuple[keras.Model, list[str]]:
    """The exported ensemble and its class names, after checking it.

    The exported model is verified as the ensemble verifies its members: its SHA-256 must match
    the one `report.json` recorded when it was evaluated, it may hold no `Lambda` layer, and it
    is loaded in Keras safe mode, on `backend` (default: the one it was made on).

    Raises:
        ConfigError: The folder holds no exported ensemble, or it does not verify.
    """
    path = Path(ensemble_dir) / EXPORT_NAME
    if not path.is_file():
        raise ConfigError(
            exported_without_keras(Path(ensemble_dir))
            or f"no {EXPORT_NAME} in {ensemble_dir}. Build one first: hpo ensemble --top 5."
        )
    verify_export(Path(ensemble_dir))
    report = read_json(Path(ensemble_dir) / "report.json")
    use_backend(backend or export_backend(Path(ensemble_dir)))
    try:
        model = load_keras_file(path)
    except Exception as exc:
        raise ConfigError(
            f"{path} cannot be loaded ({type(exc).__name__}: {keras_cause(exc)}). If its members "
            f"are models of your own classes, pass the study file that names their modules, "
            f"--study FILE, so that hpo imports them."
        ) from exc
    import keras

    if takes_text(model) and keras.backend.backend() != Backend.TENSORFLOW.value:
        # An export that reads raw strings was made on TensorFlow, whatever report.json says.
        raise ConfigError(
            f"{path} reads raw text, which only TensorFlow runs, but "
            f"{Path(ensemble_dir) / 'report.json'} records backend "
            f"{keras.backend.backend()!r} for it. Restore its report.json (backend "
            f"'tensorflow'), or rebuild the ensemble with hpo ensemble."
        )
    return model, _class_names(report, model, Path(ensemble_dir) / "report.json")


# The report's entry of each format but keras (whose entry is at the top level), by format.
_FORMAT_ENTRIES = {"savedmodel": "saved_model", "onnx": "onnx", "litert": "litert"}


def exported_without_keras(folder: Path) -> str | None:
    """Why `folder` holds no `ensemble.keras` where it is a trial's export written without the
    keras format (`hpo export --trial N --format onnx`), with the command that adds it; None
    for any other folder."""
    try:
        report = read_json(folder / "report.json")
        number = int(report["trial"])
        entries = dict(report.get("export") or {})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if "sha256" in entries:  # it was written, and removed since: not this case
        return None
    written = [fmt for fmt, entry in _FORMAT_ENTRIES.items() if entry in entries]
    study = report.get("study")
    return (
        f"no {EXPORT_NAME} in {folder}: trial {number}"
        + (f" of study {study!r}" if isinstance(study, str) else "")
        + f" was exported there in {', '.join(written) or 'no format'} only, without the keras "
        f"format ({EXPORT_NAME}, which hpo predict and hpo.load_model read). Export it again "
        f"with --format keras added: hpo export --trial {number} --study FILE --format keras"
        + "".join(f" --format {fmt}" for fmt in written)
        + f" --out {folder}."
    )


def _class_names(report: dict[str, Any], model: keras.Model, report_path: Path) -> list[str]:
    """The report's class names, one a column of the export's output (two for one column).

    Raises:
        ConfigError: They are not as many names as that, or not names.
    """
    shape = model.outputs[0].shape
    columns = int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 1
    wanted = 2 if columns == 1 else columns
    # Reports from before multi-class tasks name no classes; they were binary sentiment.
    classes = report.get("classes", ["negative", "positive"])
    if (
        not isinstance(classes, list)
        or len(classes) != wanted
        or not all(isinstance(name, str) for name in classes)
    ):
        raise ConfigError(
            f"{report_path}: 'classes' must be a list of {wanted} class names, one a class the "
            f"exported ensemble scores ({columns} output column(s)), got {classes!r:.100}. "
            f"Rebuild the ensemble with hpo ensemble, or restore its report.json."
        )
    return classes


def export_backend(ensemble_dir: Path) -> Backend:
    """The backend the export was made (and so loads) on; reports from before: TensorFlow."""
    try:
        report = read_json(Path(ensemble_dir) / "report.json")
        return Backend(report.get("backend", Backend.TENSORFLOW.value))
    except (OSError, ValueError, AttributeError):
        return Backend.TENSORFLOW  # `load_export` names what is wrong with the folder


def takes_tokens(model: keras.Model) -> bool:
    """Whether the export reads token ids (a text export made without TensorFlow)."""
    return "int" in str(model.inputs[0].dtype) and len(model.inputs[0].shape) == 2


def reads_text(model: keras.Model) -> bool:
    """Whether the export scores texts (raw strings, or token ids from `tokenizer.json`)."""
    return takes_text(model) or takes_tokens(model)


def predict(ensemble_dir: Path, inputs: Sequence[Any]) -> np.ndarray:
    """The ensemble's probabilities for raw inputs: texts, or uint8 images of the data's size.

    Returns:
        `[n]` probabilities of the positive class (binary), or `[n, classes]`.

    Raises:
        ConfigError: The folder holds no exported ensemble, or it does not verify.
    """
    model, _ = load_export(ensemble_dir)
    return _predict(model, inputs, Path(ensemble_dir))


def _predict(model: keras.Model, inputs: Sequence[Any], ensemble_dir: Path) -> np.ndarray:
    if not len(inputs):
        return np.zeros(0)
    if takes_tokens(model):
        batch = load_tokenizer(ensemble_dir).encode([str(text) for text in inputs])
    elif takes_text(model):
        batch = np.array(list(inputs), dtype=object)
    else:
        batch = np.stack(inputs)
    return metrics.as_probabilities(model.predict(batch, batch_size=256, verbose=0))


def load_tokenizer(ensemble_dir: Path) -> Tokenizer:
    """The tokenizer beside a token-id export, checked against the checksum the report holds.

    Raises:
        ConfigError: It is missing, changed, or not a tokenizer.
    """
    report = read_json(ensemble_dir / "report.json")
    path = verify_tokenizer(ensemble_dir, report)
    if path is None:
        raise ConfigError(
            f"{ensemble_dir / 'report.json'} records no {TOKENIZER_NAME}, which this export's "
            f"token ids are made with; rebuild the ensemble with hpo ensemble."
        )
    try:
        return Tokenizer.from_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not an hpo tokenizer ({exc}).") from exc


def verify_tokenizer(ensemble_dir: Path, report: Mapping[str, Any]) -> Path | None:
    """The folder's `tokenizer.json`, checked against the checksum its `report` records; None
    where the report records none (an image ensemble's).

    Raises:
        ConfigError: It is missing or changed since the ensemble was evaluated.
    """
    export = report.get("export")
    recorded = export.get("tokenizer_sha256") if isinstance(export, dict) else None
    if recorded is None:
        return None
    path = Path(ensemble_dir) / TOKENIZER_NAME
    actual = sha256_file(path) if path.is_file() else None
    if actual != recorded:
        found = "is missing" if actual is None else f"has checksum {actual[:12]}..."
        raise ConfigError(
            f"{path} {found}, not the tokenizer (checksum {str(recorded)[:12]}...) recorded "
            f"when the ensemble was evaluated, which its token ids are made with; rebuild the "
            f"ensemble with hpo ensemble."
        )
    return path


def verify_export(ensemble_dir: Path) -> None:
    """Checks `ensemble.keras` against its recorded checksum and refuses unsafe layers.

    Raises:
        ConfigError: No report, no recorded checksum, a mismatch, or a `Lambda` layer.
    """
    report_path = ensemble_dir / "report.json"
    if not report_path.exists():
        raise ConfigError(
            f"{ensemble_dir} holds {EXPORT_NAME} but no report.json, as Ensemble.export(path) "
            f"writes it from Python: hpo predict serves the folders hpo ensemble and hpo export "
            f"write, whose report records the evaluated model's checksum. Load this one with "
            f"hpo.load_model({str(ensemble_dir)!r}).predict(x), or write it with hpo ensemble."
        )
    try:
        recorded = read_json(report_path)["export"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{report_path} does not record the exported ensemble's checksum ({exc!r}); "
            f"rebuild the ensemble with hpo ensemble."
        ) from exc
    actual = sha256_file(ensemble_dir / EXPORT_NAME)
    if actual != recorded:
        raise ConfigError(
            f"{ensemble_dir / EXPORT_NAME} has checksum {actual[:12]}..., not the "
            f"{str(recorded)[:12]}... recorded when it was evaluated; it was changed or "
            f"truncated. Rebuild it with hpo ensemble."
        )
    try:
        refuse_unsafe_layers(ensemble_dir / EXPORT_NAME, "the exported ensemble")
    except CheckpointError as exc:
        raise ConfigError(f"{ensemble_dir / EXPORT_NAME}: {exc}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument(
        "--ensemble", required=True, type=Path, help="folder written by hpo.ensemble"
    )
    parser.add_argument(
        "--file", type=Path, help="text ensembles: inputs from this file, a line each"
    )
    parser.add_argument(
        "--study",
        type=Path,
        help="the study file whose own model families the members use (imported to load them)",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="texts (text ensembles; without them and --file, read stdin), or image files and "
        "folders of them",
    )


def run(args: argparse.Namespace) -> int:
    """Prints one line per input: probability and label (binary) or top class and probability.

    An image file that cannot be read is reported on stderr and the others still print; the
    exit code is then 1.
    """
    claim_backend(export_backend(args.ensemble))
    if args.study is not None:
        from hpo.config import load_study_config
        from hpo.tasks import study_task

        study_task(load_study_config(args.study))  # imports (and registers) its families
    _check_served(args.ensemble)
    model, classes = load_export(args.ensemble)
    if reads_text(model):
        return _run_text(model, classes, _texts(args), args.ensemble)
    if not takes_images(model):
        _refuse_arrays(args.ensemble, model)
    return _run_images(model, classes, args.inputs, args.ensemble)


def takes_images(model: keras.Model) -> bool:
    """Whether the export reads one batch of images: [batch, height, width, channels]."""
    shape = model.inputs[0].shape
    return len(model.inputs) == 1 and len(shape) == 4 and shape[-1] in (1, 3, 4)


def _check_served(folder: Path) -> None:
    """Refuses, before loading it, an export of a study searched on arrays (`hpo.Tuner`'s),
    whose inputs `hpo predict` cannot make from files: it fed an image model trained on
    scaled pixels the raw ones, silently."""
    try:
        report = read_json(Path(folder) / "report.json")
    except (OSError, ValueError):
        return  # load_export names what is wrong with it
    if isinstance(report, dict) and report.get("task") == "arrays":
        _refuse_arrays(folder, None)


def _refuse_arrays(folder: Path, model: keras.Model | None) -> NoReturn:
    takes = ""
    if model is not None:
        inputs = ", ".join(f"{i.name}: {i.dtype} {tuple(i.shape[1:])}" for i in model.inputs)
        takes = f", taking {inputs}"
    raise ConfigError(
        f"{folder} holds a model of a study searched on arrays (hpo.Tuner's){takes}: hpo "
        f"predict scores texts and image files for text and image studies, and cannot make "
        f"this model's inputs from them. From Python: model = hpo.load_model({str(folder)!r}); "
        f"model.predict(x), with x prepared as the search's was."
    )


def _texts(args: argparse.Namespace) -> list[str]:
    if args.file is not None:
        try:
            texts = _lines(_decoded(args.file.read_bytes(), f"--file {args.file}"))
        except OSError as exc:
            raise ConfigError(f"--file {args.file} cannot be read: {exc}") from exc
        if not any(text.strip() for text in texts):
            raise ConfigError(
                f"--file {args.file} holds no text (it is empty or its lines are blank); give "
                f"it one input a line."
            )
    elif args.inputs:
        # One line of output per argument: a blank one would shift every line after it.
        if blank := [i for i, text in enumerate(args.inputs, 1) if not text.strip()]:
            raise ConfigError(
                f"input {blank[0]} of {len(args.inputs)} is blank; give each input a text (blank "
                f"lines of --file and of standard input are skipped)."
            )
        return list(args.inputs)
    else:
        texts = _lines(_decoded(sys.stdin.buffer.read(), "standard input"))
    return [t for t in texts if t.strip()]


def _lines(text: str) -> list[str]:
    """`text`'s lines, ended by a line feed, a carriage return or both, as a text editor counts
    them (`str.splitlines` also breaks at form feeds, U+2028 and other separators a review may
    hold, and the predictions no longer lined up with the file's lines)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _one_line(text: str) -> str:
    """`text` with its runs of whitespace (tabs, line breaks) as single spaces: one column."""
    return " ".join(text.split())


def _decoded(data: bytes, where: str) -> str:
    """Texts to predict: UTF-8 (or UTF-16, told by its byte-order mark or its NULs), else an
    error."""
    from hpo.data.encodings import sniffed_encoding

    try:
        return data.decode(sniffed_encoding(data, "utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where} is not UTF-8: byte {exc.start} is {data[exc.start : exc.start + 1]!r}. "
            f"Save it as UTF-8 (iconv -f cp1252 -t utf-8 texts.txt > texts-utf8.txt, for a "
            f"file saved on Windows), or give the texts as arguments."
        ) from None


def _run_text(model: keras.Model, classes: list[str], texts: list[str], folder: Path) -> int:
    probabilities = _predict(model, texts, folder)
    for text, p in zip(texts, probabilities, strict=True):
        label, score = _top(classes, p)
        # One line of three columns per input: a review's own tabs and line breaks (one
        # given as an argument, "$(cat review.txt)"), and a class name's, are shown as spaces.
        flat = _one_line(text)
        preview = flat if len(flat) <= 70 else flat[:67] + "..."
        # Binary exports print the positive class's probability, as they always have.
        print(f"{p if p.ndim == 0 else score:.4f}\t{_one_line(label)}\t{preview}")
    return 0


def _run_images(model: keras.Model, classes: list[str], files: list[str], folder: Path) -> int:
    from hpo.data.images import load_image

    if not files:
        raise ConfigError(
            "this ensemble classifies images: name image files, "
            "e.g. hpo predict --ensemble DIR a.jpg b.png."
        )
    height, width = model.inputs[0].shape[1:3]
    images, readable, failed, skipped = [], [], 0, []
    for name, in_folder in _image_files(files):
        try:
            images.append(load_image(Path(name), (height, width)))
            readable.append(name)
        except DataError as exc:
            if in_folder:  # a folder's other files (Thumbs.db, notes), as training skips them
                skipped.append(name)
                continue
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    if skipped:
        print(
            f"skipped {len(skipped)} file(s) in the folders given that are not images, e.g. "
            f"{skipped[0]}",
            file=sys.stderr,
        )
    if not readable and not failed:  # folders of no image: nothing above says so
        given = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        raise DataError(
            f"no image to classify in {given}: "
            + (f"its {len(skipped)} file(s) are not images" if skipped else "it holds no files")
            + "; name image files or folders that hold them, e.g. hpo predict --ensemble DIR "
            "photos/."
        )
    if not readable:
        return 1
    for name, p in zip(readable, _predict(model, images, folder), strict=True):
        label, score = _top(classes, p)
        print(f"{_one_line(label)}\t{score:.4f}\t{name}")
    return 1 if failed else 0


def _image_files(names: list[str]) -> Iterator[tuple[str, bool]]:
    """Each name given, a folder as the files in it and below as training reads a folder
    (symbolic links followed, hidden ones left out, in order); with whether it came from a
    folder."""
    for name in names:
        path = Path(name)
        if not path.is_dir():
            yield name, False
            continue
        for file in visible_files(path):
            yield str(file), True


def _top(classes: list[str], p: np.ndarray) -> tuple[str, float]:
    """The most probable class and its probability, for one example's prediction."""
    if p.ndim == 0:
        positive = float(p) > 0.5
        return classes[int(positive)], float(p) if positive else 1 - float(p)
    index = int(np.argmax(p))
    return classes[index], float(p[index])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.predict`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("predict", argv)


if __name__ == "__main__":
    sys.exit(main())
