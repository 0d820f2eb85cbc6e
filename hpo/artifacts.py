"""Delete the checkpoints and prepared data a study no longer needs (--dry-run lists them).

How to combine, what it draws on. A study keeps every complete trial's checkpoint until told
otherwise; a long study's can fill a disk. `keep_checkpoints = N` in the study file (applied
after each trial) or `hpo gc --keep N` deletes the checkpoints of all but:

- the best N COMPLETE trials,
- every trial that a recorded ensemble uses (`hpo ensemble` records its members in the study),
- trials that have not finished (a worker may be storing theirs right now),
- trials whose checkpoints a command is reading right now (`holding`: `hpo ensemble`, `hpo
  export`, `hpo distill`, `Study.load_model`), until it is done or, if it was killed, for
  `HOLD_S` (6 hours). A hold is a `reading:<process>-<slot>` study attribute, deleted when
  released (set to null where the store cannot delete one, a gRPC proxy: the process's next
  hold writes the same attribute, so a server reading many times leaves one, not thousands).

Validation predictions stay (a few hundred KB each; an ensemble's pool reads them). What was
removed, and why, is recorded in the study as one user attribute per collection (`gc:<when>`);
Optuna does not let a finished trial's attributes change. Nothing here imports anything a store
names: the records are data. Without N (neither flag nor setting) every checkpoint stays.

This is `hpo gc`, which also removes the study's prepared data that its current settings no
longer use (`hpo.caches`).

Command line::

    hpo gc [--study studies/imdb.toml | --storage URL --study-name NAME] [--keep N] [--dry-run]
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.exceptions import StorageInternalError
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from hpo._lock import exclusive_lock
from hpo.command_options import add_study_arguments, open_study, positive_int
from hpo.contract import Attr
from hpo.errors import ConfigError, HpoError
from hpo.outage import driver_message
from hpo.store import (
    AtomicFileSystemArtifactStore,
    database_time,
    delete_study_attr,
    open_artifact_store,
    refuse_read_only,
    sqlite_file,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator, Sequence

    import optuna
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

    from hpo.config import StudyConfig

__all__ = [
    "Collection",
    "artifact_bytes",
    "best_first",
    "collect_garbage",
    "has_checkpoint",
    "held_checkpoints",
    "holding",
    "main",
    "named_artifacts",
    "plan_collection",
    "removed_checkpoints",
    "stored_id",
]

_log = logging.getLogger(__name__)
GC_ATTR_PREFIX = "gc:"
HOLD_ATTR_PREFIX = "reading:"
# How long a hold lasts whose reader was killed before releasing it: its checkpoints are kept
# that long, no longer. A reader holds only while it fetches and loads checkpoints (minutes).
HOLD_S = 6 * 3600
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
# What optuna.artifacts.upload_artifact names an artifact: a UUID.
_ARTIFACT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_ATTRS = (Attr.CHECKPOINT_ID, Attr.PREDICTIONS_ID)
# In a file-system store's folder: the lock its collections take turns on.
_COLLECTION_LOCK = ".collection.lock"


class _HoldSlots:
    """This process's hold attributes: a name drawn once per process (a forked child draws its
    own) and a slot per hold open at once, the lowest free one reused once released."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Starts afresh (in a forked child: its parent's name and slots are not its own)."""
        self.lock = threading.Lock()
        self.process = ""
        self.taken: set[int] = set()

    def take(self) -> str:
        with self.lock:
            self.process = self.process or uuid.uuid4().hex[:12]
            slot = min(set(range(len(self.taken) + 1)) - self.taken)
            self.taken.add(slot)
        return f"{HOLD_ATTR_PREFIX}{self.process}-{slot}"

    def give_back(self, key: str) -> None:
        with self.lock:
            self.taken.discard(int(key.rpartition("-")[2]))


_slots = _HoldSlots()
os.register_at_fork(after_in_child=_slots.forget)


@dataclass(frozen=True)
class Collection:
    """What a collection keeps and removes.

    Args:
        kept: Trial number -> why its checkpoint stays ("best 20", "ensemble_top5", "running").
        removed: Trial number -> why its checkpoint goes.
        freed_bytes: What the removed checkpoints took (None where the store cannot say: S3).
    """

    kept: dict[int, str]
    removed: dict[int, str]
    freed_bytes: int | None


