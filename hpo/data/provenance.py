"""Which data a study's trials saw: the source the search resolved and a fingerprint of it.

The search resolves the data once (flag > environment > study file > download) and records both
on the study. Later runs and the ensemble read the recorded source where nothing names the data
now, so no environment variable is needed after the search, and refuse data whose fingerprint
differs: weights fitted on
misaligned validation predictions, or members fed other token ids, would be silently wrong.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hpo._paths import expand_user
from hpo.errors import ConfigError, OtherData

if TYPE_CHECKING:
    import optuna

    from hpo.config import StudyConfig
    from hpo.tasks import Task

__all__ = [
    "FINGERPRINT_ATTR",
    "GIVEN_ATTR",
    "RECORDED",
    "SOURCE_ATTR",
    "RecordedSource",
    "check_fingerprint",
    "check_study_outside",
    "given_origin",
    "locate_source",
    "origin_fix",
    "record",
    "recorded_source",
    "source_given",
]

SOURCE_ATTR: Final = "data_source"
FINGERPRINT_ATTR: Final = "data_fingerprint"
# Whether the recorded source was given by --data (True), or named by the environment or the
# study file (False); studies recorded before have none.
GIVEN_ATTR: Final = "data_source_given"
_log = logging.getLogger("hpo.data")


# How a message names a data path that the study's record gave, not the user.
RECORDED: Final = f"the data source the study recorded (its {SOURCE_ATTR})"


class RecordedSource(str):
    """A data path read from the study's record (`recorded_source`): the data's locators take
    it where they take --data (`data or recorded_source(study)`), and name it as the record's
    (`given_origin`), so that a message about it does not blame a --data never given."""

    __slots__ = ()


def given_origin(value: object, given: str = "--data") -> str:
    """How a message names where a path a locator got came from: `given` (--data, the study
    file's data.path), or the study's record where `locate_source` put it there."""
    return RECORDED if isinstance(value, RecordedSource) else given


def origin_fix(origin: str, fix: str) -> str:
    """`fix`, the way to correct a path the user gave; for one from the study's record
    (`origin` is RECORDED), which no flag, variable or study file gave, the way to give the
    data instead."""
    if origin != RECORDED:
        return fix
    return (
        "The record is out of date or was changed: pass the data the search used with --data "
        "PATH (a search that runs trials with it records it anew)."
    )


def recorded_source(study: optuna.Study) -> RecordedSource | None:
    """The data source the study's search used, if it recorded one and it still exists."""
    value = study.user_attrs.get(SOURCE_ATTR)
    if value is not None and not isinstance(value, str):
        _log.warning(
            "study attribute %r should be the data's path, got %.80r; it is ignored and the "
            "data are located as for a new study (--data, the environment, the study file). "
            "The next search records the path again.",
            SOURCE_ATTR,
            value,
        )
        return None
    return RecordedSource(value) if value and Path(value).exists() else None


def locate_source(task: Task, config: StudyConfig, data: str | None, study: optuna.Study) -> Path:
    """Where a study that a search has read data for reads them now.

    `--data` first. Then, where the search was given its data by `--data` (or recorded them
    before hpo noted how), the source it recorded, as if given by `--data` again: `hpo search
    --data big.csv` on a study file naming a sample is followed by `hpo ensemble` without it.
    Where the search read what the task's environment variable or the study file's `data.path`
    named, what they name now (an edited `data.path`, a project copied with its data), else the
    recorded source, before a download. `check_fingerprint` then refuses other data.

    The recorded source spares the environment variable after the search, and a second download.
    """
    recorded = recorded_source(study)
    if data is not None or recorded is None:
        return task.locate(config, data)
    given = study.user_attrs.get(GIVEN_ATTR)
    if given is not False:
        path = config.data.path
        named = expand_user(path, "data.path").resolve() if path else None
        if named is not None and named != Path(recorded).resolve():
            how = (
                "which its search was given (--data)"
                if given is True
                else "which its search read (an earlier hpo did not record whether --data gave it)"
            )
            _log.warning(
                "study %r reads its data from %s, %s, not from %s, which the study file's "
                "data.path names; to read that, pass --data %s.",
                study.study_name,
                recorded,
                how,
                named,
                named,
            )
        return task.locate(config, recorded)
    if config.data.path:
        return task.locate(config, None)
    return task.locate(
        dataclasses.replace(config, data=dataclasses.replace(config.data, path=recorded)), None
    )


def check_study_outside(study_dir: Path, name: str, source: Path) -> None:
    """Raises ConfigError if the study's folder is its data folder or inside it.

    The study's folder is the study file's folder joined with the study's name, so a study file
    beside a data folder of the same name, or inside the data folder, would put the study's
    database, prepared data, checkpoints and logs among the user's files: read back as
    examples (a folder of class folders gains `cache/`, `logs/` and `trials/` as classes for
    Keras's own loaders), and changing the folder's time stamp, so its cache is rebuilt each run.

    Args:
        study_dir: The study's folder.
        name: The study's name, for the message.
        source: The data the search reads: a folder, archive or file.
    """
    if not source.is_dir():
        return
    study, data = study_dir.resolve(), source.resolve()
    if study != data and data not in study.parents:
        return
    if study == data:
        where = "is"
        fix = (
            f"Give the study another name (name = {name!r} names its folder, beside the study file)"
        )
    else:
        where, fix = "is inside", "Move the study file out of the data folder"
    raise ConfigError(
        f"the study's folder {study_dir} {where} its data folder {source}: the study would "
        f"write its database, prepared data, checkpoints and logs among the data, and read "
        f"them back as examples. {fix}, or put the data elsewhere."
    )


def check_fingerprint(study: optuna.Study, fingerprint: str, source: Path, what: str) -> None:
    """Raises OtherData (a ConfigError) if the study's trials saw other data than `fingerprint`.

    Args:
        study: The study.
        fingerprint: The fingerprint of the data about to be used.
        source: Where that data was read from, for the message.
        what: What is refused, for the message ("the ensemble", "resuming the search").
    """
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    if recorded is None or recorded == fingerprint:
        return
    raise OtherData(
        f"{what} would use other data than the study's trials saw: data fingerprint "
        f"{fingerprint} (from {source}) differs from the study's {recorded} (from "
        f"{study.user_attrs.get(SOURCE_ATTR)}): the data's files, or the study file's [data] "
        f"settings, changed since, or (after an upgrade of hpo) how hpo reads them. Restore "
        f"them and point --data at the data the search used; after an upgrade, use the hpo "
        f"version that searched it; or start a new study (a new 'name').",
        fingerprint,
        recorded,
    )


def source_given(
    study: optuna.Study, config: StudyConfig, data: str | None, source: Path
) -> bool | None:
    """Whether the data a search reads from `source` count as given by `--data`, for `record`:
    given now, or given to the search that recorded them and read again as such (a resumed
    search without the flag keeps them). None where that is unknown: an older study's record,
    read again, which the study file's `data.path` does not name."""
    if data is not None:
        return True
    recorded = recorded_source(study)
    if recorded is None or Path(recorded).resolve() != source.resolve():
        return False
    path = config.data.path
    if path and expand_user(path, "data.path").resolve() == source.resolve():
        return False
    given = study.user_attrs.get(GIVEN_ATTR)
    return given if isinstance(given, bool) else None


def record(study: optuna.Study, fingerprint: str, source: Path, *, given: bool | None) -> None:
    """Records the data the study's trials see, and whether `--data` named them (`given`; not
    where None, unknown)."""
    study.set_user_attr(SOURCE_ATTR, str(source))
    if given is not None:
        study.set_user_attr(GIVEN_ATTR, given)
    study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
