"""How to combine, written down: hpo's output folders (an ensemble's, a trial export's, a
distilled student's), what may replace one, their lock, and how a new one is put in place."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import sys
import uuid
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo._json import read_json
from hpo._stop import raise_if_asked, signals_held
from hpo.ensemble.export import EXPORT_NAME, TOKENIZER_NAME
from hpo.ensemble.litert_export import LITERT_NAME
from hpo.ensemble.onnx_export import ONNX_NAME
from hpo.ensemble.serving import SAVED_MODEL_NAME
from hpo.errors import ConfigError
from hpo.scratch import machine_tag
from hpo.store import redact_url, sqlite_file
from hpo.training.isolation import process_alive

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "OutputKind",
    "check_out_dir",
    "folder_lock",
    "publish",
    "replacing",
    "restore_interrupted",
    "signals_held",
    "staging_for",
    "synced",
]


class OutputKind(str, Enum):  # noqa: UP042 (its values are written and compared as text)
    """What an output folder of hpo's holds, as its report.json tells."""

    ENSEMBLE = "ensemble"  # hpo ensemble
    TRIAL = "trial export"  # hpo export --trial
    DISTILLATION = "distilled student"  # hpo distill

    @classmethod
    def of(cls, report: Mapping[str, Any]) -> OutputKind | None:
        """The kind of output whose report.json holds `report`; None for none of hpo's."""
        if "student" in report:
            return cls.DISTILLATION
        if "members" in report:
            return cls.ENSEMBLE
        if "trial" in report:
            return cls.TRIAL
        return None

    @property
    def with_article(self) -> str:
        """ "an ensemble", "a trial export"."""
        return f"{'an' if self.value[0] in 'aeiou' else 'a'} {self.value}"