def removed_checkpoints(study: optuna.Study) -> dict[int, str]:
    """Trial number -> why its checkpoint was removed, from every recorded collection (an entry
    that is not a trial number is passed over: the records are data, and a store is shared)."""
    removed: dict[int, str] = {}
    for key, value in study.user_attrs.items():
        if key.startswith(GC_ATTR_PREFIX) and isinstance(value, dict):
            entries = value.get("removed")
            for number, why in entries.items() if isinstance(entries, dict) else ():
                if isinstance(number, str) and number.isdecimal():
                    removed[int(number)] = str(why)
    return removed


def held_checkpoints(study: optuna.Study, now: float | None = None) -> dict[int, str]:
    """Trial number -> who is reading its checkpoint (`holding`), for the holds in force: not
    released, not lapsed, and not of a reader this machine sees has ended (an entry that is not
    a hold is passed over: the records are data)."""
    return {n: why for hold in _holds(study, now) if hold.live for n, why in hold.trials.items()}


@dataclass(frozen=True)
class _Hold:
    key: str
    trials: dict[int, str]
    live: bool


def _holds(study: optuna.Study, now: float | None = None) -> list[_Hold]:
    """Every hold record in the study, in force or not (released ones are None: not holds)."""
    from hpo.search.identity import WorkerIdentity

    now = study_time(study) if now is None else now
    here = WorkerIdentity.current()
    holds = []
    for key, value in study.user_attrs.items():
        if not (key.startswith(HOLD_ATTR_PREFIX) and isinstance(value, dict)):
            continue
        until, trials = value.get("until"), value.get("trials")
        if not (isinstance(until, (int, float)) and isinstance(trials, list)):
            continue
        by = value.get("by")
        reader = by[:40] if isinstance(by, str) else "another command"
        who = WorkerIdentity.from_fields(value.get("reader"))
        try:
            lapses = datetime.datetime.fromtimestamp(until, datetime.UTC)
        except (OverflowError, ValueError, OSError):  # NaN, infinite, past the year 9999
            continue
        why = f"being read by {reader}{f' ({who})' if who else ''}, held until {lapses:%H:%M} UTC"
        numbers = [n for n in trials if isinstance(n, int) and not isinstance(n, bool)]
        # A reader this machine can look up (the same host, boot and PID namespace) that ended.
        ended = who is not None and here.shares_processes_with(who) and who.is_gone()
        live = until > now and not ended
        holds.append(_Hold(key, dict.fromkeys(numbers, why), live))
    return holds


def study_time(study: optuna.Study) -> float:
    """Now, in POSIX seconds, by the clock of the study's database server where it has one
    (PostgreSQL: every worker and reader then reads one clock, however wrong their own are);
    else by this machine's."""
    return database_time(study) or time.time()


@contextlib.contextmanager
def holding(study: optuna.Study, numbers: Iterable[int], by: str) -> Iterator[dict[int, str]]:
    """Keeps `hpo gc` and `keep_checkpoints` from removing the checkpoints of trials
    `numbers` while `by` (a command's name) reads them; released on exit.

    Yields `removed_checkpoints` as read once the hold is recorded: a trial in it has no
    checkpoint to read. Together with `collect_garbage`, which reads the holds after recording
    its removals, no checkpoint goes from under a reader: a collection that recorded first is
    in what this yields, and one that recorded later sees the hold. A hold records its reader
    (a collection on the reader's machine ends the hold of a reader that was killed) and lapses
    `HOLD_S` after it began, by the database server's clock where there is one. Where the
    study cannot be written (a read-only copy, another user's folder), the checkpoints are read
    unheld, with a warning.
    """
    from hpo.search.identity import WorkerIdentity

    key = _slots.take()
    now = study_time(study)
    trials = sorted(set(numbers))
    record = {
        "trials": trials,
        "by": by,
        "reader": dataclasses.asdict(WorkerIdentity.current()),
        "at": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat("T", "seconds"),
        "until": now + HOLD_S,
    }
    try:
        study.set_user_attr(key, record)
    except (SQLAlchemyError, StorageInternalError) as exc:
        _log.warning(
            "%s reads checkpoints without holding them against hpo gc: the study cannot be "
            "written from here (%s). A collection by the study's owner meanwhile may remove "
            "them; run it again then.",
            by,
            driver_message(exc).splitlines()[0],
        )
        _slots.give_back(key)
        key = ""
    try:
        yield removed_checkpoints(study)
    finally:
        if key:
            try:
                _release(study, key)
                _slots.give_back(key)
            except (SQLAlchemyError, StorageInternalError) as exc:
                _log.warning(
                    "could not release %s's hold on %d checkpoint(s) (%s); hpo gc keeps them "
                    "until it lapses in %d hours.",
                    by,
                    len(trials),
                    exc,
                    HOLD_S // 3600,
                )


