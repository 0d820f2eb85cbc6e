"""Shared fixtures: a tiny synthetic IMDB in the official layout, and tiny study files."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from optuna.trial import FrozenTrial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Tests say where their data is: $HPO_IMDB_PATH and $HPO_CIFAR10_PATH (set in CI) must not
# override that, so they are read here once, for the tests on real data, and removed for the
# whole session.
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_IMDB = Path(os.environ.pop("HPO_IMDB_PATH", None) or _SHARED / "aclImdb_v1_labeled.tar.gz")
REAL_CIFAR10 = Path(os.environ.pop("HPO_CIFAR10_PATH", None) or _SHARED / "cifar10_jpg.tar.gz")
os.environ.pop("HPO_IMAGES_PATH", None)


_POSITIVE = ["great", "excellent", "wonderful", "loved", "superb", "brilliant"]
_NEGATIVE = ["awful", "terrible", "boring", "hated", "worst", "dull"]
_NEUTRAL = ["the", "movie", "plot", "actor", "scene", "film", "story", "was", "and", "a", "it"]


def write_fake_imdb(root: Path, *, movies: int = 40, per_movie: int = 6, seed: int = 0) -> Path:
    """Writes a small aclImdb/ folder in the official layout and returns it.

    Each split has `movies` movies with `per_movie` reviews each, half positive; positive
    reviews use positive words, so a small model learns the task in an epoch or two. Train and
    test movies are disjoint, as in the real data set.
    """
    rng = np.random.default_rng(seed)
    base = root / "aclImdb"
    for split, first_movie in (("train", 0), ("test", 10_000)):
        urls: dict[str, list[str]] = {"pos": [], "neg": []}
        for movie in range(first_movie, first_movie + movies):
            for review in range(per_movie):
                label = "pos" if (movie + review) % 2 else "neg"
                words = list(rng.choice(_NEUTRAL, 24))
                words += list(rng.choice(_POSITIVE if label == "pos" else _NEGATIVE, 3))
                rng.shuffle(words)
                review_id = len(urls[label])
                rating = 8 if label == "pos" else 2
                folder = base / split / label
                folder.mkdir(parents=True, exist_ok=True)
                text = " ".join(words).capitalize() + ". <br /><br />" + split
                (folder / f"{review_id}_{rating}.txt").write_text(text)
                urls[label].append(f"http://www.imdb.com/title/tt{movie:07d}/usercomments")
        for label, lines in urls.items():
            (base / split / f"urls_{label}.txt").write_text("\n".join(lines) + "\n")
    return base


def assert_each_trial_trained_once(trials: Sequence[FrozenTrial], artifact_dir: Path) -> None:
    """Every complete trial stored its own checkpoint and predictions, and nothing else is in the
    store: a trial two workers both trained would have uploaded twice, leaving files no trial
    names (Optuna numbers trials uniquely whatever the workers do, so numbers show nothing)."""
    from optuna.trial import TrialState

    from hpo.contract import Attr

    keys = (Attr.CHECKPOINT_ID, Attr.PREDICTIONS_ID)
    assert all(
        key in t.user_attrs for t in trials if t.state is TrialState.COMPLETE for key in keys
    )
    named = [t.user_attrs[key] for t in trials for key in keys if key in t.user_attrs]
    assert len(set(named)) == len(named), "two trials name the same artifact"
    stored = {p.name for p in artifact_dir.rglob("*") if p.is_file()}
    assert stored == set(named), f"artifacts no trial names: {sorted(stored - set(named))}"


# Python prints an uncaught error on sys.stderr, and on nothing where that is None.
_TRACEBACK_TO_STDOUT = (
    "import sys, traceback; "
    "sys.excepthook = lambda *error: traceback.print_exception(*error, file=sys.stdout)\n"
)


def run_user_script(
    folder: Path,
    code: str,
    timeout: int = 900,
    *,
    piped: bool = False,
    without_stderr: bool = False,
) -> str:
    """Writes `code` as `folder/script.py` and runs it as a user runs a script (`__main__`,
    with hpo importable), or with `piped` feeds it to `python -`; it must succeed. Returns what
    it printed.

    `without_stderr` starts it with descriptor 2 closed (`2>&-`; Python's `sys.stderr` is then
    None, as under pythonw): an error it does not catch is printed on stdout instead.
    """
    if without_stderr:
        code = _TRACEBACK_TO_STDOUT + code
    (folder / "script.py").write_text(code)
    command = [sys.executable, "-" if piped else "script.py"]
    if without_stderr:
        command = ["sh", "-c", 'exec "$0" "$@" 2>&-', *command]
    result = run_in(folder, command, timeout, stdin=code if piped else None)
    assert result.returncode == 0, (result.stderr or result.stdout)[-3000:]
    return result.stdout


def run_in(
    folder: Path, command: list[str], timeout: int, *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `command` in `folder` with hpo importable, as a user's shell runs it; returns what
    it did (the caller checks its exit code)."""
    return subprocess.run(
        command,
        input=stdin,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mount(command: list[str], what: str, undo: Path | None = None) -> None:
    """Runs a mount command; where it fails (it needs root), unmounts `undo` and skips the test
    with the reason, but under CI fails it instead."""
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        problem = done.stderr.strip() if done.returncode else None
    except OSError as exc:
        problem = str(exc)
    if problem is None:
        return
    if undo is not None:
        unmount(undo)
    reason = f"cannot mount {what} ({problem})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run as root")
    pytest.skip(reason)