def check_out_dir(
    out_dir: Path, kind: OutputKind, *, study: str | None = None, storage: str | None = None
) -> Path:
    """`out_dir` (normalized) if `publish` may put an output of `kind` there: a path not taken
    yet, an empty folder, or an earlier output of hpo's of the same kind (a folder whose
    report.json says so) of the same study, holding only what hpo writes there, which it
    replaces whole; checked before any work, so that nothing a user keeps there is lost (a
    student distilled into an ensemble's folder, a file of theirs), nor another kind of result
    (a typo in `--out` naming the ensemble a distillation reads), nor another study's (whose
    record of where its ensemble is would then name this one's).

    Args:
        study: The name of the study the new output is of; None: any study's may be replaced.
        storage: Its storage URL. An earlier output recorded in another storage is another
            study's, unless that storage is a SQLite file that is gone (the study's folder was
            moved, or copied to another machine), the same file by another path, or a study
            that does not record this folder as its ensemble's (the project this one was
            copied from, cp -a, records its own).

    Raises:
        ConfigError: `out_dir` is a file, holds files hpo did not write (a folder of the
            user's, the data, a study's folder), holds another kind of output or another
            study's, is the folder the command runs in or one above it, or cannot be created.
    """
    out = Path(os.path.normpath(out_dir))
    # What is checked is the earlier output, where a killed run left it aside.
    restore_interrupted(out)
    fix = "Give a folder that does not exist yet, such as ensembles/NAME"
    holder = next(p for p in Path(os.path.abspath(out)).parents if p.exists())
    if not (holder.is_dir() and os.access(holder, os.W_OK | os.X_OK)):
        raise ConfigError(f"output folder {out_dir} (--out): hpo cannot write in {holder}. {fix}.")
    if not (out.exists() or out.is_symlink()):
        return out
    if not out.is_dir():
        raise ConfigError(
            f"output folder {out_dir} (--out) is a file, and hpo writes a folder there. {fix}."
        )
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ConfigError(
            f"output folder {out_dir} (--out) is the folder this command runs in, or one "
            f"above it, and hpo replaces its output folder whole. {fix}."
        )
    if not (out / "report.json").is_file():
        if any(out.iterdir()):
            raise ConfigError(
                f"output folder {out_dir} (--out) holds files that hpo did not write (it has "
                f"no report.json), and hpo replaces its output folder whole. {fix}, or move "
                f"those files away."
            )
        return out
    report = _report(out)
    found = OutputKind.of(report) if report is not None else None
    if report is None or found != kind:
        what = "a report.json hpo did not write" if found is None else found.with_article
        raise ConfigError(
            f"output folder {out_dir} (--out) holds {what}, and this {kind.value} would "
            f"replace it whole. {fix}."
        )
    if study is not None and not _same_study(report, study, storage, out):
        raise ConfigError(
            f"output folder {out_dir} (--out) holds {kind.with_article} of study "
            f"{report.get('study')!r} ({report.get('storage', 'storage not recorded')}), and "
            f"this one is of study {study!r} ({redact_url(storage or '')}): replacing it would "
            f"leave that study recording (hpo status) an output that is no longer its own. "
            f"Give this one a folder of its own with --out, such as {out}-{study}."
        )
    others = sorted(
        entry.name + ("/" if entry.is_dir() else "")
        for entry in out.iterdir()
        if entry.name not in _WRITTEN and not _is_scratch(entry.name) and not _system(entry.name)
    )
    students = [
        name
        for name in others
        if OutputKind.of(_report(out / name) or {}) is OutputKind.DISTILLATION
    ]
    if students:
        raise ConfigError(
            f"output folder {out_dir} (--out) holds {kind.with_article} and, in "
            f"{', '.join(students)}, a student hpo distill made of it, which replacing the "
            f"{kind.value} whole would delete; the student was distilled from the "
            f"{kind.value} being replaced and does not belong beside a new one. Move it out "
            f"first (mv {out / students[0].rstrip('/')} {out}-{students[0].rstrip('/')}), or give "
            f"this {kind.value} another folder with --out."
        )
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConfigError(
            f"output folder {out_dir} (--out) holds {kind.with_article} and files hpo did not "
            f"write there ({listed}), which replacing it whole would delete. Move them out "
            f"first, or give this {kind.value} another folder with --out."
        )
    return out


def replacing(out_dir: Path) -> str | None:
    """The line that names the earlier output in `out_dir`, which `publish` would replace:
    "replacing the ensemble in DIR (built CREATED from study S)"; None where there is none."""
    report = _report(Path(out_dir))
    kind = OutputKind.of(report) if report is not None else None
    if report is None or kind is None:
        return None
    built = f"built {report['created']} " if "created" in report else ""
    return f"replacing the {kind.value} in {out_dir} ({built}from study {report.get('study')!r})"


# What hpo writes in its output folders, of every kind and version (`report.write_outputs`,
# `serving.write_exports`, hpo distill's `student.keras` before its export was `ensemble.keras`).
_WRITTEN = frozenset(
    {
        "report.json",
        "members.csv",
        "test_predictions.npy",
        "ensemble.png",
        "student.keras",
        EXPORT_NAME,
        TOKENIZER_NAME,
        SAVED_MODEL_NAME,
        ONNX_NAME,
        LITERT_NAME,
    }
)
# `staging_for`'s folders, and `hpo export`'s report.json before it is renamed into place.
_SCRATCH = re.compile(
    r"\.(?P<name>.+)\.(?P<kind>tmp|old)-\d+-[0-9a-f]{8}-.+|\.report-[0-9a-f]{8}\.json"
)


def _system(name: str) -> bool:
    """Whether `name` is a file a file manager leaves in any folder it shows (macOS's Finder,
    Windows' Explorer): no one's work, replaced with the folder."""
    return name in (".DS_Store", "Thumbs.db", "desktop.ini") or name.startswith("._")


