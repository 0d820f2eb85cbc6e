"""The study records which data its trials saw; the ensemble and resumed searches check it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest

from hpo import ensemble, search
from hpo.config import load_study_config
from hpo.data.provenance import FINGERPRINT_ATTR, GIVEN_ATTR, SOURCE_ATTR, recorded_source
from hpo.search import run_search
from hpo.store import open_storage

from ..conftest import write_fake_imdb, write_study

ROOT = Path(__file__).resolve().parents[2]


def _attrs(study_file: Path) -> dict[str, object]:
    config = load_study_config(study_file)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    return optuna.load_study(study_name=config.name, storage=storage).user_attrs


def _change_split_seed(study_file: Path) -> None:
    text = study_file.read_text()
    assert "val_size = 60\n" in text
    study_file.write_text(text.replace("val_size = 60\n", "val_size = 60\nseed = 5\n"))


def test_search_records_source_and_fingerprint(searched: Path, fake_imdb: Path) -> None:
    attrs = _attrs(searched)
    assert attrs[SOURCE_ATTR] == str(fake_imdb.resolve())
    assert isinstance(attrs[FINGERPRINT_ATTR], str)
    assert len(attrs[FINGERPRINT_ATTR]) == 16


def test_ensemble_refuses_data_the_trials_did_not_see(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = _attrs(study_copy)[FINGERPRINT_ATTR]
    _change_split_seed(study_copy)
    code = ensemble.main(["--study", str(study_copy), "--top", "2", "--out", str(tmp_path / "e")])
    assert code == 2
    err = capsys.readouterr().err
    assert "other data than the study's trials saw" in err
    assert str(recorded) in err
    assert not (tmp_path / "e").exists()


def test_resumed_search_with_other_data_settings_is_refused(
    study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _attrs(study_copy)
    _change_split_seed(study_copy)
    assert search.main(["--study", str(study_copy), "--n-trials", "5"]) == 2
    err = capsys.readouterr().err
    assert "resuming the search would use other data" in err
    assert "the data's files, or the study file's [data] settings, changed since" in err
    after = _attrs(study_copy)
    assert after[FINGERPRINT_ATTR] == before[FINGERPRINT_ATTR]
    assert after["hpo_config"] == before["hpo_config"]


def test_a_resumed_search_reads_the_data_path_the_study_file_names_now(
    study_copy: Path, fake_imdb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The recorded source outranked an edited [data] path: the search went on with the old
    # data, saying nothing.
    other = write_fake_imdb(tmp_path / "other", seed=1)
    text = study_copy.read_text()
    assert f'path = "{fake_imdb}"' in text
    study_copy.write_text(text.replace(f'path = "{fake_imdb}"', f'path = "{other}"'))
    assert search.main(["--study", str(study_copy), "--n-trials", "5"]) == 2
    out, err = capsys.readouterr()
    assert f"from {other.resolve()} ..." in out
    assert f"read its data from {fake_imdb.resolve()}; this run reads {other.resolve()}" in out
    assert "resuming the search would use other data" in err
    storage = load_study_config(study_copy).storage_url
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 4


def test_data_given_to_the_search_by_flag_stay_the_studys_until_a_flag_says_otherwise(
    fake_imdb: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # hpo search --data big on a study file that names a sample: a resumed search (and the
    # ensemble) without --data read the sample, and refused it as other data. A data.path
    # edited after a search that read it is read (the test above).
    other = write_fake_imdb(tmp_path / "other", seed=1)
    study_file = write_study(tmp_path, fake_imdb, n_trials=1)
    assert search.main(["--study", str(study_file), "--data", str(other)]) == 0
    for trials in ("2", "3"):  # and the resumed search keeps them as given
        capsys.readouterr()
        assert search.main(["--study", str(study_file), "--n-trials", trials]) == 0
        assert f"from {other.resolve()} ..." in capsys.readouterr().out
        assert "which the study file's data.path names; to read that, pass --data" in caplog.text
    assert _attrs(study_file)[GIVEN_ATTR] is True


def test_an_older_study_reads_its_recorded_data_as_before_and_records_no_guess(
    study_copy: Path, fake_imdb: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A study recorded before hpo noted whether --data gave its data, copied (cp -a) so that
    # its data.path names the copy: it reads the recorded data, as earlier releases did, and
    # the warning claimed --data had given them, and recorded that guess.
    config = load_study_config(study_copy)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    storage.delete_study_user_attr(storage.get_study_id_from_name(config.name), GIVEN_ATTR)
    copy = write_fake_imdb(tmp_path / "copy", seed=1)
    text = study_copy.read_text()
    study_copy.write_text(text.replace(f'path = "{fake_imdb}"', f'path = "{copy}"'))
    assert search.main(["--study", str(study_copy), "--n-trials", "5"]) == 0
    assert "which its search read (an earlier hpo did not record whether --data" in caplog.text
    assert "(--data)" not in caplog.text
    assert GIVEN_ATTR not in _attrs(study_copy)


def test_make_ensemble_needs_no_environment_after_the_search(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file = write_study(tmp_path, fake_imdb, n_trials=2)
    text = study_file.read_text()
    study_file.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("path ="))
    )
    monkeypatch.setenv("HPO_IMDB_PATH", str(fake_imdb))
    assert run_search(load_study_config(study_file), progress=False).finished == 2

    environment = {k: v for k, v in os.environ.items() if k != "HPO_IMDB_PATH"}
    out = tmp_path / "ensemble"
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "ensemble",
            f"STUDY={study_file}",
            f"ARGS=--top 2 --out {out}",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "ensemble.keras").is_file()


def test_fingerprinting_arrays_holds_no_copy_of_them() -> None:
    # A notebook's arrays can be most of its memory: hashing them copied each one (tobytes).
    import hashlib
    import json
    import tracemalloc

    import numpy as np

    from hpo.data.array_cache import fingerprint

    x = np.ones((2_000, 5_000), dtype=np.float32)  # 40 MB
    strided = x[:, ::2]  # not contiguous: hashed as the contiguous copy it stands for
    tracemalloc.start()
    try:
        digest = fingerprint({"x": x}, {"split": "train"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1e6, f"fingerprinting 40 MB took {peak / 1e6:.0f} MB"
    # The same digest as hashing a copy of the bytes, so caches written before stay valid.
    reference = hashlib.sha256(json.dumps({"split": "train"}).encode())
    reference.update(f"x{x.shape}{x.dtype}".encode())
    reference.update(x.tobytes())
    assert digest == reference.hexdigest()[:16]
    assert fingerprint({"x": strided}, {}) == fingerprint({"x": strided.copy()}, {})


@pytest.mark.parametrize("bad", [[1], {"path": "x"}, 5])
def test_a_recorded_source_that_is_no_path_is_ignored_with_a_warning(
    bad: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = optuna.create_study()
    study.set_user_attr(SOURCE_ATTR, str(tmp_path))
    assert recorded_source(study) == str(tmp_path)
    study.set_user_attr(SOURCE_ATTR, bad)
    assert recorded_source(study) is None
    assert f"{SOURCE_ATTR!r}" in caplog.text


@pytest.mark.parametrize("task", ["text", "imdb", "images"])
def test_a_recorded_source_that_is_no_data_is_named_as_the_records(
    task: str, tmp_path: Path
) -> None:
    # hpo gc said "--data points at /etc/passwd ... Fix the path given by --data, $HPO_TEXT_PATH
    # or the study file's data.path", though neither gave it: the study's record did.
    from hpo.caches import current_cache
    from hpo.config import StudyConfig
    from hpo.errors import DataError

    (tmp_path / "passwd").write_text("root:x:0:0\n")
    study = optuna.create_study()
    study.set_user_attr(SOURCE_ATTR, str(tmp_path / "passwd"))
    config = StudyConfig(name="t", task=task, study_dir=tmp_path / "t")
    with pytest.raises(DataError) as raised:
        current_cache(config, study)  # as hpo gc finds the study's cache
    message = str(raised.value)
    assert message.startswith(
        f"the data source the study recorded (its {SOURCE_ATTR}) points at {tmp_path / 'passwd'}"
    )
    assert "pass the data the search used with --data PATH" in message
    assert "Fix the path given" not in message
    # A path the user gives is still named as theirs.
    from hpo.tasks import get_task

    with pytest.raises(DataError, match=r"^--data points at .*Fix the path given by --data"):
        get_task(task).locate(config, str(tmp_path / "passwd"))
