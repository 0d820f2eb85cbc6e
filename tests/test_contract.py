from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import signal
import zipfile
from pathlib import Path

import keras
import pytest
from packaging.version import Version

from hpo.contract import CheckpointError, load_checkpoint, load_keras_file, refuse_unsafe_layers

ROOT = Path(__file__).resolve().parents[1]


def _lambda_model(path: Path) -> Path:
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_loading_runs_in_safe_mode(tmp_path: Path) -> None:
    # Safe mode refuses to deserialize a Lambda's Python code; had anything enabled unsafe
    # deserialization, this would load.
    path = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"(?i)lambda"):
        load_keras_file(path)
    with pytest.raises(CheckpointError, match="trial 3: cannot load checkpoint") as refused:
        load_checkpoint(path, 3)
    # Keras's advice to pass safe_mode=False is no hpo command's or function's to follow.
    assert "safe_mode" not in str(refused.value)


def _naming_module(path: Path, module: str) -> Path:
    """A small model saved to `path` whose Dropout layer's config names `module`."""
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Dropout(0.1, name="drop")(inputs)
    keras.Model(inputs, outputs).save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    text = files["config.json"].decode()
    assert text.count('"module": "keras.layers", "class_name": "Dropout"') == 1
    files["config.json"] = text.replace(
        '"module": "keras.layers", "class_name": "Dropout"',
        f'"module": "{module}", "class_name": "Dropout"',
    ).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("package", ["keras_nlp", "keras_hub", "keras_cv"])