def _is_scratch(name: str) -> bool:
    """Whether `name` is what a run of hpo's left unfinished in an output folder: a staging
    folder, or an earlier copy of one of its files; an "old" copy of anything else (a student
    a killed `hpo distill` was replacing) may be the only one there is."""
    match = _SCRATCH.fullmatch(name)
    return match is not None and (match["kind"] != "old" or match["name"] in _WRITTEN)


def _report(folder: Path) -> dict[str, Any] | None:
    """The report.json in `folder` if it holds a JSON object; None otherwise."""
    try:
        report = read_json(folder / "report.json")
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _same_study(report: Mapping[str, Any], study: str, storage: str | None, out: Path) -> bool:
    """Whether the output `report` describes is of `study` in `storage`."""
    if report.get("study") != study:
        return False
    recorded = report.get("storage")
    if recorded is None or storage is None or recorded == redact_url(storage):
        return True
    then, now = sqlite_file(recorded), sqlite_file(storage)
    if then is None or now is None:
        return False
    if not then.exists():  # moved with its study's folder: no other study records it
        return True
    if now.exists() and os.path.samefile(then, now):
        return True
    if OutputKind.of(report) is OutputKind.TRIAL:
        return False  # a trial's export, which no study records: another database's is its own
    # Another database: the study's own only where that study does not record this folder as
    # its ensemble's, as the one of a project this one was copied from (cp -a) records its own.
    return not _recorded_there(then, study, out)


def _recorded_there(database: Path, study: str, out: Path) -> bool:
    """Whether `study` in the SQLite file `database` records `out` as an ensemble's folder
    (`hpo.ensemble.report.record_in_study`; a relative one, as the command that wrote it was
    given it, from a folder above the database); True where it cannot be read."""
    from hpo.store import briefly_opened

    try:
        with briefly_opened(database) as storage:
            attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study))
    except Exception:  # a locked, damaged or other database: another study's, as it says
        return True
    for key, record in attrs.items():
        if not (key.startswith("ensemble_top") and isinstance(record, dict)):
            continue
        if "out_dir_resolved" in record:
            places = [Path(str(record["out_dir_resolved"]))]
        else:  # recorded before: the path as given, from a folder above the database, likely
            recorded = Path(str(record.get("out_dir", "")))
            bases = [Path("/")] if recorded.is_absolute() else database.resolve().parents
            places = [base / recorded for base in bases]
        try:
            if any(place.exists() and os.path.samefile(place, out) for place in places):
                return True
        except OSError:  # a folder on the way this user cannot search: not known to be this
            continue
    return False


def staging_for(out_dir: Path, kind: str = "tmp") -> Path:
    """A new path beside `out_dir` to write its output in before `publish` puts it in place
    (`kind` "old": where `publish` moves the earlier output meanwhile), once those of the same
    kind that processes of this machine left there and that are gone are removed: a kill skips
    a run's own cleanup, and a refitted ensemble's exports take hundreds of MB.

    Its name holds the process id and the machine (`hpo.scratch.machine_tag`: host, boot and
    PID namespace): a folder shared by several machines or containers keeps the others' runs.
    An "old" one goes only while `out_dir` is there: a run killed between `publish`'s two
    renames left the only copy of the earlier output in it, which is put back first
    (`restore_interrupted`).
    """
    prefix = f".{out_dir.name}.{kind}-"
    machine = machine_tag()
    if kind == "old":
        restore_interrupted(out_dir)
    if out_dir.parent.is_dir() and (kind != "old" or out_dir.exists()):
        for stale in _left_by_the_dead(out_dir.parent, prefix):
            _remove(stale)
    return out_dir.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}-{machine}"


