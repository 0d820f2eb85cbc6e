from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.command_options import is_loopback
from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.inspection.dashboard import main
from hpo.search import run_search
from hpo.store import open_storage

from ..conftest import free_port, write_study

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()  # type: ignore[no-any-return]


class Dashboard:
    """`python -m hpo.dashboard` in a subprocess, stopped with SIGTERM."""

    def __init__(self, study_file: Path | None = None, *, study: list[str] | None = None) -> None:
        """Serves `study_file`, or the study that `study` (for example --storage URL
        --study-name NAME) names."""
        where = study if study is not None else ["--study", str(study_file)]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpo.dashboard",
                *where,
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: the server logs every request, and a full pipe would block it.
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _get(f"{self.url}/api/meta")
                return
            except OSError:
                if self.process.poll() is not None:
                    self.log.seek(0)
                    raise AssertionError(self.log.read()) from None
                time.sleep(0.3)
        raise AssertionError("dashboard did not start")

    def api(self, path: str) -> Any:
        return json.loads(_get(f"{self.url}/api/{path}"))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.log.seek(0)
            log = self.log.read()
            raise AssertionError(f"dashboard ignored SIGTERM; its log:\n{log}") from None
        finally:
            self.log.close()
        return self.process.returncode


def test_dashboard_serves_study_trials_and_artifacts(searched: Path) -> None:
    config = load_study_config(searched)
    dashboard = Dashboard(searched)
    try:
        studies = dashboard.api("studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["tiny"]
        detail = dashboard.api(f"studies/{studies[0]['study_id']}")
        trials = detail["trials"]
        assert len(trials) == 4
        for trial in trials:
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert {"checkpoint_artifact_id", "checkpoint_sha256", "val_accuracy", "family"} <= set(
                attrs
            )
            served = _get(
                f"{dashboard.url}/artifacts/{studies[0]['study_id']}/{trial['trial_id']}/"
                f"{attrs['checkpoint_artifact_id']}"
            )
            assert hashlib.sha256(served).hexdigest() == attrs[Attr.CHECKPOINT_SHA256]
            assert {a["filename"] for a in trial["artifacts"]} == {
                "best.keras",
                "val_predictions.npy",
            }
    finally:
        assert dashboard.stop() == 0
    assert config.storage_url.endswith("study.db")


def test_browser_renders_the_study_page(searched: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    dashboard = Dashboard(searched)
    try:
        study_id = dashboard.api("studies")["study_summaries"][0]["study_id"]
        result = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{dashboard.url}/dashboard/studies/{study_id}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        dashboard.stop()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tiny" in result.stdout
    # Rendered by the dashboard's app, not in the served HTML: the objective's name.
    assert "val_accuracy" in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_polling_dashboard_does_not_disturb_a_two_worker_search(
    fake_imdb: Path, tmp_path: Path
) -> None:
    path = write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False)
    config = load_study_config(path)
    run_search(config, progress=False)
    dashboard = Dashboard(path)
    stop = threading.Event()
    polls: list[int] = []

    def poll() -> None:
        while not stop.is_set():
            dashboard.api("studies/1")
            polls.append(1)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_search(config.with_overrides(n_trials=4, workers=2), progress=False)
    finally:
        stop.set()
        poller.join()
        dashboard.stop()
    study = optuna.load_study(
        study_name=config.name, storage=open_storage(config.storage_url, create=False)
    )
    states = {t.state for t in study.trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len(study.trials) >= 4
    assert len(polls) > 20


def test_binding_beyond_loopback_needs_a_flag(
    searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert main(["--study", str(searched), "--host", "0.0.0.0"]) == 2
    assert "no authentication" in capsys.readouterr().err


def test_a_port_taken_or_out_of_range_is_one_line_with_exit_2(
    searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both printed the dashboard's address, then died with a traceback (OSError: Address
    # already in use; OverflowError).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--study", str(searched), "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"cannot serve at 127.0.0.1:{port}: Address already in use" in captured.err
    assert "give another --port" in captured.err and "Dashboard for" not in captured.out
    with pytest.raises(SystemExit) as exited:
        main(["--study", str(searched), "--port", "99999"])
    assert exited.value.code == 2
    assert "must be a port number from 1 to 65535, got '99999'" in capsys.readouterr().err


def test_a_mistyped_study_never_creates_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope" / "study.db"
    assert main(["--storage", f"sqlite:///{missing}", "--study-name", "x"]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not missing.parent.exists()


SIGNAL_DURING_REQUEST = """
import os, signal, sys
from hpo.inspection.dashboard import serve_until_signalled

def app(environ, start_response):
    os.kill(os.getpid(), signal.SIGTERM)  # lands while this request is being served
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served"]

serve_until_signalled(app, "127.0.0.1", int(sys.argv[1]))
print("stopped", flush=True)
"""


def test_a_signal_that_lands_during_a_request_still_stops_the_dashboard() -> None:
    """The request finishes and the server exits: the signal is never lost to wsgiref's handler,
    which catches any exception raised inside a request (the cause of a dashboard that ignored
    SIGTERM when the signal came while it was still logging the request)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_DURING_REQUEST, str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert body == b"served"
    assert process.returncode == 0, err
    assert out == "stopped\n"