def _release(study: optuna.Study, key: str) -> None:
    # Optuna has no call to delete an attribute; where the store cannot (a gRPC proxy), the
    # hold is overwritten, and a collection run on the database itself deletes it later.
    if not delete_study_attr(study, key):
        study.set_user_attr(key, None)


def _restore(study: optuna.Study, numbers: set[int]) -> None:
    """Takes trials `numbers` out of every collection's record of what it removed."""
    for key, value in study.user_attrs.items():
        entries = value.get("removed") if isinstance(value, dict) else None
        if key.startswith(GC_ATTR_PREFIX) and isinstance(entries, dict):
            kept = {n: w for n, w in entries.items() if not (n.isdecimal() and int(n) in numbers)}
            if kept != entries:
                study.set_user_attr(key, {**value, "removed": kept})


def _tidy_holds(study: optuna.Study) -> None:
    """Deletes the records of holds no longer in force (released, lapsed, of a reader that
    ended), where the store can delete them."""
    attrs = study.user_attrs
    released = [k for k, v in attrs.items() if k.startswith(HOLD_ATTR_PREFIX) and v is None]
    for key in released + [hold.key for hold in _holds(study) if not hold.live]:
        # Only as read: the process that released a hold writes its next one under the same key
        # (`_HoldSlots`), and that live hold must stay.
        if not delete_study_attr(study, key, unchanged_from=attrs.get(key)):
            return


def named_artifacts(study: optuna.Study, but_checkpoints_of: Iterable[int] = ()) -> set[str]:
    """What the study's records name as stored: each trial's checkpoint and predictions (but
    the checkpoints of trials `but_checkpoints_of`), and the study's own artifacts (each
    ensemble's report.json, by Optuna's record of them). Any value, as the records hold it."""
    but = set(but_checkpoints_of)
    named = {
        value
        for t in study.get_trials(deepcopy=False)
        for attr in _ID_ATTRS
        if (attr != Attr.CHECKPOINT_ID or t.number not in but)
        and isinstance(value := t.user_attrs.get(attr), str)
    }
    study_attrs = study._storage.get_study_system_attrs(study._study_id)
    named.update(k.removeprefix("artifacts:") for k in study_attrs if k.startswith("artifacts:"))
    return named


def stored_id(value: object) -> str | None:
    """`value` where it is an artifact id the artifact store wrote (Optuna's, a UUID); None
    where it is something else (a path, a number: the store is shared data, and gc must not
    delete what such a value names)."""
    return value if isinstance(value, str) and _ARTIFACT_ID.fullmatch(value) else None


def artifact_id(trial: FrozenTrial, attr: str) -> str | None:
    """The artifact id the trial records under `attr` (`stored_id`); None where it records
    none, or something else."""
    value = trial.user_attrs.get(attr)
    if (artifact := stored_id(value)) is not None:
        return artifact
    if value is not None:
        _log.warning(
            "trial %d's %s is %r, not an artifact id the store wrote; hpo leaves it alone. "
            "The study's database was changed by hand or by another program.",
            trial.number,
            attr,
            value,
        )
    return None


def has_checkpoint(trial: FrozenTrial, removed: dict[int, str]) -> bool:
    """Whether the trial stored a checkpoint that no collection removed."""
    return Attr.CHECKPOINT_ID in trial.user_attrs and trial.number not in removed


def ensemble_members(study: optuna.Study) -> dict[int, str]:
    """Trial number -> the recorded ensemble (its study attribute) that uses it: its members,
    and its pool's best member, which `hpo distill` compares a student with."""
    members: dict[int, str] = {}
    for key, value in study.user_attrs.items():
        if isinstance(value, dict) and isinstance(value.get("members"), list):
            for number in [*value["members"], value.get("best_member")]:
                if isinstance(number, int) and not isinstance(number, bool):
                    members.setdefault(number, key)
    return members


