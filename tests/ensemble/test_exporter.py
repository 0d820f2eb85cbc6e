"""`hpo export`: a trial or a built ensemble as .keras, SavedModel, ONNX and LiteRT, served
without hpo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from hpo.artifacts import collect_garbage, removed_checkpoints
from hpo.config import load_study_config
from hpo.data.tokenizer import Tokenizer
from hpo.ensemble.export_command import main
from hpo.ensemble.predict import predict
from hpo.ensemble.serving import tree_sha256
from hpo.store import load_existing_study, open_artifact_store, open_storage, sha256_file

if TYPE_CHECKING:
    from pathlib import Path

REVIEWS = ["A wonderful, moving film with superb acting.", "Dull, boring and far too long."]

# What an ONNX server does, as docs/serving.md shows it: tokenizer.json's rules in plain Python
# and ONNX Runtime, nothing of hpo's or Keras's.
SERVE_ONNX = """
import json, string, sys
import numpy as np
import onnxruntime

folder, texts = sys.argv[1], sys.argv[2:]
with open(f"{folder}/tokenizer.json", encoding="utf-8") as file:
    tokenizer = json.load(file)
ids = {token: i for i, token in enumerate(tokenizer["vocabulary"])}
lower = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())

def encode(text):
    tokens = text.encode().translate(lower, string.punctuation.encode()).split()
    row = [ids.get(token.decode(), 1) for token in tokens][: tokenizer["max_len"]]
    return row + [0] * (tokenizer["max_len"] - len(row))

session = onnxruntime.InferenceSession(f"{folder}/ensemble.onnx")
batch = np.array([encode(text) for text in texts], dtype=np.int32)
(probabilities,) = session.run(None, {session.get_inputs()[0].name: batch})
assert "hpo" not in sys.modules and "keras" not in sys.modules
print(json.dumps(probabilities.reshape(len(texts)).tolist()))
"""

# What a device does with the LiteRT export: the same tokenizer, and LiteRT's interpreter alone.
SERVE_LITERT = SERVE_ONNX.replace(
    "import onnxruntime\n", "from ai_edge_litert.interpreter import Interpreter\n"
).replace(
    """session = onnxruntime.InferenceSession(f"{folder}/ensemble.onnx")
batch = np.array([encode(text) for text in texts], dtype=np.int32)
(probabilities,) = session.run(None, {session.get_inputs()[0].name: batch})
assert "hpo" not in sys.modules and "keras" not in sys.modules""",
    """interpreter = Interpreter(model_path=f"{folder}/ensemble.tflite")
