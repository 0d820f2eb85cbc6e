"""Options and study opening shared by the commands that work on a study.

Used by search, ensemble, status, report, dashboard, gc and proxy; the `hpo` entry point itself
is `hpo.cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hpo._json import read_json
from hpo.config import DEFAULT_STUDY, config_from_dict, load_study_config, sqlite_url
from hpo.errors import ConfigError, StoreError
from hpo.store import (
    documented_storage,
    load_existing_study,
    open_storage,
    redact_url,
    sqlite_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

    from hpo.config import StudyConfig

_log = logging.getLogger(__name__)

DATA_HELP = (
    "data set folder or archive (overrides the task's variable: $HPO_IMDB_PATH, "
    "$HPO_TEXT_PATH, $HPO_CIFAR10_PATH or $HPO_IMAGES_PATH, and the study file's data.path)"
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
    study_file: str | Path | None,
    storage_url: str | None,
    study_name: str | None,
    *,
    writes: bool = False,
) -> tuple[StudyConfig, optuna.Study]:
    """Opens an existing study, by its study file or by storage URL and name; never creates one.

    Args:
        study_file: The study's file, or None for `storage_url` and `study_name`.
        storage_url: The study's storage URL, with `study_name`.
        study_name: The study's name in `storage_url`.
        writes: The caller changes the study's artifacts (hpo gc), which is refused for a copy
            of a study's database whose artifacts are still the original's. Default False.

    Raises:
        ConfigError: Both ways were given, or only one of --storage and --study-name; or
            `writes` and the artifacts belong to another copy of the study's database.
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
        recorded = recorded_config(study, storage_url)
        config = reader_config(recorded, Path("studies")).with_overrides(storage=storage_url)
        database = sqlite_file(storage_url)
        if database is not None and _in_own_folder(database, recorded):
            # hpo's own layout (<study folder>/study.db, a Tuner's <directory>/<project>/):
            # its folder is the study's (reports, caches), not ./studies/<name> here.
            config = dataclasses.replace(config, study_dir=database.resolve().parent)
        return _artifacts_beside(config, recorded, storage_url, study, writes=writes), study
    config = load_study_config(study_file or DEFAULT_STUDY)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    study = load_existing_study(storage, config.name)
    return own_artifacts(config, study, writes=writes), study


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
    path = Path(ensemble_dir) / "report.json"
    try:
        report = read_json(path)
    except (OSError, ValueError) as exc:
        report = exc  # the command names what is wrong with the folder, given the study
    default = Path(DEFAULT_STUDY)
    name = report.get("study") if isinstance(report, dict) else None
    storage = report.get("storage") if isinstance(report, dict) else None
    if not (isinstance(name, str) and isinstance(storage, str)):
        if not default.is_file() and Path(ensemble_dir).is_dir():
            why = report if isinstance(report, Exception) else "it names no study and storage"
            raise ConfigError(
                f"{path} cannot tell the study the ensemble was built from ({why}): pass it, "
                f"--study FILE (or --storage URL --study-name NAME), or rebuild the ensemble "
                f"with hpo ensemble."
            )
        return open_study(None, None, None)
    if default.is_file() and load_study_config(default).name == name:
        return open_study(None, None, None)
    fix = f"pass its study file: --study FILE (or --storage URL --study-name {name})"
    if "***" in storage:
        raise ConfigError(
            f"the ensemble was built from study {name!r} in {storage}, whose password its "
            f"report does not keep; {fix}."
        )
    if not documented_storage(storage):
        raise ConfigError(
            f"{path} says the ensemble was built from study {name!r} in {redact_url(storage)}, "
            f"which hpo does not open for a file: a storage URL read from a file may name SQLite "
            f"(sqlite:///...), PostgreSQL through psycopg (postgresql+psycopg://..., with "
            f"psycopg installed) or hpo's storage proxy (grpc://...), since any other names a "
            f"database driver to import; {fix}."
        )
    try:
        return open_study(None, storage, name)
    except Exception as exc:
        # Any failure: the URL and the study are data of the report's, which may be anything;
        # the user's way on is the same.
        raise ConfigError(
            f"the ensemble was built from study {name!r} in {redact_url(storage)}, which cannot "
            f"be opened ({type(exc).__name__}: {exc}); {fix}."
        ) from exc


