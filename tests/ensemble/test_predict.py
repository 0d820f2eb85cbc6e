"""`hpo predict` reads a folder of images as training reads one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.ensemble import predict
from hpo.ensemble.predict import _image_files
from hpo.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pathlib import Path


def test_a_folder_given_to_predict_is_read_as_training_reads_it(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for path in (folder / "b.png", folder / ".ipynb_checkpoints" / "b.png", elsewhere / "c.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (folder / "._b.png").write_bytes(b"")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    one = tmp_path / "a.png"

    assert list(_image_files([str(one), str(folder)])) == [
        (str(one), False),
        (str(folder / "b.png"), True),
        (str(folder / "linked" / "c.png"), True),
    ]


def test_folders_of_no_image_are_refused_naming_them(tmp_path: Path) -> None:
    import keras

    model = keras.Model(inputs := keras.Input((8, 8, 3)), keras.layers.Flatten()(inputs))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not an image")
    # It exited 1 printing nothing (or only that it skipped a file).
    with pytest.raises(DataError, match=r"no image to classify in .*empty: it holds no files"):
        predict._run_images(model, ["a", "b"], [str(tmp_path / "empty")], tmp_path)
    with pytest.raises(DataError, match=r"notes: its 1 file\(s\) are not images; name image"):
        predict._run_images(model, ["a", "b"], [str(tmp_path / "notes")], tmp_path)


def test_a_class_name_with_a_line_break_or_tab_is_printed_in_one_column(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(predict, "_predict", lambda model, x, folder: np.array([[0.2, 0.8]]))
    assert predict._run_text(None, ["plain", "new\nline\tclass"], ["A film."], tmp_path) == 0
    assert capsys.readouterr().out == "0.8000\tnew line class\tA film.\n"


def _export(folder: Path, units: int, text: bool = False, **report: object) -> Path:
    """A folder holding an `ensemble.keras` of `units` output columns and its report.json."""
    import keras

    from hpo.store import sha256_file

    folder.mkdir()
    if text:
        inputs = keras.Input(shape=(1,), dtype="string")
        vectorize = keras.layers.TextVectorization(vocabulary=["good", "bad"], output_mode="count")
        x = vectorize(inputs)
    else:
        inputs = x = keras.Input(shape=(3,))
    outputs = keras.layers.Dense(units, activation="sigmoid" if units == 1 else "softmax")(x)
    keras.Model(inputs, outputs).save(folder / "ensemble.keras")
    sha256 = sha256_file(folder / "ensemble.keras")
    (folder / "report.json").write_text(json.dumps({"export": {"sha256": sha256}, **report}))
    return folder


@pytest.mark.parametrize(
    ("units", "classes"),
    [(1, ["only"]), (1, 5), (1, [{"a": 1}, [2]]), (1, "ab"), (1, []), (3, ["a", "b"]), (3, None)],
)
def test_class_names_that_do_not_fit_the_export_are_refused(
    tmp_path: Path, units: int, classes: object
) -> None:
    folder = _export(tmp_path / "e", units, classes=classes)
    with pytest.raises(ConfigError, match=r"report\.json: 'classes' must be a list of"):
        predict.load_export(folder)


def test_class_names_that_fit_the_export_are_taken(tmp_path: Path) -> None:
    assert predict.load_export(_export(tmp_path / "a", 1))[1] == ["negative", "positive"]
    assert predict.load_export(_export(tmp_path / "b", 3, classes=["x", "y", "z"]))[1] == [
        "x",
        "y",
        "z",
    ]


def test_a_text_export_whose_report_names_another_backend_is_refused(tmp_path: Path) -> None:
    folder = _export(tmp_path / "e", 1, text=True, backend="jax")
    done = subprocess.run(
        [sys.executable, "-m", "hpo.predict", "--ensemble", str(folder), "a good film"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HPO_VERBOSE": "0"},
    )
    assert done.returncode == 2, done.stderr
    assert "reads raw text, which only TensorFlow runs" in done.stderr
    assert "report.json" in done.stderr


def test_an_output_folders_lock_makes_a_second_writer_wait_its_turn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `hpo export` adding to an ensemble folder and `hpo ensemble --out` replacing it took no
    # turns: the export's report entry landed in the new ensemble's folder, or was lost.
    import threading
    import time

    from hpo.ensemble.output_folder import folder_lock

    out, order = tmp_path / "ensemble", []
    out.mkdir()
    # The same folder by another name (a link serving the latest ensemble) is the same lock.
    (tmp_path / "latest").symlink_to(out, target_is_directory=True)

    def second() -> None:
        with folder_lock(tmp_path / "latest"):
            order.append("second")

    with folder_lock(out):
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.5)
        order.append("first")
    waiting.join(10)
    assert order == ["first", "second"]
    said = capsys.readouterr().err
    assert f"waiting for another hpo command to finish writing {tmp_path / 'latest'}" in said
    assert not (tmp_path / ".ensemble.lock").exists()  # there only while held
    # Where the lock file cannot be made, the folder is written unlocked.
    with folder_lock(tmp_path / "no" / "such" / "folder"):
        pass


def test_texts_the_terminal_cannot_show_are_predicted_escaped(tmp_path: Path) -> None:
    # A latin-1 locale, or PYTHONIOENCODING=ascii: the first such text ended the output.
    folder = _export(tmp_path / "e", 1, text=True)
    done = subprocess.run(
        [sys.executable, "-m", "hpo.predict", "--ensemble", str(folder), "日本 good", "bad"],
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "ascii", "HPO_VERBOSE": "0"},
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode("ascii").splitlines()
    assert [line.split("\t")[2] for line in lines] == ["\\u65e5\\u672c good", "bad"]


def test_an_export_of_arrays_is_refused_naming_hpo_load_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A trial's export of an hpo.Tuner study: its image model, trained on pixels scaled to
    # [0, 1], was fed raw ones (every line 1.0000); other shapes were tracebacks.
    from hpo.ensemble.predict import main

    image = tmp_path / "a.png"
    image.write_bytes(b"")
    arrays = _export(tmp_path / "arrays", 1, task="arrays", classes=["no", "yes"])
    assert main(["--ensemble", str(arrays), str(image)]) == 2
    err = capsys.readouterr().err
    assert "holds a model of a study searched on arrays (hpo.Tuner's): hpo predict scores" in err
    assert f"model = hpo.load_model('{arrays}')" in err
    # One whose report does not say (written before exports recorded their task).
    features = _export(tmp_path / "features", 1)
    assert main(["--ensemble", str(features), str(image)]) == 2
    assert ", taking " in capsys.readouterr().err


def test_a_model_saved_from_python_without_a_report_is_refused_naming_hpo_load_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ensemble.export(path) writes ensemble.keras alone: "does not record the exported
    # ensemble's checksum ... rebuild the ensemble with hpo ensemble" sent users the wrong way.
    from hpo.ensemble.predict import main

    image = tmp_path / "a.png"
    image.write_bytes(b"")
    saved = _export(tmp_path / "saved", 1)
    (saved / "report.json").unlink()
    assert main(["--ensemble", str(saved), str(image)]) == 2
    err = capsys.readouterr().err
    assert "holds ensemble.keras but no report.json, as Ensemble.export(path) writes it" in err
    assert f"hpo.load_model('{saved}').predict(x)" in err
    assert "Traceback" not in err


def test_a_trial_exported_without_the_keras_format_is_refused_naming_the_export_that_adds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # hpo export --trial 3 --format savedmodel onnx, as docs/commands.md shows it, writes no
    # ensemble.keras: hpo predict said to build an ensemble with hpo ensemble --top 5.
    import hpo
    from hpo.ensemble.predict import main

    folder = tmp_path / "t3"
    folder.mkdir()
    report = {
        "study": "imdb-smoke",
        "task": "imdb",
        "trial": 3,
        "export": {"saved_model": {"path": "saved_model"}, "onnx": {"path": "ensemble.onnx"}},
    }
    (folder / "report.json").write_text(json.dumps(report))
    fix = (
        f"hpo export --trial 3 --study FILE --format keras --format savedmodel --format onnx "
        f"--out {folder}."
    )
    assert main(["--ensemble", str(folder), "A fine film."]) == 2
    err = capsys.readouterr().err
    assert "trial 3 of study 'imdb-smoke' was exported there in savedmodel, onnx only" in err
    assert "without the keras format" in err and fix in err
    assert "hpo ensemble" not in err
    with pytest.raises(ConfigError, match="without the keras format") as raised:
        hpo.load_model(folder)
    assert fix in str(raised.value)

    # An ensemble.keras that was written, and removed since; a folder of no trial's export.
    report["export"] = {"sha256": "0" * 64, **report["export"]}  # type: ignore[dict-item]
    (folder / "report.json").write_text(json.dumps(report))
    assert main(["--ensemble", str(folder), "A fine film."]) == 2
    assert "Build one first: hpo ensemble --top 5." in capsys.readouterr().err
    assert main(["--ensemble", str(tmp_path), "A fine film."]) == 2
    assert "Build one first: hpo ensemble --top 5." in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\n  \n\r\n"])
def test_an_input_file_without_text_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    """An empty --file, or one of blank lines, printed nothing and exited 0."""
    import argparse

    file = tmp_path / "reviews.txt"
    file.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"--file {file} holds no text"):
        predict._texts(argparse.Namespace(file=file, inputs=[]))