def test_a_file_never_makes_keras_import_a_module_of_the_working_directory(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keras's safe mode imports a module a file names under these packages: `python -m hpo`
    # and a notebook put their folder on the import path, so ./keras_nlp.py ran.
    import sys

    ran = tmp_path / "ran"
    folder = tmp_path / "cwd"
    folder.mkdir()
    (folder / f"{package}.py").write_text(
        f"open({str(ran)!r}, 'w').close()\nimport keras\nDropout = keras.layers.Dropout\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, package, raising=False)
    path = _naming_module(tmp_path / "model.keras", f"{package}.layers")
    expected = rf"model\.keras names module '{package}\.layers' for its 'Dropout' object 'drop'"
    with pytest.raises(CheckpointError, match=rf"trial 3: {expected}"):
        refuse_unsafe_layers(path, "trial 3")
    with pytest.raises(CheckpointError, match=expected):
        load_keras_file(path)
    with pytest.raises(CheckpointError, match="trial 3: cannot load checkpoint") as refused:
        load_checkpoint(path, 3)
    # Keras's advice to pass safe_mode=False is no hpo command's or function's to follow.
    assert "safe_mode" not in str(refused.value)
    assert not ran.exists()
    assert package not in sys.modules


def test_a_file_may_name_a_package_this_process_has_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from hpo.models.external import installed_package

    loaded = types.ModuleType("keras_nlp")
    loaded.Dropout = keras.layers.Dropout  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras_nlp", loaded)
    path = _naming_module(tmp_path / "model.keras", "keras_nlp")
    refuse_unsafe_layers(path, "trial 3")
    assert isinstance(load_keras_file(path).get_layer("drop"), keras.layers.Dropout)
    # Installed packages are found where they are installed, without running them.
    assert installed_package("keras")
    monkeypatch.delitem(sys.modules, "packaging")
    assert installed_package("packaging")
    # And Python's own library (SQLite's driver), loaded or not.
    monkeypatch.delitem(sys.modules, "sqlite3")
    assert installed_package("sqlite3")


def test_keras_with_safe_mode_fixes_is_required() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"keras>=3\.13\.2"', pyproject)
    assert Version(keras.__version__) >= Version("3.13.2")


@pytest.mark.parametrize("recorded", [123, {"a": 1}, ["x"]])
def test_an_artifact_id_that_is_not_a_string_is_a_damaged_checkpoint(
    recorded: object, tmp_path: Path
) -> None:
    import optuna

    from hpo.contract import Attr, fetch_checkpoint
    from hpo.store import AtomicFileSystemArtifactStore

    (tmp_path / "artifacts").mkdir()
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    trial = optuna.trial.create_trial(value=0.5, user_attrs={Attr.CHECKPOINT_ID: recorded})
    trial.number = 4
    with pytest.raises(
        CheckpointError, match=rf"trial 4's {Attr.CHECKPOINT_ID} is .*not an artifact id"
    ):
        fetch_checkpoint(store, trial, tmp_path)


def test_a_config_nested_deeper_than_json_parses_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(
        CheckpointError, match=r"trial 3: deep\.keras is not a readable \.keras file"
    ):
        refuse_unsafe_layers(path, "trial 3")


def test_a_checkpoint_missing_from_the_store_names_gc_as_a_cause(tmp_path: Path) -> None:
    # A collection running beside `hpo ensemble` removes candidates' checkpoints as documented;
    # the warning told the user to restore them from a backup.
    import optuna

    from hpo.contract import Attr, fetch_checkpoint
    from hpo.store import AtomicFileSystemArtifactStore

    (tmp_path / "artifacts").mkdir()
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    gone = "0b4c2f8e-1d3a-4e5f-9a7b-6c5d4e3f2a1b"
    trial = optuna.trial.create_trial(value=0.5, user_attrs={Attr.CHECKPOINT_ID: gone})
    with pytest.raises(CheckpointError, match=r"If `hpo gc` \(or keep_checkpoints\) ran meanwhile"):
        fetch_checkpoint(store, trial, tmp_path)


class _FullDisk(io.RawIOBase):
    """A file on a disk with no space left: every write fails with ENOSPC."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Unreadable(io.RawIOBase):
    """An artifact whose every read fails with EIO."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_a_full_temporary_folder_is_named_not_the_checkpoint_copied_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TMPDIR on a small tmpfs: `hpo ensemble` said each intact checkpoint could not be read
    # and should be restored from a backup, skipped every trial, and ended with none usable.
    import tempfile

    import optuna

    import hpo.contract
    from hpo.contract import Attr, fetch_checkpoint
    from hpo.errors import DiskFull
    from hpo.store import AtomicFileSystemArtifactStore

    (tmp_path / "artifacts").mkdir()
    store = AtomicFileSystemArtifactStore(tmp_path / "artifacts")
    store.write("checkpoint-id", io.BytesIO(b"k" * 3000))
    trial = optuna.trial.create_trial(value=0.5, user_attrs={Attr.CHECKPOINT_ID: "checkpoint-id"})
    temporary = tmp_path / "tmp"
    (temporary / "scratch").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setattr(hpo.contract, "open", lambda path, mode: _FullDisk(), raising=False)
    with pytest.raises(DiskFull) as caught:
        fetch_checkpoint(store, trial, temporary / "scratch")
    message = str(caught.value)
    copy = f"trial-{trial.number:05d}.keras"
    assert message.startswith(
        f"no space left in the temporary folder {temporary} for a copy of {copy} ("
    )
    assert message.endswith(
        "about 3 KB needed). Free space there, or set TMPDIR to a folder on a larger disk, then "
        "run the same command again."
    )
    assert not (temporary / "scratch" / copy).exists()

    # A read of the artifact that fails is still the artifact's.
    monkeypatch.undo()
    monkeypatch.setattr(store, "open_reader", lambda artifact_id: _Unreadable())
    with pytest.raises(CheckpointError, match=r"cannot read .*checkpoint-id.* Input/output error"):
        fetch_checkpoint(store, trial, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_that_keras_swallows_while_a_model_loads_still_stops_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    # h5py's file driver catches the KeyboardInterrupt raised while keras.models.load_model
    # reads a .keras file: hpo ensemble went on, replaced the ensemble and exited 0.
    import argparse
    import types

    from hpo.cli import _run

    path = tmp_path / "model.keras"
    inputs = keras.Input(shape=(3,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(path)
    load_model = keras.models.load_model

    def swallowing(*args: object, **kwargs: object) -> keras.Model:
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
        return load_model(*args, **kwargs)

    def loads(_args: argparse.Namespace) -> int:
        load_keras_file(path)
        return 0

    monkeypatch.setattr(keras.models, "load_model", swallowing)
    before = signal.getsignal(signal.SIGTERM)
    try:
        module = types.SimpleNamespace(run=loads)
        assert _run(module, argparse.Namespace(verbose=False)) == 130  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, before)
    # Ctrl-C is Python's again, and the stop forgotten, for what runs after the command.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    assert load_keras_file(path) is not None