def best_first(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE `trials` best first by the study's direction (ties: the earlier trial first)."""
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    return sorted(trials, key=lambda t: (sign * (t.value or 0.0), t.number))


def plan_collection(
    study: optuna.Study, keep: int, *, removed: dict[int, str] | None = None
) -> tuple[dict[int, str], list[FrozenTrial]]:
    """Which checkpoints stay (with why) and which trials' checkpoints go; changes nothing.
    `removed`: the recorded removals as read already (`removed_checkpoints`), or None."""
    if keep < 0:
        raise ConfigError(f"keep must be at least 0, got {keep}. Use e.g. --keep 20.")
    if removed is None:
        removed = removed_checkpoints(study)
    trials = study.get_trials(deepcopy=False)
    kept: dict[int, str] = {}
    for trial in trials:
        if trial.state in _UNFINISHED:
            kept[trial.number] = "not finished"
    for number, key in ensemble_members(study).items():
        kept.setdefault(number, f"member of {key}")
    for number, reader in held_checkpoints(study).items():
        kept.setdefault(number, reader)
    complete = best_first(
        study, [t for t in trials if t.state == TrialState.COMPLETE and has_checkpoint(t, removed)]
    )
    for trial in complete[:keep]:
        kept.setdefault(trial.number, f"among the best {keep}")
    doomed = [t for t in trials if has_checkpoint(t, removed) and t.number not in kept]
    return kept, doomed


def collect_garbage(
    study: optuna.Study, store: ArtifactStore, keep: int, *, dry_run: bool = False
) -> Collection:
    """Removes the checkpoints of trials that `plan_collection` does not keep.

    The removal is recorded in the study before any file goes, so an interrupted collection
    leaves at worst a recorded removal whose file is still there (the next one deletes it).

    Args:
        study: The study.
        store: Its artifact store.
        keep: How many of the best COMPLETE trials keep theirs.
        dry_run: Only say what would be removed.
    """
    with contextlib.ExitStack() as turn:
        if not dry_run and isinstance(store, FileSystemArtifactStore):
            # The collections of a file-system store take turns (a lock file in its folder):
            # one that found another's recorded removals with their files still there took
            # them for a stopped collection's, and undid the record of one a reader had begun
            # to hold while the other went on deleting its file (the study then named a
            # checkpoint that was gone). A folder this user cannot write in is not locked.
            with contextlib.suppress(OSError):
                turn.enter_context(exclusive_lock(Path(store._base_path) / _COLLECTION_LOCK))
        return _collect(study, store, keep, dry_run=dry_run)


def _collect(study: optuna.Study, store: ArtifactStore, keep: int, *, dry_run: bool) -> Collection:
    # The records read once: a removal another collection records meanwhile is neither
    # planned around nor taken for one left half done (and undone where this one keeps it).
    removed_before = removed_checkpoints(study)
    kept, doomed = plan_collection(study, keep, removed=removed_before)
    # Only a checkpoint no other record names goes: not one a kept trial's attributes name
    # too, nor a trial's predictions (a store's records are data, shared, and may be wrong).
    left = _left_behind(study, store, removed_before)
    named = named_artifacts(study, but_checkpoints_of={t.number for t in [*doomed, *left]})
    doomed = [t for t in doomed if (i := artifact_id(t, Attr.CHECKPOINT_ID)) and i not in named]
    why = f"not among the best {keep} complete trials nor in a recorded ensemble"
    removed = {t.number: why for t in doomed}
    left = [t for t in left if t.user_attrs[Attr.CHECKPOINT_ID] not in named]
    # A trial a stopped collection recorded, that is kept since (an ensemble recorded it, a
    # reader holds it): its file stays, and the record of its removal is undone.
    restored = {t.number for t in left if t.number in kept}
    left = [t for t in left if t.number not in kept]
    removed.update({t.number: "recorded as removed by a collection that was stopped" for t in left})
    if not dry_run:
        _restore(study, restored)
        _tidy_holds(study)
    if dry_run or not removed:
        return Collection(kept, removed, _freed(store, [*doomed, *left]))
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    key = f"{GC_ATTR_PREFIX}{when}:{uuid.uuid4().hex[:6]}"
    if doomed:
        study.set_user_attr(key, {"keep": keep, "at": when, "removed": _numbered(doomed, why)})
    # A reader that began holding checkpoints since the plan did not see this record: what it
    # holds stays, and leaves the record (see `holding`).
    held = held_checkpoints(study)
    if held.keys() & removed.keys():
        kept.update({n: held[n] for n in removed if n in held})
        removed = {n: w for n, w in removed.items() if n not in held}
        doomed = [t for t in doomed if t.number not in held]
        left = [t for t in left if t.number not in held]
        if key in study.user_attrs:
            study.set_user_attr(key, {"keep": keep, "at": when, "removed": _numbered(doomed, why)})
    freed = _freed(store, [*doomed, *left])
    for trial in [*doomed, *left]:
        # Gone already where an earlier collection was interrupted after its record.
        with contextlib.suppress(ArtifactNotFound):
            store.remove(trial.user_attrs[Attr.CHECKPOINT_ID])
    return Collection(kept, removed, freed)


def artifact_bytes(config: StudyConfig, study: optuna.Study) -> int | None:
    """What the study's artifacts (its trials' checkpoints and validation predictions, its
    ensembles' reports) take on disk: only this study's, where studies share one artifact
    folder. None for a bucket or a missing folder."""
    if config.artifact_location.startswith("s3://"):
        return None
    folder = Path(config.artifact_location)
    if not folder.is_dir():
        return None
    store = AtomicFileSystemArtifactStore(folder)
    stored = {
        artifact
        for trial in study.get_trials(deepcopy=False)
        for attr in (Attr.CHECKPOINT_ID, Attr.PREDICTIONS_ID)
        if (artifact := stored_id(trial.user_attrs.get(attr))) is not None
    }
    # The study's own uploads: each ensemble's report.json.
    try:
        uploads = [meta.artifact_id for meta in get_all_artifact_meta(study)]
    except (ValueError, TypeError, KeyError):  # a record not Optuna's: JSON, or its keys
        uploads = []
        _log.warning(
            "the study's records of its uploads (its 'artifacts:' system attributes) are not "
            "all Optuna's; their files are not counted. The study's database was changed by "
            "hand or by another program."
        )
    stored.update(artifact for upload in uploads if (artifact := stored_id(upload)) is not None)
    return sum(store.size(artifact) for artifact in stored)


def _left_behind(
    study: optuna.Study, store: ArtifactStore, removed: dict[int, str]
) -> list[FrozenTrial]:
    """The trials a collection recorded as removed (`removed`) whose checkpoint file is still
    there: it was stopped between its record and the deletion (a file-system store; an S3 one is
    not asked, which would take a request a trial at every collection)."""
    if not isinstance(store, AtomicFileSystemArtifactStore):
        return []
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number in removed
        and (checkpoint := artifact_id(t, Attr.CHECKPOINT_ID)) is not None
        and store.size(checkpoint) > 0
    ]


