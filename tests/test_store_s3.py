"""An S3 artifact store (Optuna's Boto3ArtifactStore), against a local S3 server (moto)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from hpo.command_options import open_study
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.ensemble import build_ensemble
from hpo.search import main, run_search

from .conftest import free_port, write_study

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bucket on an S3 server on loopback; trial processes reach it through the environment."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="hpo-artifacts")
    try:
        yield "s3://hpo-artifacts"
    finally:
        server.stop()


def test_trials_store_and_the_ensemble_reads_artifacts_in_s3(
    fake_imdb: Path, tmp_path: Path, s3_bucket: str
) -> None:
    path = write_study(tmp_path, fake_imdb, n_trials=2, extra="")
    path.write_text(f'artifacts = "{s3_bucket}"\n' + path.read_text())
    config = load_study_config(path)
    assert run_search(config, progress=False).finished == 2
    keys = {
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="hpo-artifacts")["Contents"]
    }
    config, study = open_study(path, None, None)
    for trial in study.trials:
        assert {trial.user_attrs[Attr.CHECKPOINT_ID], trial.user_attrs[Attr.PREDICTIONS_ID]} <= keys
    assert not (tmp_path / "tiny" / "artifacts").exists()
    report = build_ensemble(config, study, top=2, out_dir=tmp_path / "ensemble").report
    assert report["top"] == 2
    assert report["artifact_dir"] == s3_bucket


def test_an_unreachable_bucket_is_exit_2_naming_it(
    fake_imdb: Path, tmp_path: Path, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, fake_imdb)
    path.write_text('artifacts = "s3://no-such-bucket"\n' + path.read_text())
    assert main(["--study", str(path)]) == 2
    assert "cannot reach the artifact bucket 's3://no-such-bucket'" in capsys.readouterr().err
    assert not (tmp_path / "tiny" / "study.db").exists()