def _in_own_folder(database: Path, recorded: StudyConfig) -> bool:
    """Whether the study's database `database` is in hpo's layout, `<study folder>/study.db`:
    in a folder named after the study, or where its search kept it in the study's folder (a
    study folder renamed since, `mv studies/t studies/t-old`, is still the study's)."""
    if database.name != "study.db":
        return False
    if database.resolve().parent.name == recorded.name:
        return True
    searched = sqlite_file(recorded.storage_url)
    own = (recorded.study_dir / "study.db").resolve()
    return searched is not None and searched.resolve() == own


def _artifacts_beside(
    config: StudyConfig, recorded: StudyConfig, url: str, study: optuna.Study, *, writes: bool
) -> StudyConfig:
    """`config` with the study's artifact folder as its database at `url` finds it.

    A study's folder copied or moved since its search (a backup, an archive, another machine)
    records the folder its search used, beside the database then. The folder at the same place
    beside the database now is the study's where the recorded one is gone, or where it holds
    the study's artifacts (a copy made beside its original), or where neither holds any. Else
    the recorded folder stays; a command that `writes` to it is refused where the database
    that recorded it is another one that still stands, which names the same files."""
    location = recorded.artifact_location
    old, new = sqlite_file(recorded.storage_url), sqlite_file(url)
    if location.startswith("s3://") or old is None or new is None or _same_file(old, new):
        return config
    try:
        within = Path(location).relative_to(old.resolve().parent)
    except ValueError:  # the artifacts were not beside the database
        return config
    beside = new.resolve().parent / within
    chosen = _copys_artifacts(Path(location), beside, study, old, new, writes=writes)
    if chosen == beside and Path(location).exists():
        _log.warning(
            "study %r: its artifacts are in %s beside its database, not in %s where its "
            "search recorded them (the study's folder was copied or moved).",
            study.study_name,
            beside,
            location,
        )
    return config if chosen is None else dataclasses.replace(config, artifacts=str(chosen))


def own_artifacts(config: StudyConfig, study: optuna.Study, *, writes: bool) -> StudyConfig:
    """`config`, a study file's (or a search's), checked against the artifact folder that the
    study in its storage recorded, as `_artifacts_beside` checks a database opened by its URL.

    The file's folder is the study's where it is the recorded one, where the recorded one is
    gone, or where it holds the study's artifacts (a copied study folder), or where neither
    holds any. A database copied without its artifacts/ reads the recorded folder (with a
    notice), and a command that `writes` to it (hpo search, hpo gc) is refused: it would store
    new checkpoints beside the copy while its trials' stay in the original's folder, and gc
    would delete the only ones the copy has.

    A study in a shared store (PostgreSQL, the storage proxy) has one artifact location, the
    one its search recorded: every reader of the study looks there, so a worker that `writes`
    elsewhere (a study file without the shared `artifacts`) is refused.

    A study file of the study's own database that names another artifact location than the
    recorded one (its `artifacts` edited, or another study file of the same name and storage)
    reads the recorded one where only that holds the study's artifacts (with a notice), and a
    command that `writes` is refused while the recorded one holds any: its checkpoints would
    be split between two folders.

    Raises:
        ConfigError: `writes` to another location than the one that holds the study's
            artifacts in its own database; or `writes`, and the study's artifacts are in the
            folder of another database
            of it, which still stands; or `writes` to a shared store's study in another
            artifact location than the one it recorded.
    """
    try:
        recorded = recorded_config(study, config.storage_url)
    except (ConfigError, StoreError):  # a new study, or a record this hpo cannot read
        return config
    here, mine = recorded.artifact_location, config.artifact_location
    old, new = sqlite_file(recorded.storage_url), sqlite_file(config.storage_url)
    if writes and new is None and _records_location(study) and _place(here) != _place(mine):
        raise ConfigError(
            f"study {study.study_name!r} keeps its artifacts in {here}, where its search "
            f"recorded them and where every reader of the study looks; this run would store "
            f'its checkpoints in {mine}. Set artifacts = "{here}" in the study file (the '
            f"study's shared folder or bucket, as this machine names it), then run this again."
        )
    if old is not None and new is not None and _same_file(old, new):
        if writes and _place(here) != _place(mine) and _holds_own(here, study):
            raise ConfigError(
                f"study {study.study_name!r} in {new} keeps its trials' artifacts in {here}, "
                f"where its search recorded them; this run would store its checkpoints in "
                f"{mine}, splitting them between two places (the study file's `artifacts` "
                f"changed, or another study file has the same name and storage). Set "
                f'artifacts = "{here}" in the study file, or move the folder first '
                f"(mv {here} {mine}), then run this again."
            )
        if (
            not writes
            and not here.startswith("s3://")
            and not mine.startswith("s3://")
            and _place(here) != _place(mine)
            and _holds_any(Path(here), study)
            and not _holds_any(Path(mine), study)
        ):
            _log.warning(
                "study %r: %s holds none of its trials' artifacts; reading them in %s, where "
                'its search recorded them. Set artifacts = "%s" in the study file.',
                study.study_name,
                mine,
                here,
                here,
            )
            return dataclasses.replace(config, artifacts=here)
        return config
    if here == mine or "s3://" in (here[:5], mine[:5]) or old is None or new is None:
        return config
    chosen = _copys_artifacts(Path(here), Path(mine), study, old, new, writes=writes)
    if chosen is None and Path(here).exists():
        _log.warning(
            "study %r: %s holds none of its trials' artifacts; reading them in %s, where the "
            "search of its database %s recorded them (this database was copied or moved "
            "without them).",
            study.study_name,
            mine,
            here,
            old,
        )
        return dataclasses.replace(config, artifacts=here)
    return config


