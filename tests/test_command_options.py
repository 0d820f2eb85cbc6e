"""The study a command on an ensemble opens: the flags', else the one its report names."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest

from hpo.command_options import DATA_HELP, open_ensemble_study
from hpo.config import StudyConfig, config_to_dict, load_study_config
from hpo.data.provenance import SOURCE_ATTR
from hpo.errors import ConfigError, StoreError
from hpo.study import create_study

if TYPE_CHECKING:
    from collections.abc import Callable


def _flags(study: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(study=study, storage=None, study_name=None)


def _made(config: StudyConfig) -> str:
    """The study as a search leaves it (with its recorded settings); its storage URL."""
    config.study_dir.mkdir(parents=True, exist_ok=True)
    study = create_study(config, config.storage_url)
    study.set_user_attr("hpo_config", config_to_dict(config))
    return config.storage_url


def _ensemble(tmp_path: Path, name: str, storage: str) -> Path:
    folder = tmp_path / f"{name}-top5"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"study": name, "storage": storage}))
    return folder


def test_an_ensemble_alone_opens_the_study_its_report_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not the default study (studies/imdb.toml): `hpo export --ensemble DIR` and `hpo distill
    # --ensemble DIR` read that one, and said "no study database at studies/imdb/study.db".
    monkeypatch.chdir(tmp_path)
    flowers = StudyConfig(name="flowers", study_dir=tmp_path / "elsewhere" / "flowers")
    ensemble = _ensemble(tmp_path, "flowers", _made(flowers))
    config, study = open_ensemble_study(_flags(), ensemble)
    assert (study.study_name, config.name) == ("flowers", "flowers")
    # The flags still choose: the study file given is the study opened.
    (tmp_path / "other.toml").write_text('name = "other"\n')
    _made(load_study_config(tmp_path / "other.toml"))
    config, study = open_ensemble_study(_flags(str(tmp_path / "other.toml")), ensemble)
    assert (study.study_name, config.name) == ("other", "other")


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("postgresql://hpo:***@db.example/hpo", "whose password its report does not keep"),
        ("sqlite:////gone/flowers.db", "which cannot be opened"),
    ],
)
def test_a_study_the_report_names_but_that_cannot_be_opened_asks_for_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as raised:
        open_ensemble_study(_flags(), _ensemble(tmp_path, "flowers", storage))
    assert "pass its study file: --study FILE" in str(raised.value)


@pytest.mark.parametrize(
    "storage",
    [
        "mysql+pymysql://u@127.0.0.1:1/db",
        "postgresql+psycopg2://hpo@db.example/hpo",  # a driver hpo does not install
        "sqlite+pysqlcipher:///flowers.db",
        # A SQLAlchemy plugin, found among the entry points of the working directory's
        # distributions (a folder evil-1.0.dist-info).
        "sqlite:///flowers.db?plugin=evil",
    ],
)
def test_a_report_never_chooses_a_database_driver_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str
) -> None:
    # SQLAlchemy imports the driver a URL names: `hpo export --ensemble DIR` ran ./pymysql.py
    # (`python -m hpo` puts the working directory on the import path), then a traceback.
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ran = tmp_path / "ran"
    for driver in ("pymysql", "psycopg2", "sqlcipher3", "pysqlcipher3", "evilmod"):
        monkeypatch.delitem(sys.modules, driver, raising=False)
        (tmp_path / f"{driver}.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    plugin = tmp_path / "evil-1.0.dist-info"
    plugin.mkdir()
    (plugin / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (plugin / "entry_points.txt").write_text("[sqlalchemy.plugins]\nevil = evilmod:Plugin\n")
    folder = _ensemble(tmp_path, "flowers", storage)
    with pytest.raises(ConfigError, match="which hpo does not open for a file") as raised:
        open_ensemble_study(_flags(), folder)
    assert str(raised.value).startswith(f"{folder / 'report.json'} says the ensemble")
    assert "pass its study file: --study FILE" in str(raised.value)
    assert not ran.exists()


@pytest.mark.parametrize(
    ("report", "why"),
    [
        ('{"study": ', "Expecting value"),
        ('{"members": []}', "it names no study and storage"),
        (None, "No such"),
    ],
)
def test_a_report_that_names_no_study_is_named_not_the_default_study_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report: str | None, why: str
) -> None:
    # hpo export --ensemble DIR, its report.json cut short: "study file studies/imdb.toml does
    # not exist", which named neither the report nor the fix.
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "t-top3"
    folder.mkdir()
    if report is not None:
        (folder / "report.json").write_text(report)
    with pytest.raises(ConfigError, match=why) as raised:
        open_ensemble_study(_flags(), folder)
    message = str(raised.value)
    assert message.startswith(f"{folder / 'report.json'} cannot tell the study")
    assert "--study FILE" in message and "studies/imdb.toml" not in message


def test_a_study_opened_by_its_database_url_from_elsewhere_keeps_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hpo report --storage sqlite:///runs/demo/study.db wrote ./studies/demo/reports in the
    # folder it ran in (docs/python.md tells Tuner users to run it so).
    from hpo.command_options import open_study

    config = StudyConfig(name="demo", study_dir=tmp_path / "runs" / "demo")
    url = _made(config)
    monkeypatch.chdir(tmp_path / "runs")
    opened, _ = open_study(None, url, "demo")
    assert opened.study_dir == config.study_dir.resolve()
    # A database of another layout (several studies in one file): the folder here, as before.
    other = StudyConfig(name="b", study_dir=tmp_path / "b", storage=f"sqlite:///{tmp_path}/all.db")
    opened, _ = open_study(None, _made(other), "b")
    assert opened.study_dir.resolve() == tmp_path / "runs" / "studies" / "b"


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda recorded: {}, "the key 'name' is missing"),
        (lambda recorded: {**recorded, "study_dir": 5}, "'study_dir' must be a path"),
        (lambda recorded: {**recorded, "zzz": 1}, "unknown key 'zzz'"),
    ],
)
def test_a_damaged_recorded_configuration_is_named_as_the_stores(
    tmp_path: Path, damage: Callable[[dict[str, object]], dict[str, object]], what: str
) -> None:
    # hpo status --storage URL --study-name NAME gave a TypeError traceback ({} has no name), or
    # "unknown key 'zzz'" as if the user's own study file held it.
    from hpo.command_options import open_study

    config = StudyConfig(name="demo", study_dir=tmp_path / "demo")
    url = _made(config)
    study = optuna.load_study(study_name="demo", storage=url)
    study.set_user_attr("hpo_config", damage(config_to_dict(config)))
    with pytest.raises(StoreError, match=what) as raised:
        open_study(None, url, "demo")
    message = str(raised.value)
    assert message.startswith(f"the configuration recorded for study 'demo' in {url} ")
    assert "is damaged" in message and "--study FILE" in message


def test_the_data_flags_help_names_every_tasks_variable() -> None:
    from hpo.data import images, imdb, text_sources

    for variable in (imdb.ENV_VAR, text_sources.ENV_VAR, *images.ENV_VARS.values()):
        assert f"${variable}" in DATA_HELP


def _older_record(config: StudyConfig, searched_in: Path, **data: str) -> str:
    """The study as an hpo before the data paths were recorded absolute left it: `data`'s
    paths relative to the folder `searched_in` its search ran in; its storage URL."""
    url = _made(config)
    study = optuna.load_study(study_name=config.name, storage=url)
    recorded = config_to_dict(config)
    study.set_user_attr("hpo_config", {**recorded, "data": {**recorded["data"], **data}})
    study.set_user_attr(SOURCE_ATTR, str(searched_in / "data" / "train.csv"))
    return url


def test_an_older_studys_relative_test_path_is_read_from_the_folder_its_search_ran_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was read from the folder the command runs in: `hpo ensemble --storage URL` from any
    # other folder found no test table, or another table of the same relative path.
    from hpo.command_options import open_study

    run = tmp_path / "run"
    config = StudyConfig(name="t", task="text", study_dir=run / "studies" / "t")
    relative = {"path": "studies/../data/train.csv", "test_path": "studies/../data/test.csv"}
    url = _older_record(config, run, **relative)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "test.csv").write_text("text,label\nanother table,0\n")
    monkeypatch.chdir(elsewhere)
    opened, _ = open_study(None, url, "t")
    assert opened.data.test_path == str(run.resolve() / "data" / "test.csv")
    # Where the record cannot tell that folder (the search read --data), the path stays as it
    # was recorded, which the text task refuses (tests/tasks/test_text.py).
    other = StudyConfig(name="u", task="text", study_dir=run / "studies" / "u")
    url = _older_record(other, tmp_path / "moved", **relative)
    opened, _ = open_study(None, url, "u")
    assert opened.data.test_path == "studies/../data/test.csv"


def test_a_renamed_study_folder_opened_by_its_database_is_still_the_studys_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After `mv studies/t studies/t-renamed`, `hpo export --storage
    # sqlite:///studies/t-renamed/study.db` wrote its prepared data into ./studies/t/cache.
    import shutil

    from hpo.command_options import open_study

    config = StudyConfig(name="t", study_dir=tmp_path / "studies" / "t")
    _made(config)
    shutil.move(tmp_path / "studies" / "t", tmp_path / "studies" / "t-renamed")
    monkeypatch.chdir(tmp_path)
    opened, _ = open_study(None, "sqlite:///studies/t-renamed/study.db", "t")
    assert opened.study_dir == tmp_path.resolve() / "studies" / "t-renamed"
    assert opened.cache_dir == tmp_path.resolve() / "studies" / "t-renamed" / "cache"


def test_joining_a_study_of_ones_own_families_names_the_way_in_for_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo import cli
    from hpo.command_options import joining_config
    from hpo.models.portable import PortableHypermodel

    def build_model(hp: object) -> None:
        raise AssertionError("never built")

    # hpo.Tuner's project has no study file: the way in is the Tuner's search, from Python and
    # from a command alike.
    portable = PortableHypermodel(build_model, {}, None, {})
    tuner = StudyConfig(
        name="project",
        task="arrays",
        families={portable.name: portable.spec},
        study_dir=tmp_path / "runs" / "project",
        hypermodel=portable,
    )
    url = _made(tuner)
    for command in (False, True):
        monkeypatch.setattr(cli, "_IN_COMMAND", command)
        with pytest.raises(ConfigError) as refused:
            joining_config(url, "project", tmp_path / "work")
        message = str(refused.value)
        assert "hpo.Tuner project" in message
        assert f"directory={str(tmp_path / 'runs')!r}, project_name='project'" in message
        assert "--study FILE" not in message


def _shared_study(recorded: dict[str, object]) -> optuna.Study:
    """A study of a shared store (PostgreSQL) as a search recorded it, kept in memory."""
    study = optuna.create_study(study_name="shared")
    study.set_user_attr("hpo_config", recorded)
    return study


def test_a_worker_joining_a_shared_study_with_another_artifact_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.command_options import own_artifacts

    url = "postgresql+psycopg://hpo:pw@db.example/hpo"
    shared = tmp_path / "shared"
    shared.mkdir()
    first = StudyConfig(name="shared", storage=url, artifacts=str(shared))
    study = _shared_study(config_to_dict(first))
    monkeypatch.chdir(tmp_path)
    joiner = StudyConfig(name="shared", storage=url)  # its study file lacks `artifacts`
    with pytest.raises(ConfigError) as refused:
        own_artifacts(joiner, study, writes=True)
    message = str(refused.value)
    assert str(shared) in message and joiner.artifact_location in message
    assert f'artifacts = "{shared}"' in message
    # A reader names its own folder (a mount of the share), as before.
    assert own_artifacts(joiner, study, writes=False) == joiner
    # The same folder spelled otherwise joins.
    (tmp_path / "link").symlink_to(shared)
    for spelling in (f"{shared}/.", str(tmp_path / "link"), "shared"):
        same = StudyConfig(name="shared", storage=url, artifacts=spelling)
        assert own_artifacts(same, study, writes=True) == same
    # A bucket is compared as a bucket.
    bucket = _shared_study(config_to_dict(dataclasses.replace(first, artifacts="s3://b/hpo")))
    same = dataclasses.replace(first, artifacts="s3://b/hpo/")
    assert own_artifacts(same, bucket, writes=True) == same
    with pytest.raises(ConfigError, match="s3://b/hpo"):
        own_artifacts(first, bucket, writes=True)
    # An older record that names no artifact location binds none.
    older = {k: v for k, v in config_to_dict(first).items() if k not in ("artifacts", "study_dir")}
    assert own_artifacts(joiner, _shared_study(older), writes=True) == joiner


def test_a_sqlite_study_whose_artifact_folder_changed_is_refused_for_writes(
    tmp_path: Path,
) -> None:
    # Editing `artifacts` between runs, or a second study file of the same name and database
    # with its own default folder, was accepted: new checkpoints went to the new folder and
    # hpo ensemble skipped the old trials, whose checkpoints stayed in the recorded one.
    from hpo.command_options import own_artifacts

    url = f"sqlite:///{tmp_path}/shared.db"
    first = StudyConfig(name="s", study_dir=tmp_path / "A" / "s", storage=url)
    study = optuna.load_study(study_name="s", storage=_made(first))
    here = first.artifact_location
    trial = study.ask()
    checkpoint = "0b5e3f0e-6a2b-4c7e-9a8d-1f2e3d4c5b6a"
    trial.set_user_attr("checkpoint_artifact_id", checkpoint)
    study.tell(trial, 0.5)
    Path(here).mkdir(parents=True)
    (Path(here) / checkpoint).write_text("weights")
    for other in (
        dataclasses.replace(first, artifacts=str(tmp_path / "arts2")),  # `artifacts` edited
        dataclasses.replace(first, study_dir=tmp_path / "B" / "s"),  # another file, same db
    ):
        with pytest.raises(ConfigError) as refused:
            own_artifacts(other, study, writes=True)
        message = str(refused.value)
        assert here in message and other.artifact_location in message
        assert f'artifacts = "{here}"' in message
    # A reader of the edited file reads the recorded folder, which alone holds them.
    edited = dataclasses.replace(first, artifacts=str(tmp_path / "arts2"))
    assert own_artifacts(edited, study, writes=False).artifacts == here
    # The folder moved to the new place and the study file changed with it: the study's.
    moved = dataclasses.replace(first, artifacts=str(tmp_path / "arts2"))
    Path(here).rename(moved.artifact_location)
    assert own_artifacts(moved, study, writes=True) == moved
    assert own_artifacts(first, study, writes=True) == first
