"""Workers sharing one PostgreSQL study store: search, status and ensemble, and bad URLs.

Needs a server: `.ci/run` starts a throw-away cluster on loopback (`.ci/postgres.sh`) and sets
HPO_TEST_POSTGRES_URL. In CI a missing server fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpo.artifacts import held_checkpoints, holding, study_time
from hpo.config import config_from_dict
from hpo.contract import Attr, fetch_checkpoint
from hpo.errors import StoreError
from hpo.store import open_artifact_store, open_storage

from ..conftest import assert_each_trial_trained_once, free_port, hold_readers, write_study

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
HPO = [sys.executable, "-m", "hpo"]


def _test_server() -> str:
    """The test server's URL; fails in CI without one, skips elsewhere."""
    server = os.environ.get("HPO_TEST_POSTGRES_URL")
    if not server:
        if os.environ.get("CI"):
            pytest.fail("HPO_TEST_POSTGRES_URL is not set; .ci/run starts a PostgreSQL server")
        pytest.skip('no PostgreSQL server: eval "$(bash .ci/postgres.sh start)" starts one')
    return server


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the test server, as a storage URL."""
    server = _test_server()
    import psycopg

    name = f"hpo_{uuid.uuid4().hex[:10]}"
    plain = server.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return str(sqlalchemy.engine.make_url(server).set(database=name))


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HPO, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def test_an_unreachable_server_is_a_fast_exit_2_without_the_password(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # A closed port on loopback: refused at once; the password must not be echoed anywhere.
    url = "postgresql+psycopg://hpo:s3cret-pw@127.0.0.1:9/none"
    study = write_study(tmp_path, fake_imdb)
    started = time.monotonic()
    result = _run("search", "--study", str(study), "--storage", url)
    assert result.returncode == 2
    assert "cannot open storage 'postgresql+psycopg://hpo:***@127.0.0.1:9/none'" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60
    status = _run("status", "--storage", url, "--study-name", "tiny")
    assert status.returncode == 2
    assert "s3cret-pw" not in status.stdout + status.stderr


def test_a_database_nothing_was_searched_into_is_named_so(postgres_url: str) -> None:
    result = _run("status", "--storage", postgres_url, "--study-name", "x")
    assert result.returncode == 2
    assert "holds no Optuna tables, so nothing has been searched into it" in result.stderr
    assert "database server is running" not in result.stderr
    # A search creates the tables there.
    open_storage(postgres_url, create=True, heartbeat=False)


def test_workers_through_the_grpc_storage_proxy(
    fake_imdb: Path, tmp_path: Path, postgres_url: str
) -> None:
    import signal

    port = free_port()
    proxy = subprocess.Popen(
        [*HPO, "storage-proxy", "--storage", postgres_url, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path = write_study(tmp_path, fake_imdb, n_trials=3, enqueue=False)
        result = _run(
            "search",
            "--study",
            str(path),
            "--storage",
            f"grpc://127.0.0.1:{port}",
            "--workers",
            "2",
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Study 'tiny': 3 finished" in result.stdout
    finally:
        proxy.send_signal(signal.SIGTERM)
        out, _ = proxy.communicate(timeout=30)
    assert f"grpc://127.0.0.1:{port}" in out
    # The trials are in the database behind the proxy.
    storage = open_storage(postgres_url, create=False, heartbeat=False)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_a_storage_proxy_restarted_is_waited_out(postgres_url: str) -> None:
    # Every worker using it died with gRPC's traceback, its trial left RUNNING.
    import signal
    import threading

    port = free_port()

    def proxy() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*HPO, "storage-proxy", "--storage", postgres_url, "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    first = proxy()
    storage = open_storage(f"grpc://127.0.0.1:{port}", create=True)
    study = optuna.create_study(study_name="restarted", storage=storage)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=60)
    started: list[subprocess.Popen[str]] = []
    later = threading.Timer(2.0, lambda: started.append(proxy()))
    later.start()
    try:
        study.set_user_attr("after", "the restart")  # waits for the new proxy
        assert optuna.load_study(study_name="restarted", storage=storage).user_attrs == {
            "after": "the restart"
        }
    finally:
        later.join()
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_no_proxy_at_the_address_is_exit_2(fake_imdb: Path, tmp_path: Path) -> None:
    port = free_port()
    result = _run(
        "search",
        "--study",
        str(write_study(tmp_path, fake_imdb)),
        "--storage",
        f"grpc://127.0.0.1:{port}",
    )
    assert result.returncode == 2
    assert f"no gRPC storage proxy answers at grpc://127.0.0.1:{port}" in result.stderr


@pytest.mark.slow
def test_a_killed_worker_on_another_machine_is_retried_by_heartbeat(
    fake_imdb: Path, tmp_path: Path, postgres_url: str
) -> None:
    """Worker A ("host-a") is killed mid-trial; worker B ("host-b") joins the study by its storage
    alone, finds A's trial without heartbeat past the grace period, fails and re-runs it."""
    import signal

    path = write_study(tmp_path / "a", fake_imdb, n_trials=3)
    path.write_text(
        path.read_text().replace("max_epochs = 2\npatience = 1", "max_epochs = 8\npatience = 8")
    )
    environment = {**os.environ, "HPO_HEARTBEAT_INTERVAL": "1", "HPO_HEARTBEAT_GRACE": "4"}
    worker_a = subprocess.Popen(
        [*HPO, "search", "--study", str(path), "--storage", postgres_url],
        cwd=tmp_path / "a",
        env={**environment, "HPO_WORKER_HOST": "host-a"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert worker_a.poll() is None, worker_a.communicate()[1][-2000:]
            try:  # worker A creates the tables and the study first
                storage = open_storage(postgres_url, create=False, heartbeat=False)
                running = optuna.load_study(study_name="tiny", storage=storage).get_trials(
                    states=(TrialState.RUNNING,)
                )
            except (StoreError, KeyError):
                running = []
            if any(t.intermediate_values for t in running):
                break
            time.sleep(0.5)
        else:
            pytest.fail("worker A never got into a trial")
    finally:
        os.killpg(worker_a.pid, signal.SIGKILL)
        worker_a.communicate()
    killed = next(
        t
        for t in optuna.load_study(study_name="tiny", storage=storage).trials
        if t.state == TrialState.RUNNING
    )
    time.sleep(5)  # past the grace period: A's trial has had no heartbeat for longer

    (tmp_path / "b").mkdir()
    worker_b = subprocess.run(
        [*HPO, "search", "--storage", postgres_url, "--study-name", "tiny"],
        cwd=tmp_path / "b",
        env={**environment, "HPO_WORKER_HOST": "host-b"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert worker_b.returncode == 0, worker_b.stderr[-2000:]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.trials[killed.number].state == TrialState.FAIL
    reason = study.trials[killed.number].user_attrs[Attr.FAIL_REASON]
    assert reason.startswith("its worker host-a:") and "sent no heartbeat for 4 s" in reason
    retried = [
        t
        for t in study.trials
        if t.number > killed.number and t.params == killed.params and t.state == TrialState.COMPLETE
    ]
    assert retried and retried[0].user_attrs[Attr.WORKER].startswith("host-b:")
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 3
    # B kept its scratch in its own folder and wrote checkpoints to the study's artifact folder.
    assert (tmp_path / "b" / "studies" / "tiny" / "logs").is_dir()
    assert (tmp_path / "a" / "tiny" / "artifacts").is_dir()


def test_a_worker_with_other_settings_is_refused(
    fake_imdb: Path, tmp_path: Path, postgres_url: str
) -> None:
    path = write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False)
    assert _run("search", "--study", str(path), "--storage", postgres_url).returncode == 0
    path.write_text(path.read_text().replace("max_epochs = 2", "max_epochs = 5"))
    result = _run("search", "--study", str(path), "--storage", postgres_url, "--n-trials", "2")
    assert result.returncode == 2
    assert "settings differ from those study 'tiny' recorded" in result.stderr
    assert "(training.max_epochs: 2 -> 5)" in result.stderr


def test_a_worker_storing_artifacts_elsewhere_is_refused_and_the_record_kept(
    fake_imdb: Path, tmp_path: Path, postgres_url: str
) -> None:
    # Worker B's copy of the study file lacks the shared `artifacts`: its checkpoints would go
    # to its own folder, where no reader of the study looks.
    path = write_study(tmp_path / "a", fake_imdb, n_trials=1, enqueue=False)
    assert _run("search", "--study", str(path), "--storage", postgres_url).returncode == 0
    (tmp_path / "b").mkdir()
    copy = tmp_path / "b" / path.name
    copy.write_text(path.read_text())
    result = _run("search", "--study", str(copy), "--storage", postgres_url, "--n-trials", "2")
    assert result.returncode == 2
    shared = (tmp_path / "a" / "tiny" / "artifacts").resolve()
    assert f"keeps its artifacts in {shared}" in result.stderr
    assert str((tmp_path / "b" / "tiny" / "artifacts").resolve()) in result.stderr
    storage = open_storage(postgres_url, create=False, heartbeat=False)
    recorded = optuna.load_study(study_name="tiny", storage=storage).user_attrs["hpo_config"]
    assert config_from_dict(recorded).artifact_location == str(shared)


@pytest.mark.slow
def test_four_workers_on_two_hosts_share_one_study_and_the_commands_read_it(
    fake_imdb: Path, tmp_path: Path, postgres_url: str
) -> None:
    """One search creates the study; then two more machines (their own folders and host names)
    join it by storage and name at the same time, two workers each. Together they finish the
    study's trials, each trained once, no two sharing every parameter. `hpo status`, `hpo
    ensemble`, `hpo report` and the dashboard then read the study by storage and name, and the
    password in the URL is written nowhere others read."""
    path = write_study(tmp_path / "w0", fake_imdb, n_trials=1, enqueue=False)
    path.write_text(path.read_text().replace("max_epochs = 2", "max_epochs = 1"))
    # The test server trusts loopback, so a password in the URL is accepted and ignored; it
    # must never be written where others read it: the study's stored configuration, `hpo
    # status --json`, the ensemble's report.json.
    password = "s3cret-pw"
    postgres_url = (
        sqlalchemy.engine.make_url(postgres_url)
        .set(password=password)
        .render_as_string(hide_password=False)
    )
    first = _run("search", "--study", str(path), "--storage", postgres_url)
    assert first.returncode == 0, first.stderr[-2000:]
    hosts = []
    for index in (1, 2):
        folder = tmp_path / f"w{index}"
        folder.mkdir()
        hosts.append(
            subprocess.Popen(
                [
                    *HPO,
                    "search",
                    "--storage",
                    postgres_url,
                    "--study-name",
                    "tiny",
                    "--n-trials",
                    "8",
                    "--workers",
                    "2",
                ],
                cwd=folder,
                env={**os.environ, "HPO_WORKER_HOST": f"host-{index}"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for host in hosts:
        out, err = host.communicate(timeout=600)
        assert host.returncode == 0, err[-2000:]
        assert password not in out + err
    study = optuna.load_study(
        study_name="tiny", storage=open_storage(postgres_url, create=False, heartbeat=False)
    )
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len(study.trials) >= 8
    assert_each_trial_trained_once(
        study.trials, config_from_dict(study.user_attrs["hpo_config"]).artifact_dir
    )
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == len(keys)
    workers = {t.user_attrs[Attr.WORKER] for t in study.trials}
    assert {w.split(":")[0] for w in workers} >= {"host-1", "host-2"}
    # Two workers on each joining host: four workers there (the first search's is a fifth).
    assert len({w for w in workers if w.startswith("host-")}) == 4

    # Another command finds the study by URL and name alone, with its recorded configuration.
    status = _run("status", "--storage", postgres_url, "--study-name", "tiny", "--json")
    assert status.returncode == 0, status.stderr
    assert '"study": "tiny"' in status.stdout
    assert ":***@" in json.loads(status.stdout)["storage"]
    assert ":***@" in study.user_attrs["hpo_config"]["storage"]
    assert password not in status.stdout + status.stderr + json.dumps(study.user_attrs)
    out = tmp_path / "ensemble"
    ensemble = _run(
        "ensemble",
        "--storage",
        postgres_url,
        "--study-name",
        "tiny",
        "--top",
        "3",
        "--out",
        str(out),
    )
    assert ensemble.returncode == 0, ensemble.stderr[-2000:]
    assert (out / "ensemble.keras").is_file()
    assert ":***@" in json.loads((out / "report.json").read_text())["storage"]
    written = [p for p in out.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not written
    assert password not in ensemble.stdout + ensemble.stderr
    from ..inspection.test_dashboard import Dashboard

    dashboard = Dashboard(study=["--storage", postgres_url, "--study-name", "tiny"])
    try:
        studies = dashboard.api("studies")["study_summaries"]
    finally:
        assert dashboard.stop() == 0
    assert [s["study_name"] for s in studies] == ["tiny"]
    report = _run(
        "report",
        "--storage",
        postgres_url,
        "--study-name",
        "tiny",
        "--out",
        str(tmp_path / "report"),
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report" / "report.html").is_file()


@pytest.fixture
def own_server() -> Iterator[tuple[str, str]]:
    """A throw-away PostgreSQL cluster for this test alone, which it may stop and start (where
    the test server runs, so can this): (its data folder, its storage URL)."""
    _test_server()
    started = subprocess.run(
        ["bash", ".ci/postgres.sh", "start"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
    )
    data = exports["HPO_TEST_PGDATA"]
    try:
        yield data, exports["HPO_TEST_POSTGRES_URL"]
    finally:
        subprocess.run(["bash", ".ci/postgres.sh", "stop", data], cwd=ROOT, check=False)


def _server(action: str, data: str) -> None:
    """Stops (`pause`, ending every connection) or starts (`resume`) a cluster, same port."""
    subprocess.run(["bash", ".ci/postgres.sh", action, data], cwd=ROOT, check=True)


@pytest.mark.slow
def test_a_storage_outage_mid_trial_is_waited_out_and_the_study_completes(
    fake_imdb: Path, tmp_path: Path, own_server: tuple[str, str]
) -> None:
    """The server stops while two workers train (heartbeats every second, so every worker meets
    the outage) until a trial's own process has met it too, then starts again: the workers and
    the trial processes wait, and the study ends complete, readable by status and ensemble."""
    data, url = own_server
    path = write_study(tmp_path, fake_imdb, n_trials=2, enqueue=False)
    logs = tmp_path / "tiny" / "logs"
    out, err = tmp_path / "search.out", tmp_path / "search.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        search = subprocess.Popen(
            [*HPO, "search", "--study", str(path), "--storage", url, "--workers", "2"],
            cwd=ROOT,
            env={**os.environ, "HPO_HEARTBEAT_INTERVAL": "1"},
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert search.poll() is None, err.read_text()[-2000:]
            try:
                storage = open_storage(url, create=False, heartbeat=False)
                running = optuna.load_study(study_name="tiny", storage=storage).get_trials(
                    states=(TrialState.RUNNING,)
                )
            except (StoreError, KeyError):  # the search creates the tables and the study first
                running = []
            if any(t.intermediate_values for t in running):
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported an epoch")
        _server("pause", data)
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10 or (
            time.monotonic() - stopped < 45
            and not any("unreachable" in log.read_text() for log in logs.glob("trial-*.log"))
        ):
            time.sleep(0.5)
        _server("resume", data)
        assert search.wait(timeout=600) == 0, err.read_text()[-3000:]
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert "unreachable" in err.read_text()
    assert "retrying for up to 300 s" in err.read_text()
    assert "answers again" in err.read_text()
    assert any("answers again" in log.read_text() for log in logs.glob("trial-*.log"))
    study = optuna.load_study(
        study_name="tiny", storage=open_storage(url, create=False, heartbeat=False)
    )
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for trial in study.get_trials(states=(TrialState.FAIL,)):
        assert trial.user_attrs.get(Attr.FAIL_REASON), trial.number
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 2
    store = open_artifact_store(tmp_path / "tiny" / "artifacts")
    for trial in complete:
        assert fetch_checkpoint(store, trial, tmp_path).is_file()

    status = _run("status", "--storage", url, "--study-name", "tiny", "--json")
    assert status.returncode == 0, status.stderr
    ensemble = _run(
        "ensemble",
        "--storage",
        url,
        "--study-name",
        "tiny",
        "--top",
        "2",
        "--out",
        str(tmp_path / "ensemble"),
    )
    assert ensemble.returncode == 0, ensemble.stderr[-2000:]
    assert (tmp_path / "ensemble" / "ensemble.keras").is_file()


def test_a_storage_gone_longer_than_the_wait_is_a_clear_error_and_then_usable_again(
    own_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, url = own_server
    url = url.replace("hpo@", "hpo:s3cret-pw@")  # the test cluster trusts any password
    monkeypatch.setenv("HPO_STORAGE_WAIT", "2")
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="gone", storage=storage)
    _server("pause", data)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as raised:
            study.set_user_attr("note", "written during the outage")
        waited = time.monotonic() - started
    finally:
        _server("resume", data)
    assert 2 <= waited < 15
    message = str(raised.value)
    assert "study storage postgresql+psycopg://hpo:***@127.0.0.1" in message
    assert "unreachable for 2 s" in message
    assert "Connection refused" in message
    assert "$HPO_STORAGE_WAIT" in message
    assert "s3cret-pw" not in message
    # The same storage goes on once the server is back: its pool replaces the broken connections.
    study.set_user_attr("note", "written after the outage")
    assert study.user_attrs["note"] == "written after the outage"


def test_a_trial_process_that_starts_during_an_outage_waits_to_open_the_storage(
    own_server: tuple[str, str],
) -> None:
    """A command opening a study fails at once on a server that does not answer; a process a
    running search starts (a trial's, `wait_to_open`) waits for it instead."""
    import threading

    data, url = own_server
    optuna.create_study(study_name="later", storage=open_storage(url, create=True))
    _server("pause", data)
    resume = threading.Timer(4, _server, ("resume", data))
    try:
        with pytest.raises(StoreError, match="cannot open storage"):
            open_storage(url, create=False, heartbeat=False)
        started = time.monotonic()
        resume.start()
        storage = open_storage(url, create=False, heartbeat=False, wait_to_open=True)
        assert time.monotonic() - started >= 3
    finally:
        resume.join()
    assert optuna.load_study(study_name="later", storage=storage).study_name == "later"


def test_a_hold_on_checkpoints_is_deleted_from_postgresql_when_released(
    postgres_url: str,
) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url, create=True))
    with holding(study, [0], "hpo export"):
        assert hold_readers(held_checkpoints(study)) == {0: "hpo export"}
    assert study.user_attrs == {}


def test_holds_lapse_by_the_database_servers_clock_not_the_machines(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(storage=open_storage(postgres_url, create=True))
    assert abs(study_time(study) - time.time()) < 60
    # A reader whose clock is 7 hours behind the collector's: by its own clock its hold would
    # have lapsed an hour before it began.
    behind = time.time() - 7 * 3600
    monkeypatch.setattr("hpo.artifacts.time.time", lambda: behind)
    with holding(study, [0], "hpo export"):
        monkeypatch.undo()
        assert hold_readers(held_checkpoints(study)) == {0: "hpo export"}