def _records_location(study: optuna.Study) -> bool:
    """Whether the study's record names its artifact location (older records may not)."""
    stored = study.user_attrs.get("hpo_config")
    return isinstance(stored, dict) and ("artifacts" in stored or "study_dir" in stored)


def _place(location: str) -> str:
    """An artifact location as compared: a bucket without its trailing slash, a folder with
    its links resolved (`artifact_location` made it absolute)."""
    if location.startswith("s3://"):
        return location.rstrip("/")
    return str(Path(location).resolve())


def _copys_artifacts(
    here: Path, beside: Path, study: optuna.Study, old: Path, new: Path, *, writes: bool
) -> Path | None:
    """The folder the copy `new` of the study's database `old` uses: `beside` (its own), or
    None for `here`, the folder `old` recorded (see `_artifacts_beside`).

    Raises:
        ConfigError: `writes` to `here` while `old` still stands.
    """
    if beside == here:
        return None
    if beside.is_dir() and not (
        here.exists() and _holds_any(here, study) and not _holds_any(beside, study)
    ):
        return beside
    if writes and here.exists() and old.exists():
        raise ConfigError(
            f"study {study.study_name!r} in {new} records its artifacts in {here}, which "
            f"belong to the study's database {old} as well: changing them from this copy "
            f"would break that study. Give this copy its own artifacts (copy the files of "
            f"{here} into {beside}), or run this on the original: --storage "
            f"{sqlite_url(old)} --study-name {study.study_name}."
        )
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them is gone
        return a.resolve() == b.resolve()


def _holds_own(location: str, study: optuna.Study) -> bool:
    """Whether the artifact `location` may hold some of the study's artifacts (a bucket is
    not looked into)."""
    return location.startswith("s3://") or _holds_any(Path(location), study)


def _holds_any(folder: Path, study: optuna.Study) -> bool:
    """Whether `folder` holds an artifact that one of the study's trials records."""
    from hpo.artifacts import artifact_id
    from hpo.contract import Attr

    return any(
        (folder / name).is_file()
        for trial in study.get_trials(deepcopy=False)
        for attr in (Attr.CHECKPOINT_ID, Attr.PREDICTIONS_ID)
        if (name := artifact_id(trial, attr)) is not None
    )


def reader_config(config: StudyConfig, work_dir: Path) -> StudyConfig:
    """A recorded configuration as this machine reads it: its scratch (data cache, reports) in
    `work_dir`, not in the folder another machine recorded; the artifact store stays the
    study's; its families are never imported (see `recorded_config`)."""
    return dataclasses.replace(
        config, artifacts=config.artifact_location, study_dir=work_dir / config.name
    )