def _left_by_the_dead(folder: Path, prefix: str) -> list[Path]:
    """The paths `staging_for` named `prefix` in `folder` whose process, of this machine, is
    gone."""
    machine = machine_tag()
    left = []
    for path in folder.glob(f"{glob.escape(prefix)}*"):
        pid, _, rest = path.name.removeprefix(prefix).partition("-")
        if pid.isdigit() and rest[9:] == machine and not process_alive((int(pid), None)):
            left.append(path)
    return left


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Holds the lock of an output folder of hpo's (`.<name>.lock` beside it, there only while
    held) inside: `hpo ensemble` replacing the folder and `hpo export` adding to it take turns,
    so that no export is checked against one ensemble and recorded in another's report, and two
    exports' records both land. A folder whose parent cannot hold the lock file is not locked."""
    # The folder itself, whatever path names it (a link to it, `.`): one lock per folder.
    real = Path(os.path.realpath(out_dir))
    path = real.parent / f".{real.name}.lock"
    said = False
    while True:
        try:
            # Held open for the lock's life.
            handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError:
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                print(
                    f"waiting for another hpo command to finish writing {out_dir} ...",
                    file=sys.stderr,
                    flush=True,
                )
                said = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        # The holder before removes the file as it lets go: a lock on a removed file is none.
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def publish(staging: Path, out_dir: Path) -> None:
    """Puts a finished output folder (or file) in place of `out_dir` at once, replacing an old
    one.

    The old one is moved aside first, then the new one renamed into its place. Ctrl-C, SIGTERM
    and SIGHUP are held between the two renames (delivered after them), and a second rename that
    fails puts the old one back: neither leaves `out_dir` missing with the old output hidden
    beside it. SIGKILL (or a crash) there can: the next command to write `out_dir` puts the old
    one back first (`restore_interrupted`).
    """
    # A stop a library swallowed (`hpo._stop`) ends the command here, with the earlier output.
    raise_if_asked()
    # On disk before the renames: after a power loss the new output is whole, or the old one
    # is still in place, never empty files behind the renamed names.
    synced(staging)
    old = staging_for(out_dir, "old")
    published = False
    try:
        with signals_held():
            moved = os.path.lexists(out_dir)
            if moved:
                os.rename(out_dir, old)
            try:
                os.rename(staging, out_dir)
            except BaseException:
                if moved:
                    os.rename(old, out_dir)
                raise
            published = True
        _sync_folder(out_dir.parent)
    finally:
        # Also where a signal held meanwhile stops the command as it is delivered.
        if published:
            _remove(old)


def synced(path: Path) -> None:
    """Flushes `path` (a file, or a folder and everything in it) to the disk."""
    if path.is_dir() and not path.is_symlink():
        for folder, _, files in os.walk(path):
            for name in files:
                synced(Path(folder, name))
            _sync_folder(Path(folder))
    elif path.is_file() and not path.is_symlink():
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    """Flushes a folder's entries (the names renamed in it); where the file system allows."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # not every file system syncs a folder
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def restore_interrupted(out_dir: Path) -> Path | None:
    """Puts back the earlier output that a run killed between `publish`'s two renames left
    aside (`.<name>.old-<pid>-...`), where `out_dir` is missing: the newest such copy of a
    process of this machine that is gone. A live process's is its own (it may be renaming it
    now), and another machine's cannot be told dead from here.

    Returns:
        The copy put back, or None.
    """
    if os.path.lexists(out_dir):
        return None
    left = []
    for copy in _left_by_the_dead(out_dir.parent, f".{out_dir.name}.old-"):
        with contextlib.suppress(OSError):
            left.append((copy.lstat().st_ctime, copy))
    for _, copy in sorted(left, reverse=True)[:1]:
        try:
            os.rename(copy, out_dir)
        except OSError:
            return None
        print(
            f"note: put back the earlier {out_dir} from {copy.name}, where a run killed while "
            f"replacing it had left it.",
            file=sys.stderr,
            flush=True,
        )
        return copy
    return None


def _remove(path: Path) -> None:
    """Removes a folder of hpo's, or a file or a link (never what a link points to: a link to
    a folder was left behind for good, as `rmtree` refuses links)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