def unmount(folder: Path) -> None:
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "64k") mounted at `folder`, to fill; unmounted after.

    Mounting needs root (CI and the development machine run as root): elsewhere the test is
    skipped with the reason, but under CI it fails instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _mount(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], "a small tmpfs")
    try:
        yield folder
    finally:
        unmount(folder)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` made read-only where it stands by a read-only bind mount over it; as
    `small_disk`, it needs root."""
    _mount(["mount", "--bind", str(folder), str(folder)], "a read-only view")
    _mount(["mount", "-o", "remount,ro,bind", str(folder)], "a read-only view", undo=folder)
    try:
        yield folder
    finally:
        unmount(folder)


def resize_disk(folder: Path, size: str) -> None:
    """Gives a `small_disk` a new size, as if space were freed on it."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-log",
        metavar="FILE",
        help="append each test's CPU seconds to FILE (tab-separated: test, wall, the machine's "
        "busy CPU, this process's, its waited-for children's); run with -n 0, where the "
        "machine's busy CPU is the test's own, its processes' (a search's trials) included",
    )


def _machine_busy_s() -> float:
    """CPU seconds the machine has spent busy since it started (/proc/stat), all cores."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def _process_cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """With --cpu-log: what each test costs in CPU, which the suite's wall time on a machine of
    2 cores follows (`make test` keeps both busy), where pytest's durations add the waits of
    tests sharing the cores."""
    log = item.config.getoption("--cpu-log")
    if not log:
        yield
        return
    whose = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    started, busy, spent = time.monotonic(), _machine_busy_s(), [_process_cpu_s(w) for w in whose]
    yield
    spent = [_process_cpu_s(w) - s for w, s in zip(whose, spent, strict=True)]
    row = [time.monotonic() - started, _machine_busy_s() - busy, *spent]
    with open(log, "a") as out:
        out.write("\t".join([item.nodeid, *(f"{value:.2f}" for value in row)]) + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest tests first: under pytest-xdist they start at once, each on its own process,
    instead of last, where one of them alone would set the suite's wall time."""
    items.sort(
        key=lambda item: (not item.get_closest_marker("e2e"), not item.get_closest_marker("slow"))
    )


def shared_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """What `make(folder)` returns, made once per test run even across pytest-xdist processes.

    Alone, `make` fills a fresh temporary folder. Under xdist the first process to get here makes
    it in the folder all processes share (the parent of each one's base temporary folder), under
    a file lock, and the others wait for it and reuse it: the same data and the same searched
    study, at the same paths, instead of one per process.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make(factory.mktemp(name))
    root = factory.getbasetemp().parent
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(str(make(folder)))
    return Path(done.read_text())


@pytest.fixture(scope="session")
def fake_imdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic aclImdb/ folder (480 train and 480 test reviews)."""
    return shared_once(tmp_path_factory, "imdb", write_fake_imdb)


@pytest.fixture(scope="session")
def fake_imdb_tarball(fake_imdb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same data as an aclImdb_v1.tar.gz-style archive."""
    archive = tmp_path_factory.mktemp("imdb-tar") / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_imdb, arcname="aclImdb")
    return archive


TINY_STUDY = """
name = "{name}"
n_trials = {n_trials}
enqueue_defaults = {enqueue}

[sampler]
seed = 3
startup_trials = 2

[pruner]
kind = "none"

[data]
path = "{data}"
val_size = 60

[training]
max_epochs = 2
patience = 1
chance_epochs = 0

[space]
# The convolutional pair unless `families` says otherwise: what the search, recovery and
# inspection tests were written around (tests/models/test_ngram.py searches the n-gram family).
family = {families}
vocab_size = [10000]
seq_len = [200]
embedding_dim = [32, 40]
filters = [32]
blocks = [1, 2]
branches = [1, 2]
dense_units = [0, 32]
batch_size = [32]
learning_rate = [0.003, 0.01]
"""


def write_study(
    folder: Path,
    data: Path,
    *,
    name: str = "tiny",
    n_trials: int = 3,
    enqueue: bool = True,
    extra: str = "",
    families: str = '["conv1d", "sepconv1d"]',
) -> Path:
    """Writes a tiny study file on synthetic data and returns its path.

    `extra` is appended (after the `[space]` table); `families` is the TOML list of families.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    text = TINY_STUDY.format(
        name=name, n_trials=n_trials, enqueue=str(enqueue).lower(), data=data, families=families
    )
    path.write_text(text + extra)
    return path


def real_data(path: Path, name: str, variable: str) -> Path:
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"real {name} data missing at {path}; CI must provide ../shared/data/")
        pytest.skip(f"real {name} data not found at {path}; set {variable}")
    return path


@pytest.fixture
def real_imdb() -> Path:
    """The shared real IMDB archive; fails in CI if it is missing, skips elsewhere."""
    return real_data(REAL_IMDB, "IMDB", "HPO_IMDB_PATH")


@pytest.fixture
def real_cifar10() -> Path:
    """The shared real CIFAR-10 JPEG archive; fails in CI if it is missing, skips elsewhere."""
    return real_data(REAL_CIFAR10, "CIFAR-10", "HPO_CIFAR10_PATH")


def _real_subset(archive: Path, folder: Path, keep: Callable[[str, bytes], bytes | None]) -> Path:
    """A .tar.gz in `folder` of `archive`'s files as `keep(name, content)` returns them (None
    leaves a file out), in the same layout: a small real data set for the end-to-end studies,
    whose cost grows with every review or image read, tokenized, trained on and evaluated."""
    subset = folder / archive.name
    with tarfile.open(archive) as source, tarfile.open(subset, "w:gz", compresslevel=1) as out:
        for member in source:
            if member.isdir():
                out.addfile(member)
                continue
            read = source.extractfile(member)
            content = None if read is None else keep(member.name, read.read())
            if content is not None:
                member.size = len(content)
                out.addfile(member, io.BytesIO(content))
    return subset


def _imdb_subset(folder: Path, per_class: dict[str, int]) -> Path:
    """The real IMDB archive cut to its first `per_class[split]` reviews of each class (review
    ids below it) and the lines of urls_*.txt that name their movies (line N: review N's)."""
    review = re.compile(r"aclImdb/(train|test)/(?:pos|neg)/(\d+)_\d+\.txt$")
    movies = re.compile(r"aclImdb/(train|test)/urls_(?:pos|neg)\.txt$")

    def keep(name: str, content: bytes) -> bytes | None:
        if (found := review.match(name)) is not None:
            return content if int(found[2]) < per_class[found[1]] else None
        if (found := movies.match(name)) is not None:
            return b"".join(content.splitlines(keepends=True)[: per_class[found[1]]])
        return content if name == "aclImdb/README" else None

    return _real_subset(real_data(REAL_IMDB, "IMDB", "HPO_IMDB_PATH"), folder, keep)


def _cifar10_subset(folder: Path, per_class: dict[str, int]) -> Path:
    """The real CIFAR-10 archive cut to `per_class[split]` images of each class."""
    image = re.compile(r"cifar10/(train|test)/[^/]+/(\d+)\.jpg$")

    def keep(name: str, content: bytes) -> bytes | None:
        found = image.match(name)
        return content if found is not None and int(found[2]) < per_class[found[1]] else None

    return _real_subset(real_data(REAL_CIFAR10, "CIFAR-10", "HPO_CIFAR10_PATH"), folder, keep)


@pytest.fixture(scope="session")
def real_imdb_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 real training reviews and 2,000 real test reviews, half of each positive, in the
    official archive's layout: enough for the smoke study's 4,000 + 1,000 split."""
    per_class = {"train": 3000, "test": 1000}
    return shared_once(tmp_path_factory, "imdb-subset", lambda d: _imdb_subset(d, per_class))


@pytest.fixture(scope="session")
def real_cifar10_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 real CIFAR-10 training images and 1,000 test images (300 and 100 of each class):
    enough for the smoke study's 2,000 + 500 split."""
    per_class = {"train": 300, "test": 100}
    return shared_once(tmp_path_factory, "cifar10-subset", lambda d: _cifar10_subset(d, per_class))


@pytest.fixture(scope="session")
def searched(fake_imdb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny study (4 COMPLETE trials) on synthetic data; returns its study file.

    Shared by many tests: treat it as read-only, or use `study_copy`.
    """
    from hpo.config import load_study_config
    from hpo.search import run_search

    def search(folder: Path) -> Path:
        study_file = write_study(folder, fake_imdb, n_trials=4)
        summary = run_search(load_study_config(study_file), progress=False)
        assert summary.finished == 4
        return study_file

    return shared_once(tmp_path_factory, "searched", search)


def copy_study_folder(source: Path, destination: Path) -> None:
    """Copies a study's folder while other tests may have its SQLite database open.

    A reader in another test worker creates and deletes the database's `-wal` and `-shm` files
    as it opens and closes it, so a plain copytree can list one and then miss it. Those files
    are left behind and each database is copied with SQLite's backup, which reads a consistent
    snapshot whatever the readers do.
    """
    import sqlite3

    def transient(_folder: str, names: list[str]) -> set[str]:
        return {name for name in names if name.endswith(("-wal", "-shm", "-journal", ".db"))}

    shutil.copytree(source, destination, ignore=transient)
    for database in source.rglob("*.db"):
        target = destination / database.relative_to(source)
        reader = contextlib.closing(sqlite3.connect(database))
        with reader as source_db, contextlib.closing(sqlite3.connect(target)) as target_db:
            source_db.backup(target_db)


@pytest.fixture
def study_copy(searched: Path, tmp_path: Path) -> Path:
    """A private copy of the searched study, for tests that change it."""
    copy_study_folder(searched.parent, tmp_path / "copy")
    return tmp_path / "copy" / searched.name


def hold_readers(reasons: dict[int, str]) -> dict[int, str]:
    """Trial number -> the command whose hold keeps its checkpoint, from `hpo gc`'s reasons
    ("" for a trial kept for another reason)."""
    held = re.compile(r"being read by (.+?)(?: \(.*\))?, held until \d\d:\d\d UTC")
    return {n: m.group(1) if (m := held.fullmatch(why)) else "" for n, why in reasons.items()}