def _numbered(trials: Sequence[FrozenTrial], why: str) -> dict[str, str]:
    """A collection's record of what it removed: trial number (a string, JSON's keys) -> why."""
    return {str(t.number): why for t in trials}


def _freed(store: ArtifactStore, trials: Sequence[FrozenTrial]) -> int | None:
    """What the trials' checkpoints take (None where the store cannot say: S3)."""
    if not isinstance(store, AtomicFileSystemArtifactStore):
        return None
    return sum(store.size(t.user_attrs[Attr.CHECKPOINT_ID]) for t in trials)


class KeepBest:
    """An Optuna callback that collects after each finished trial: `keep_checkpoints = N`."""

    def __init__(self, config: StudyConfig, keep: int) -> None:
        self._location = config.artifact_location
        self._keep = keep

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        try:
            collect_garbage(study, open_artifact_store(self._location), self._keep)
        except (HpoError, OSError, SQLAlchemyError, StorageInternalError) as exc:
            # A collection that fails costs disk, not the study: the search goes on.
            _log.warning("keep_checkpoints: could not remove old checkpoints (%s)", exc)


def _megabytes(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.1f} MB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    parser.add_argument(
        "--keep",
        type=positive_int(" Use e.g. --keep 20."),
        help="checkpoints of the best N complete trials to keep (default: the study file's "
        "keep_checkpoints; without either, every checkpoint stays)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")