batch = np.array([encode(text) for text in texts], dtype=np.int32)
(given,) = interpreter.get_input_details()
interpreter.resize_tensor_input(given["index"], batch.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(given["index"], batch)
interpreter.invoke()
probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
assert not {"hpo", "keras", "tensorflow"} & set(sys.modules)""",
)
assert "Interpreter(" in SERVE_LITERT

SERVE_SAVED_MODEL = """
import json, sys
import tensorflow as tf

serve = tf.saved_model.load(sys.argv[1] + "/saved_model").signatures["serving_default"]
(name,) = serve.structured_input_signature[1]
out = next(iter(serve(**{name: tf.constant(sys.argv[2:])}).values())).numpy()
assert "hpo" not in sys.modules
print(json.dumps(out.reshape(len(sys.argv) - 2).tolist()))
"""


def serve(script: str, folder: Path, texts: list[str]) -> np.ndarray:
    """Runs a serving script in a fresh process outside the project; returns its answer."""
    run = subprocess.run(
        [sys.executable, "-c", script, str(folder.resolve()), *texts],
        cwd=folder.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return np.asarray(json.loads(run.stdout.strip().splitlines()[-1]))


def assert_recorded(entry: dict, checksum: str) -> None:
    assert entry["sha256"] == checksum
    assert entry["checked_classes"] == 2 and entry["checked_examples"] > 0
    assert entry["max_abs_difference"] <= entry["max_tolerance"]


@pytest.mark.slow
def test_a_trial_exports_to_every_format_and_each_serves_without_hpo(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trial1"
    # One flag with several formats, and the flag repeated.
    formats = ["--format", "keras", "savedmodel", "onnx", "--format", "litert"]
    assert main(["--study", str(study_copy), "--trial", "1", *formats, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble.onnx" in printed and "not ONNX-able" in printed
    assert "ensemble.tflite" in printed and "not LiteRT-able" in printed

    report = json.loads((out / "report.json").read_text())
    assert report["trial"] == 1 and report["checked_on"] == "validation"
    assert report["task"] == "imdb"  # hpo predict reads it (an arrays study's is refused)
    # Which study it is of, as an ensemble's report says: another's is not replaced by it.
    assert report["storage"] == load_study_config(study_copy).storage_url
    assert report["backend"] == report["trained_on"] == "tensorflow"
    export = report["export"]
    assert_recorded(export, sha256_file(out / "ensemble.keras"))
    assert_recorded(export["saved_model"], tree_sha256(out / "saved_model"))
    assert_recorded(export["onnx"], sha256_file(out / "ensemble.onnx"))
    assert export["onnx"]["input_kind"] == "token ids" and export["onnx"]["input"] == "tokens"
    assert "TextVectorization" in export["onnx"]["not_onnx"]
    assert_recorded(export["litert"], sha256_file(out / "ensemble.tflite"))
    assert export["litert"]["input_kind"] == "token ids"
    assert "TextVectorization" in export["litert"]["not_litert"]
    assert export["tokenizer_sha256"] == sha256_file(out / "tokenizer.json")

    expected = predict(out, REVIEWS)  # the .keras export, through hpo
    assert expected[0] > 0.5 > expected[1]
    np.testing.assert_allclose(serve(SERVE_SAVED_MODEL, out, REVIEWS), expected, atol=1e-5)
    np.testing.assert_allclose(serve(SERVE_ONNX, out, REVIEWS), expected, atol=1e-5)
    np.testing.assert_allclose(serve(SERVE_LITERT, out, REVIEWS), expected, atol=1e-5)


@pytest.mark.slow
def test_a_trial_of_a_study_made_off_tensorflow_keeps_its_token_ids_beside_a_saved_model(
    study_copy: Path, tmp_path: Path
) -> None:
    # A study searched on JAX: `hpo export --trial N` alone wrote a .keras taking token ids,
    # recorded for jax; asked for a SavedModel too, the export loaded on TensorFlow and wrote a
    # .keras (and a SavedModel) taking raw text, recorded for tensorflow, which JAX cannot load.
    import keras

    from hpo.api import load_model

    config = load_study_config(study_copy)
    study = load_existing_study(open_storage(config.storage_url, create=False), config.name)
    recorded = study.user_attrs["hpo_config"]
    # Its checkpoints load on any backend: the study is made to read as searched on JAX.
    study.set_user_attr(
        "hpo_config", {**recorded, "training": {**recorded["training"], "backend": "jax"}}
    )
    assert keras.config.backend() == "tensorflow"

    out = tmp_path / "trial1"
    formats = ["--format", "keras", "savedmodel"]
    assert main(["--study", str(study_copy), "--trial", "1", *formats, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "jax"  # as hpo ensemble records the study's, whatever the format
    assert report["export"]["saved_model"]["input_kind"] == "token ids"
    assert str(load_model(out).inputs[0].dtype) == "int32"
    # hpo predict loads it on the backend recorded, JAX, through tokenizer.json beside it.
    scored = subprocess.run(
        [sys.executable, "-m", "hpo", "predict", "--ensemble", str(out), *REVIEWS],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert [line.split("\t")[2] for line in scored.stdout.strip().splitlines()] == REVIEWS


@pytest.mark.slow
def test_an_ensemble_gains_onnx_then_a_saved_model_and_litert_each_serving_its_predictions(
    study_copy: Path, tmp_path: Path
) -> None:
    from hpo.ensemble import main as ensemble

    out = tmp_path / "served"
    args = ["--study", str(study_copy), "--top", "2", "--out", str(out), "--format", "onnx"]
    assert ensemble(args) == 0
    built = json.loads((out / "report.json").read_text())["export"]
    assert_recorded(built["onnx"], sha256_file(out / "ensemble.onnx"))
    assert "saved_model" not in built and not (out / "saved_model").exists()

    added = ["--study", str(study_copy), "--ensemble", str(out), "--format", "savedmodel"]
    assert main([*added, "--format", "litert"]) == 0
    export = json.loads((out / "report.json").read_text())["export"]
    assert export["sha256"] == built["sha256"] == sha256_file(out / "ensemble.keras")
    assert export["onnx"] == built["onnx"]
    assert_recorded(export["saved_model"], tree_sha256(out / "saved_model"))
    assert_recorded(export["litert"], sha256_file(out / "ensemble.tflite"))

    expected = predict(out, REVIEWS)
    np.testing.assert_allclose(serve(SERVE_SAVED_MODEL, out, REVIEWS), expected, atol=1e-5)
    np.testing.assert_allclose(serve(SERVE_ONNX, out, REVIEWS), expected, atol=1e-5)
    np.testing.assert_allclose(serve(SERVE_LITERT, out, REVIEWS), expected, atol=1e-5)


def test_unknown_trial_and_bad_flags_exit_2_with_the_fix(
    searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--study", str(searched), "--trial", "99"]) == 2
    err = capsys.readouterr().err
    assert "has no trial 99 (its trials: 0 to 3)" in err and "Traceback" not in err

    folder = str(searched.parent / "nowhere")
    assert main(["--study", str(searched), "--ensemble", folder, "--out", folder]) == 2
    assert "--out is for a trial's export" in capsys.readouterr().err
    assert main(["--study", str(searched), "--ensemble", folder]) == 2
    assert "--format savedmodel, --format onnx and/or --format litert" in capsys.readouterr().err


def _unbuilt_ensemble(folder: Path, **recorded: object) -> Path:
    """An ensemble folder's report.json and tokenizer.json, without its models: what `hpo
    export --ensemble` verifies before any work."""
    folder.mkdir()
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(Tokenizer(["", "[UNK]", "film"], 8).to_json(), encoding="utf-8")
    np.save(folder / "test_predictions.npy", np.array([0.1, 0.9, 0.4, 0.6], np.float32))
    export = {"sha256": "0" * 64, "tolerance": 0.002, "tokenizer": "tokenizer.json"}
    report = {
        "study": "tiny",
        "test_examples": 4,
        "test_data": {"sha256": "0" * 64, "examples": 4},
        "export": {**export, "tokenizer_sha256": sha256_file(tokenizer)},
        **recorded,
    }
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def _refused(searched: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`hpo export --ensemble folder --format onnx`'s one-line error (exit code 2)."""
    assert main(["--study", str(searched), "--ensemble", str(folder), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (folder / "ensemble.onnx").exists()
    return err


def test_an_ensemble_whose_tokenizer_changed_is_refused_before_any_export(
    searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # hpo export --ensemble said "checked" (exit 0) with tokenizer.json missing or '{}', which
    # its token-id exports (ONNX, LiteRT) are served with; report.json kept its old checksum.
    folder = _unbuilt_ensemble(tmp_path / "tiny-top3")
    (folder / "tokenizer.json").write_text("{}")
    err = _refused(searched, folder, capsys)
    assert "tokenizer.json has checksum" in err and "rebuild the ensemble with hpo ensemble" in err
    (folder / "tokenizer.json").unlink()
    err = _refused(searched, folder, capsys)
    assert "tokenizer.json is missing" in err and "rebuild the ensemble with hpo ensemble" in err


def test_an_ensemble_whose_test_predictions_changed_is_refused_before_any_export(
    searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A damaged test_predictions.npy gave a traceback (truncated, garbage, other rows), or
    # with 1 - p an "ONNX export disagrees ... by 9.24e-01" that blamed the export.
    from hpo.ensemble.evaluated import REPORT_KEY, save_predictions

    evaluated = save_predictions(tmp_path, np.array([0.1, 0.9, 0.4, 0.6]))
    folder = _unbuilt_ensemble(tmp_path / "tiny-top3", **{REPORT_KEY: evaluated})
    np.save(folder / "test_predictions.npy", 1 - np.array([0.1, 0.9, 0.4, 0.6], np.float32))
    err = _refused(searched, folder, capsys)
    assert "test_predictions.npy has checksum" in err and "rebuild the ensemble" in err
    (folder / "test_predictions.npy").unlink()
    err = _refused(searched, folder, capsys)
    assert "test_predictions.npy is missing" in err and "rebuild the ensemble" in err
    # A report from before the checksum: the file is still read safely, its rows counted.
    older = _unbuilt_ensemble(tmp_path / "older")
    np.save(older / "test_predictions.npy", np.array([0.1, 0.9, 0.4], np.float32))
    err = _refused(searched, older, capsys)
    assert "shape (3,), not finite predictions for its 4 test examples" in err


def test_a_folder_tuner_ensemble_export_wrote_is_refused_naming_the_way_to_its_formats(
    searched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Tuner.ensemble().export(path) writes ensemble.keras alone. hpo export --ensemble asked
    # for the study it was built from, then, given it, said there was no ensemble report and
    # to build one with hpo ensemble, which a Tuner's study (its test set the user's) has not.
    monkeypatch.chdir(tmp_path)  # no studies/imdb.toml here to fall back on
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "ensemble.keras").write_bytes(b"PK")  # refused before it is read
    for study in ([], ["--study", str(searched)]):
        assert main([*study, "--ensemble", str(folder), "--format", "onnx"]) == 2
        err = capsys.readouterr().err
        assert "holds ensemble.keras but no report.json" in err and "Traceback" not in err
        assert "Tuner.ensemble().export(path) writes such a folder" in err
        assert "tuner.ensemble(...).export(path, formats=('onnx',))" in err
        assert "KERAS_BACKEND=tensorflow" in err and "--study FILE" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["ensemble.keras"]


def test_a_missing_folder_and_a_trial_s_export_are_named_for_what_they_are(
    searched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # A typo in --ensemble was reported as the default study's missing database (where a
    # studies/imdb.toml is, as in every checkout), and a trial's export folder as one holding
    # no ensemble report, to be built with hpo ensemble.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "imdb.toml").write_text('name = "imdb"\ntask = "imdb"\n')
    assert main(["--ensemble", "ensembles/imdb-top5x", "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "--ensemble ensembles/imdb-top5x: no such folder" in err
    assert "study database" not in err and "Traceback" not in err
    trial = tmp_path / "exports" / "imdb-trial3"
    trial.mkdir(parents=True)
    (trial / "ensemble.keras").write_bytes(b"PK")  # refused before it is read
    (trial / "report.json").write_text(json.dumps({"study": "imdb", "trial": 3}))
    for study in ([], ["--study", str(searched)]):
        assert main([*study, "--ensemble", str(trial), "--format", "onnx"]) == 2
        err = capsys.readouterr().err
        assert f"{trial} is trial 3's export (hpo export --trial)" in err
        assert f"hpo export --trial 3 --study FILE --out {trial}" in err and "Traceback" not in err


def test_a_trial_whose_checkpoint_gc_removed_is_refused(
    study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_study_config(study_copy)
    study = load_existing_study(open_storage(config.storage_url, create=False), config.name)
    collect_garbage(study, open_artifact_store(config.artifact_location), keep=1)
    (number,) = sorted(removed_checkpoints(study))[:1]
    assert main(["--study", str(study_copy), "--trial", str(number), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert f"trial {number}'s checkpoint was removed by hpo gc" in err and "Traceback" not in err


def test_tokenizer_json_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    # The C locale with Python's switch to UTF-8 turned off: text files default to ASCII there,
    # yet hpo's reader and docs/serving.md's recipe read tokenizer.json as UTF-8.
    code = (
        "import locale, sys, types\n"
        "from pathlib import Path\n"
        "from hpo.data.tokenizer import Tokenizer\n"
        "from hpo.ensemble.export import write_tokenizer\n"
        # Escaped: the command line itself is ASCII in that locale.
        "tokenizer = Tokenizer(['', '[UNK]', 'caf\\u00e9', '\\u65e5\\u672c'], 8)\n"
        "task = types.SimpleNamespace(tokenizer=lambda folder: tokenizer)\n"
        "write_tokenizer(task, Path(), Path(sys.argv[1]))\n"
        "print(locale.getpreferredencoding(False))\n"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "UTF" not in done.stdout.upper(), "the locale under test must not be UTF-8"
    text = (tmp_path / "tokenizer.json").read_text(encoding="utf-8")
    assert Tokenizer.from_json(text).vocabulary == ["", "[UNK]", "café", "日本"]


def _fake_onnx_export(
    _model: object, staging: Path, _asked: object, _reference: object, _published: object
) -> dict:
    """`write_exports` as it returns an ONNX export, without converting anything."""
    (staging / "ensemble.onnx").write_bytes(b"onnx")
    return {"onnx": {"path": "ensemble.onnx", "sha256": sha256_file(staging / "ensemble.onnx")}}


def test_a_signal_as_an_export_is_put_in_place_waits_for_the_report_to_record_it(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM after an export's rename, before report.json was rewritten, left the new export
    # in the folder with its report recording none (or the replaced one's checksum).
    import signal

    from hpo.command_options import open_study
    from hpo.ensemble import build_ensemble, exporter

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "out"
    build_ensemble(config, study, top=2, out_dir=out)
    publish = exporter.publish

    def signalled(staging: Path, target: Path) -> None:
        publish(staging, target)
        os.kill(os.getpid(), signal.SIGTERM)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    monkeypatch.setattr(exporter, "write_exports", _fake_onnx_export)
    monkeypatch.setattr(exporter, "publish", signalled)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            exporter.export_built_ensemble(config, study, out, formats=["onnx"])
    finally:
        signal.signal(signal.SIGTERM, before)
    recorded = json.loads((out / "report.json").read_text())["export"]["onnx"]
    assert recorded["sha256"] == sha256_file(out / "ensemble.onnx")


def test_a_full_disk_as_the_report_is_written_leaves_the_ensemble_untouched(
    study_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exports were put in place first and report.json written after, outside the disk-full
    # check: a full disk there gave a bare OSError, with exports the report did not record.
    import errno

    from hpo.command_options import open_study
    from hpo.ensemble import build_ensemble, exporter
    from hpo.errors import DiskFull

    config, study = open_study(study_copy, None, None)
    out = tmp_path / "out"
    build_ensemble(config, study, top=2, out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def full(path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exporter, "write_exports", _fake_onnx_export)
    monkeypatch.setattr(exporter, "synced", full)
    with pytest.raises(DiskFull, match=r"the ensemble and its exports are untouched"):
        exporter.export_built_ensemble(config, study, out, formats=["onnx"])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob(".*")) and not list(out.glob(".*"))
