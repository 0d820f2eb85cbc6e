"""The `hpo` command and `python -m hpo.X`: help, exit codes, and no TensorFlow start-up noise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from hpo._warnings import warnings_not_errors
from hpo.cli import COMMANDS, module_entry

from .conftest import write_study

ROOT = Path(__file__).resolve().parents[1]
HPO = Path(sys.executable).with_name("hpo")
# Lines TensorFlow's C++ libraries print while loading, before any log level applies.
NOISE = ("oneDNN", "cuInit", "cudart_stub", "absl::InitializeLog", "cpu_feature_guard")


def _run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_hpo_help_lists_every_command() -> None:
    assert HPO.is_file(), "the console script is missing; pip install -e . creates it"
    result = _run(str(HPO), "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"    {name}" in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help_both_ways(name: str) -> None:
    as_command = _run(str(HPO), name, "--help")
    as_module = _run(sys.executable, "-m", module_entry(name), "--help")
    assert as_command.returncode == 0, as_command.stderr
    assert as_module.returncode == 0, as_module.stderr
    assert f"usage: hpo {name}" in as_command.stdout
    assert f"usage: python -m {module_entry(name)}" in as_module.stdout
    # The same flags either way.
    flags = {w for w in as_command.stdout.split() if w.startswith("--")}
    assert flags == {w for w in as_module.stdout.split() if w.startswith("--")}


def test_a_command_loads_only_its_own_module() -> None:
    """`hpo gc` parses its flags without importing what the search, the ensemble or the report
    load (seconds of imports on every call); `hpo --help` still loads them all, to list them."""
    code = (
        "import sys\n"
        "from hpo import cli\n"
        "try:\n"
        "    cli.main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "others = ('hpo.search.workers', 'hpo.ensemble.build', 'hpo.inspection.report')\n"
        "print('loaded:', *(m for m in others if m in sys.modules))\n"
    )
    alone = _run(sys.executable, "-c", code, "gc", "--help")
    assert "usage: hpo gc" in alone.stdout, alone.stderr
    assert alone.stdout.strip().endswith("loaded:")
    every = _run(sys.executable, "-c", code, "--help")
    assert every.stdout.strip().endswith(
        "loaded: hpo.search.workers hpo.ensemble.build hpo.inspection.report"
    )


def test_errors_exit_2_without_tensorflow_noise(tmp_path: Path) -> None:
    result = _run(str(HPO), "predict", "--ensemble", str(tmp_path), "A film.")
    assert result.returncode == 2
    assert "error: no ensemble.keras in" in result.stderr
    assert not [n for n in NOISE if n in result.stderr], result.stderr


def test_imdb_missing_is_one_line_without_tensorflow_noise(tmp_path: Path) -> None:
    # No data given: the official download is tried, here through a proxy that refuses at once.
    study = tmp_path / "imdb.toml"
    study.write_text('name = "imdb"\ntask = "imdb"\n')
    env = {k: v for k, v in os.environ.items() if k != "HPO_IMDB_PATH"}
    env.update(https_proxy="http://127.0.0.1:9", KERAS_HOME=str(tmp_path / "keras"))
    result = _run(str(HPO), "search", "--study", str(study), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "error: IMDB data not found and the download from" in result.stderr
    assert "Point --data or $HPO_IMDB_PATH at" in result.stderr
    assert not [n for n in NOISE if n in result.stderr], result.stderr


def test_output_paths_that_cannot_be_written_exit_2_naming_them(
    searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli import main

    (tmp_path / "afile").write_text("mine")
    for argv, said in [
        (["status", "--csv", str(tmp_path)], f"--csv {tmp_path} is a folder"),
        (["status", "--csv", str(tmp_path / "no" / "t.csv")], "no folder; give a file path"),
        (["report", "--out", str(tmp_path / "afile")], "is a file; give a folder"),
        (["status", "--csv", str(tmp_path / "afile")], "give a new path, such as trials.csv"),
    ]:
        assert main([*argv, "--study", str(searched)]) == 2
        assert said in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_csv_path_naming_the_studys_own_files_is_refused_and_a_table_is_written_again(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli import main

    # A typo naming the study's database or study file replaced it with the table.
    database = next(study_copy.parent.rglob("*.db"))
    for own in (database, study_copy):
        kept = own.read_bytes()
        assert main(["status", "--study", str(study_copy), "--csv", str(own)]) == 2
        assert "is a file that hpo status did not write" in capsys.readouterr().err
        assert own.read_bytes() == kept
    (tmp_path / "tables").mkdir()
    table = tmp_path / "tables" / "trials.csv"
    for _ in range(2):
        assert main(["status", "--study", str(study_copy), "--csv", str(table)]) == 0
    assert table.read_text().startswith("trial,state,")
    assert [p.name for p in table.parent.iterdir()] == ["trials.csv"]  # no part file left


def test_any_other_unwritable_path_is_one_line_with_exit_2_and_a_traceback_when_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo import cli

    def fails(_args: object) -> int:
        raise IsADirectoryError(21, "Is a directory", "out/x.csv")

    monkeypatch.setattr(cli, "_command", lambda _name: type("M", (), {"run": staticmethod(fails)}))
    monkeypatch.setattr(cli, "_configure_logging", lambda _verbose: None)
    monkeypatch.setenv(cli.VERBOSE_VAR, "0")  # restored after the verbose run sets it
    assert cli._run(cli._command("status"), cli.argparse.Namespace()) == 2
    assert capsys.readouterr().err.startswith("error: Is a directory: out/x.csv. Check that path")
    with pytest.raises(IsADirectoryError):
        cli._run(cli._command("status"), cli.argparse.Namespace(verbose=True))


def test_a_verbose_switch_of_another_value_is_refused_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo import cli

    monkeypatch.setattr(cli, "_command", lambda _name: type("M", (), {"run": lambda _a: 0}))
    monkeypatch.setenv(cli.VERBOSE_VAR, "maybe")
    assert cli._run(cli._command("status"), cli.argparse.Namespace()) == 2
    assert "$HPO_VERBOSE must be 1 (on) or 0 (off)" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly(searched: Path) -> None:
    # `hpo status --json | head -1`: the reader leaves before the output is written.
    command = [str(HPO), "status", "--study", str(searched), "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=300) == 141, errors
    assert errors == ""


def test_search_prints_no_tensorflow_start_up_lines(fake_imdb: Path, tmp_path: Path) -> None:
    study = write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False)
    result = _run(str(HPO), "search", "--study", str(study))
    assert result.returncode == 0, result.stderr
    assert "Study 'tiny': 1 finished" in result.stdout
    assert not [n for n in NOISE if n in result.stdout + result.stderr], result.stderr


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflows_python_warnings_show_only_when_verbose(verbose: bool) -> None:
    code = (
        f"from hpo.cli import _configure_logging; _configure_logging({verbose}); "
        "import tensorflow as tf; tf.get_logger().warning('5 out of the last 57 calls retraced')"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert ("retraced" in result.stderr) is verbose, result.stderr


def test_requires_python_covers_this_python() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in supported
    # TensorFlow's wheels cover 3.10 to 3.13, and Keras from 3.13.0 on (hpo needs 3.13.2)
    # requires 3.11: 3.10 could not install hpo at all.
    assert [f"3.{minor}" in supported for minor in (10, 11, 12, 13, 14)] == [
        False,
        True,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["dashboard"], "the dashboard"),
        (["storage-proxy", "--storage", "sqlite:///nowhere.db"], "the study database"),
    ],
)
def test_servers_bind_to_loopback_unless_told(command: list[str], what: str) -> None:
    result = _run(str(HPO), *command, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert f"--host 0.0.0.0 would expose {what}" in result.stderr
    assert "--allow-remote" in result.stderr


def test_the_storage_proxy_on_a_taken_port_is_one_line_with_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        storage = f"sqlite:///{tmp_path / 'proxy.db'}"
        result = _run(str(HPO), "storage-proxy", "--storage", storage, "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"error: cannot serve at 127.0.0.1:{port}: Failed to bind" in result.stderr
    assert "give another --port" in result.stderr and "Traceback" not in result.stderr
    result = _run(str(HPO), "storage-proxy", "--storage", storage, "--port", "0")
    assert result.returncode == 2
    assert "must be a port number from 1 to 65535, got '0'" in result.stderr


def test_an_interrupted_command_says_so_in_one_line_with_exit_code_130(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Ctrl-C in hpo ensemble printed 141 lines of traceback; SIGTERM ended it silently with 143.
    import argparse
    import types

    from hpo.cli import _run

    def terminated(args: argparse.Namespace) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        for run, said in (
            (terminated, "interrupted (signal SIGTERM): "),
            (interrupted, "interrupted: "),
        ):
            module = types.SimpleNamespace(run=run)
            assert _run(module, argparse.Namespace(verbose=False)) == 130  # type: ignore[arg-type]
            err = capsys.readouterr().err
            assert said in err and "Run the same command again." in err
            assert "Traceback" not in err
    finally:
        signal.signal(signal.SIGTERM, before)


def test_commands_start_with_docstrings_stripped(tmp_path: Path) -> None:
    # python -OO (PYTHONOPTIMIZE=2, set in some container images) leaves every __doc__ None.
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    listed = _run(str(HPO), "--help", env=env)
    assert listed.returncode == 0, listed.stderr
    for name in COMMANDS:
        assert f"    {name}" in listed.stdout
    missing = tmp_path / "missing.toml"
    alone = _run(sys.executable, "-m", "hpo.status", "--study", str(missing), env=env)
    assert alone.returncode == 2, alone.stderr
    assert f"error: study file {missing} does not exist" in alone.stderr
    api = _run(sys.executable, "-c", "import hpo; print(hpo.search.__doc__)", env=env)
    assert api.stdout == "None\n", api.stderr


def test_search_with_stderr_closed_runs_and_reports_on_stdout(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # `hpo search 2>&-` (some daemons and cron wrappers): Python's sys.stderr is None.
    study = write_study(tmp_path, fake_imdb, n_trials=1, enqueue=False)
    result = _run("sh", "-c", f'exec "{HPO}" search --study "{study}" 2>&-')
    assert result.returncode == 0, result.stdout
    assert "Study 'tiny': 1 finished, 0 failed" in result.stdout


def test_commands_show_the_libraries_warnings_where_the_users_filters_make_them_errors(
    study_copy: Path, tmp_path: Path
) -> None:
    # PYTHONWARNINGS=error (CI and development shells): a DeprecationWarning inside Keras's
    # saving ended `hpo ensemble` after its evaluation, with nothing exported.
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    out = tmp_path / "ensemble"
    study = str(study_copy)
    made = _run(str(HPO), "ensemble", "--study", study, "--top", "2", "--out", str(out), env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    assert (out / "ensemble.keras").is_file()
    # Shown, once each, as the user's filters would show any other.
    assert made.stderr.count("DeprecationWarning") <= 1, made.stderr[-3000:]
    scored = _run(str(HPO), "predict", "--ensemble", str(out), "a fine film", env=env)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert scored.stdout.count("\t") == 2


def test_warning_filters_that_raise_show_instead_and_the_others_stay_in_order() -> None:
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", message="quiet", category=UserWarning, module="m")
        warnings_not_errors()
        assert [(f[0], f[2]) for f in warnings.filters] == [
            ("ignore", UserWarning),
            ("default", Warning),
        ]
        with pytest.warns(UserWarning, match="shown"):
            warnings.warn("shown", stacklevel=1)


def test_processes_a_command_starts_know_they_run_for_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A search's other workers (spawned) worded their budget line for a Python caller
    # ("hpo.Tuner's budget=") under hpo search.
    import hpo.cli
    from hpo.search.progress import larger_budget

    monkeypatch.delenv(hpo.cli.IN_COMMAND_VAR, raising=False)
    seen = {}

    def command(module: object, args: object) -> int:
        seen["child"] = subprocess.run(
            [
                sys.executable,
                "-c",
                "from hpo.search.progress import larger_budget as b; print(b())",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return 0

    monkeypatch.setattr(hpo.cli, "_run_command", command)
    assert hpo.cli._run(object(), object()) == 0  # type: ignore[arg-type]
    assert seen["child"].strip() == "a larger --budget"
    # And the Python session that ran it in-process is a Python session again.
    assert larger_budget().startswith("a larger budget (hpo.Tuner's budget=")
    assert hpo.cli.IN_COMMAND_VAR not in os.environ


def test_a_mistyped_or_shortened_flag_is_one_line_naming_the_nearest() -> None:
    # It printed the usage of `hpo` (not of the command), then "unrecognized arguments", with
    # no fix; and a shortened flag (--n-trial) was taken for --n-trials and started a search.
    from hpo.cli import main

    for argv, expected in (
        (["search", "--n-trails", "5"], "unknown argument --n-trails (did you mean --n-trials?)"),
        (["search", "--n-trial", "5"], "unknown argument --n-trial (did you mean --n-trials?)"),
        (["status", "--jsn"], "unknown argument --jsn (did you mean --json?)"),
        (["search", "--n-trials", "0"], "argument --n-trials: must be a whole number >= 1"),
    ):
        command = f"hpo {argv[0]}"
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 2
        result = _run(str(HPO), *argv)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{command}: error: {expected}"), line
        assert line.endswith(f". {command} --help lists what it takes."), line