def run(args: argparse.Namespace) -> int:
    """Removes (or lists) the checkpoints and the prepared data the study no longer needs."""
    from hpo.caches import sweep_caches

    config, study = open_study(args.study, args.storage, args.study_name, writes=not args.dry_run)
    keep: Any = args.keep if args.keep is not None else config.keep_checkpoints
    verb = "would remove" if args.dry_run else "removed"
    if keep is None:
        print(
            f"Study {config.name!r}: kept every checkpoint (give --keep N, or set "
            f"keep_checkpoints = N in the study file, to remove all but the best N)."
        )
    else:
        _collect_checkpoints(args, config, study, keep, verb)
    _sweep_leftovers(args, config, study, verb)
    sweep = sweep_caches(config, study, dry_run=args.dry_run)
    freed = f"{_megabytes(sweep.freed_bytes)}{'' if args.dry_run else ' freed'}"
    print(
        f"Prepared data in {config.cache_dir}: {verb} {len(sweep.removed)} folder(s) "
        f"({freed}); kept {len(sweep.kept)}."
    )
    for name, why in sweep.removed.items():
        print(f"  {verb} {name} ({_megabytes(sweep.sizes[name])}): {why}")
    for name, why in sweep.kept.items():
        print(f"  kept {name}: {why}")
    if sweep.unknown is not None:
        # The reason may be a sentence of its own ("... Fix the path ...").
        print(f"  No cache was removed: {sweep.unknown.rstrip('.')}.")
    return 0


def _collect_checkpoints(
    args: argparse.Namespace, config: StudyConfig, study: optuna.Study, keep: int, verb: str
) -> None:
    if not args.dry_run:
        refuse_read_only(
            config.storage_url, "hpo gc", "records on each trial that its checkpoint went"
        )
    before = artifact_bytes(config, study)
    result = collect_garbage(
        study,
        open_artifact_store(config.artifact_location, create=False),
        keep,
        dry_run=args.dry_run,
    )
    print(
        f"Study {config.name!r}: {verb} {len(result.removed)} checkpoint(s) "
        f"({_megabytes(result.freed_bytes)}); kept {len(result.kept)} trial(s)."
    )
    for number in sorted(result.removed):
        print(f"  {verb} trial {number}")
    for number, why in sorted(result.kept.items()):
        print(f"  kept trial {number}: {why}")
    if not args.dry_run and before is not None:
        after = artifact_bytes(config, study)
        print(f"Artifacts on disk: {_megabytes(before)} -> {_megabytes(after)}")


def _sweep_leftovers(
    args: argparse.Namespace, config: StudyConfig, study: optuna.Study, verb: str
) -> None:
    """Sweeps what stopped trials and writers left: the scratch folders of finished trials
    (`sweep_trial_scratch`) and files in the artifact folder and reports/ (`sweep_leftovers`).
    The study's folder is swept only where it is known to be this study's: opened by its study
    file, or by a SQLite database in it; opened by a server's URL, it is only ./studies/<name>
    here, which may be another study's of that name."""
    from hpo.leftovers import sweep_leftovers
    from hpo.scratch import sweep_trial_scratch

    database = sqlite_file(config.storage_url)
    own = not (args.storage or args.study_name) or (
        database is not None and database.resolve().parent == config.study_dir.resolve()
    )
    scratch = sweep_trial_scratch(config.study_dir, study, dry_run=args.dry_run) if own else {}
    if scratch:
        print(
            f"Scratch folders of finished trials in {config.study_dir / 'trials'} (left by "
            f"trials that were stopped): {verb} {len(scratch)} "
            f"({_megabytes(sum(scratch.values()))})."
        )
    files = sweep_leftovers(config, study, reports=own, dry_run=args.dry_run)
    if files:
        print(
            f"Files that stopped writers left: {verb} {len(files)} "
            f"({_megabytes(sum(f.size for f in files))})."
        )
    for leftover in files:
        print(f"  {verb} {leftover.path} ({_megabytes(leftover.size)}): {leftover.why}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.artifacts`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("gc", argv)


if __name__ == "__main__":
    sys.exit(main())
