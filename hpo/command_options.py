"""Options and study opening shared by the commands that work on a study.

Used by search, ensemble, status, report, dashboard, gc and proxy; the `hpo` entry point itself
is `hpo.cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.config import config_from_dict, load_study_config
from hpo.errors import ConfigError, StoreError
from hpo.store import load_existing_study, open_storage, sqlite_file

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from hpo.config import StudyConfig

DEFAULT_STUDY = "studies/imdb.toml"
DATA_HELP = (
    "data set folder or archive (overrides the task's variable: $HPO_IMDB_PATH, "
    "$HPO_CIFAR10_PATH or $HPO_IMAGES_PATH, and the study file's data.path)"
)


def add_study_arguments(parser: argparse.ArgumentParser, *, ensemble: bool = False) -> None:
    """Adds --study, or --storage with --study-name, to a parser; `ensemble`: its --ensemble
    names the study by default (`open_ensemble_study`)."""
    default = (
        f"{DEFAULT_STUDY}; with --ensemble, the study its report.json names"
        if ensemble
        else DEFAULT_STUDY
    )
    parser.add_argument("--study", help=f"study file (default {default})")
    parser.add_argument("--storage", help="storage URL, with --study-name, instead of --study")
    parser.add_argument("--study-name", help="study name, with --storage")


def open_study(
    study_file: str | Path | None, storage_url: str | None, study_name: str | None
) -> tuple[StudyConfig, optuna.Study]:
    """Opens an existing study, by its study file or by storage URL and name; never creates one.

    Raises:
        ConfigError: Both ways were given, or only one of --storage and --study-name.
        StoreError: No such database or study, or the study was not made by `hpo.search`.
    """
    if storage_url or study_name:
        if study_file:
            raise ConfigError(
                "give either --study FILE or --storage URL --study-name NAME, not both."
            )
        if not (storage_url and study_name):
            raise ConfigError("--storage and --study-name go together; give both, or --study FILE.")
        storage = open_storage(storage_url, create=False, heartbeat=False)
        study = load_existing_study(storage, study_name)
        recorded = recorded_config(study)
        config = reader_config(recorded, Path("studies")).with_overrides(storage=storage_url)
        return _artifacts_beside(config, recorded, storage_url), study
    config = load_study_config(study_file or DEFAULT_STUDY)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    return config, load_existing_study(storage, config.name)


def open_ensemble_study(
    args: argparse.Namespace, ensemble_dir: Path
) -> tuple[StudyConfig, optuna.Study]:
    """The study an ensemble was built from: as `--study` or `--storage`/`--study-name` give
    it; else the default study file if it is that study; else as the ensemble's report.json
    records it (its storage and name), so that `--ensemble DIR` alone names the study.

    Raises:
        ConfigError: The recorded study cannot be opened (its database moved, or its storage
            URL holds a password, which the report masks): pass the study's file.
    """
    if args.study or args.storage or args.study_name:
        return open_study(args.study, args.storage, args.study_name)
    try:
        report = json.loads((Path(ensemble_dir) / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = None  # the command names what is wrong with the folder
    if not isinstance(report, dict):
        return open_study(None, None, None)
    name, storage = report.get("study"), report.get("storage")
    if not (isinstance(name, str) and isinstance(storage, str)):
        return open_study(None, None, None)
    default = Path(DEFAULT_STUDY)
    if default.is_file() and load_study_config(default).name == name:
        return open_study(None, None, None)
    fix = f"pass its study file: --study FILE (or --storage URL --study-name {name})"
    if "***" in storage:
        raise ConfigError(
            f"the ensemble was built from study {name!r} in {storage}, whose password its "
            f"report does not keep; {fix}."
        )
    try:
        return open_study(None, storage, name)
    except (ConfigError, StoreError) as exc:
        raise ConfigError(
            f"the ensemble was built from study {name!r} in {storage}, which cannot be opened "
            f"({exc}); {fix}."
        ) from exc


def _artifacts_beside(config: StudyConfig, recorded: StudyConfig, url: str) -> StudyConfig:
    """`config` with the artifact folder where it now stands, for a study's folder moved or
    copied since its search (an archive, another machine): the recorded folder is gone, and one
    stands where it was beside the study's database. Anything else is kept as recorded."""
    location = recorded.artifact_location
    old, new = sqlite_file(recorded.storage_url), sqlite_file(url)
    if location.startswith("s3://") or Path(location).exists() or old is None or new is None:
        return config
    try:
        within = Path(location).relative_to(old.resolve().parent)
    except ValueError:  # the artifacts were not beside the database
        return config
    moved = new.resolve().parent / within
    return dataclasses.replace(config, artifacts=str(moved)) if moved.is_dir() else config