def recorded_config(study: optuna.Study, storage_url: str) -> StudyConfig:
    """The configuration the study's search recorded, as data.

    Module paths it names (`families`) are never imported and folders it names never put on
    the import path: whoever can write to a shared store must not choose code that every reader
    runs. Commands that need a study's own families take the local study file that names them.

    Args:
        study: The study, opened from `storage_url`.
        storage_url: Its storage URL, which a damaged record's message names.

    Raises:
        StoreError: The study was not made by `hpo search`, or its record is damaged.
    """
    stored = study.user_attrs.get("hpo_config")
    if not isinstance(stored, dict):
        raise StoreError(f"study {study.study_name!r} was not made by hpo search (no hpo_config).")
    try:
        config = config_from_dict(stored)
    except ConfigError as exc:
        # Worded for a study file otherwise ("unknown key"), which this user never gave.
        raise StoreError(
            f"the configuration recorded for study {study.study_name!r} in "
            f"{redact_url(storage_url)} (its hpo_config) is damaged: {exc} Pass the study's "
            f"file instead, --study FILE (hpo.load_study(FILE) from Python), whose settings "
            f"hpo reads in place of the record."
        ) from exc
    return _placed_data(config, study)


def _placed_data(config: StudyConfig, study: optuna.Study) -> StudyConfig:
    """`config` with the data paths an older hpo recorded relative to the folder its search ran
    in made absolute, where that folder is known: the one (the study file's folder or above
    it) from which the recorded `data.path` names the data source the search recorded.

    Elsewhere a relative `test_path` stays as recorded, and the text task refuses it rather than
    read it from the folder this runs in, where it may name another table.
    """
    from hpo.data.provenance import SOURCE_ATTR

    data, source = config.data, study.user_attrs.get(SOURCE_ATTR)
    # Only a relative data.path tells that folder; the recorded study folder is absolute.
    if (
        not data.path
        or Path(data.path).is_absolute()
        or not isinstance(source, str)
        or not config.study_dir.is_absolute()
    ):
        return config
    for folder in (config.study_dir.parent, *config.study_dir.parent.parents):
        if (folder / data.path).resolve() == Path(source).resolve():
            placed = dataclasses.replace(
                data,
                path=str((folder / data.path).resolve()),
                test_path=data.test_path and str((folder / data.test_path).resolve()),
            )
            return dataclasses.replace(config, data=placed)
    return config


def joining_config(storage_url: str, study_name: str, work_dir: Path) -> StudyConfig:
    """The configuration for a worker that joins a study from another machine.

    Everything that defines the trials comes from the study's record; the worker keeps its
    scratch (data cache, logs) in `work_dir`, and stores checkpoints in the study's artifact
    folder, which must be the same shared folder on every machine.
    """
    storage = open_storage(storage_url, create=False, heartbeat=False)
    study = load_existing_study(storage, study_name)
    recorded = recorded_config(study, storage_url)
    config = _artifacts_beside(recorded, recorded, storage_url, study, writes=True)
    if config.families:
        raise ConfigError(_own_families_refusal(config, storage_url))
    # The study file's data path was the first machine's (relative to where it ran, maybe):
    # here the data is --data, $HPO_*_PATH, or else the source the study recorded.
    unplaced = dataclasses.replace(config.data, path=None)
    return dataclasses.replace(reader_config(config, work_dir), storage=storage_url, data=unplaced)


def _own_families_refusal(config: StudyConfig, storage_url: str) -> str:
    """Why a study of the user's own families cannot be joined from its store, and the way in."""
    from hpo.cli import in_command
    from hpo.tasks.arrays import ARRAYS

    refusal = (
        f"study {config.name!r} searches families of your own ({', '.join(config.families)}), "
        f"and hpo never imports code that a study store names."
    )
    if config.task == ARRAYS.name:
        # hpo.Tuner's project: its hypermodel and arrays reach the trials from the Tuner, and
        # no study file names them.
        return (
            f"{refusal} It is an hpo.Tuner project, made without a study file: continue it by "
            f"running the Tuner's search again, with the same build function and data: "
            f"hpo.Tuner(build_model, ..., directory={str(config.study_dir.parent)!r}, "
            f"project_name={config.name!r}).search(x, y, validation_data=...)."
        )
    join = (
        "hpo search --study FILE --storage URL"
        if in_command()
        else f"hpo.search('FILE.toml', storage={storage_url!r})"
    )
    return f"{refusal} Join it with the study file that names them: {join}."


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