def reader_config(config: StudyConfig, work_dir: Path) -> StudyConfig:
    """A recorded configuration as this machine reads it: its scratch (data cache, reports) in
    `work_dir`, not in the folder another machine recorded; the artifact store stays the
    study's; its families are never imported (see `recorded_config`)."""
    return dataclasses.replace(
        config, artifacts=config.artifact_location, study_dir=work_dir / config.name
    )


def recorded_config(study: optuna.Study) -> StudyConfig:
    """The configuration the study's search recorded, as data.

    Module paths it names (`families`) are never imported and folders it names never put on
    the import path: whoever can write to a shared store must not choose code that every reader
    runs. Commands that need a study's own families take the local study file that names them.

    Raises:
        StoreError: The study was not made by `hpo search`.
    """
    stored = study.user_attrs.get("hpo_config")
    if not isinstance(stored, dict):
        raise StoreError(f"study {study.study_name!r} was not made by hpo search (no hpo_config).")
    return config_from_dict(stored)


def joining_config(storage_url: str, study_name: str, work_dir: Path) -> StudyConfig:
    """The configuration for a worker that joins a study from another machine.

    Everything that defines the trials comes from the study's record; the worker keeps its
    scratch (data cache, logs) in `work_dir`, and stores checkpoints in the study's artifact
    folder, which must be the same shared folder on every machine.
    """
    storage = open_storage(storage_url, create=False, heartbeat=False)
    config = recorded_config(load_existing_study(storage, study_name))
    if config.families:
        raise ConfigError(
            f"study {study_name!r} searches families of your own ({', '.join(config.families)}), "
            f"and hpo never imports code that a study store names. Join it with the study file "
            f"that names them: hpo search --study FILE --storage URL."
        )
    # The study file's data path was the first machine's (relative to where it ran, maybe):
    # here the data is --data, $HPO_*_PATH, or else the source the study recorded.
    unplaced = dataclasses.replace(config.data, path=None)
    return dataclasses.replace(reader_config(config, work_dir), storage=storage_url, data=unplaced)


def add_bind_arguments(parser: argparse.ArgumentParser, default_port: int) -> None:
    """Adds --host (loopback by default), --port and --allow-remote to a server command."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=default_port, help=f"port (default {default_port})"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )


def port_number(text: str) -> int:
    """A TCP port to serve on, 1 to 65535 (`argparse` type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 1 to 65535, got {text!r}. Use --port 8080, say."
        )
    return port


def bind_error(host: str, port: int, exc: BaseException) -> ConfigError:
    """The error for a server that cannot listen at `host:port`, naming the fix."""
    cause = (getattr(exc, "strerror", None) or str(exc)).rstrip(".")
    return ConfigError(
        f"cannot serve at {host}:{port}: {cause}. Another program (or another hpo server) may "
        f"be using that port: give another --port, or stop that one."
    )


def check_bind(host: str, allow_remote: bool, what: str) -> None:
    """Refuses a non-loopback address unless --allow-remote: `what` has no authentication.

    Raises:
        ConfigError: Names the address, what would be exposed, and the flag.
    """
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            f"--host {host} would expose {what}, which has no authentication, beyond this "
            f"machine. Add --allow-remote if that is what you want (on a private network)."
        )


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def positive_int(hint: str = "") -> Callable[[str], int]:
    """An argparse type for whole numbers >= 1; `hint` is added to its error message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}.{hint}")
        return value

    return parse
