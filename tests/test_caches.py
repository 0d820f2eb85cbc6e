"""`hpo gc`'s other half: the prepared data a study no longer uses go, nothing in use does."""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hpo.caches import sweep_caches
from hpo.config import load_study_config
from hpo.data import array_cache, provenance
from hpo.store import open_storage
from hpo.study import search_space
from hpo.tasks import get_task

from .conftest import write_study

if TYPE_CHECKING:
    from hpo.config import StudyConfig


_DAY = 24 * 3600.0


def _prepared(tmp_path: Path, data: Path, **data_settings: Any) -> tuple[StudyConfig, Path]:
    """The tiny IMDB study's settings (with `data_settings` in its `[data]`) and the cache its
    preparation wrote."""
    config = load_study_config(write_study(tmp_path, data))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, **data_settings))
    task = get_task(config.task)
    folder = task.prepare(config, str(data), search_space(task, config.space).shared)
    assert (folder / array_cache.META_NAME).is_file()
    return config, folder


def _searched_study(config: StudyConfig, data: Path) -> optuna.Study:
    """The study, as a search of `data` leaves it: its data source recorded."""
    study = optuna.create_study(
        study_name=config.name, storage=open_storage(config.storage_url, create=True)
    )
    provenance.record(study, "0123456789abcdef", data, given=False)
    return study


def _age(folder: Path, seconds: float) -> None:
    """Makes `folder` and everything in it look last written (and a cache last used)
    `seconds` ago."""
    when = time.time() - seconds
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when))


def _leftover(cache_dir: Path, age: float) -> Path:
    """A writer's temporary folder with a file in it, last written `age` seconds ago."""
    folder = cache_dir / f".tmp-imdb-{uuid.uuid4().hex[:16]}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "x_train.npy").write_bytes(bytes(3000))
    _age(folder, age)
    return folder


def _one_stale(tmp_path: Path, data: Path) -> tuple[StudyConfig, optuna.Study, Path, Path]:
    """A study on `data`, its current cache, and a cache of other settings unused for two days."""
    _, stale = _prepared(tmp_path, data, val_size=90)
    config, current = _prepared(tmp_path, data)
    study = _searched_study(config, data)
    _age(stale, 2 * _DAY)
    return config, study, current, stale


def _stale_caches(tmp_path: Path, data: Path) -> tuple[StudyConfig, optuna.Study, dict[str, Path]]:
    """A study whose cache folder holds its current cache, two of other settings (one unused
    for two days, one used an hour ago), an old and a fresh temporary folder, and a folder
    that hpo did not write."""
    _, stale = _prepared(tmp_path, data, val_size=90)
    _, recent = _prepared(tmp_path, data, seed=7)
    config, current = _prepared(tmp_path, data)
    cache_dir = config.cache_dir
    folders = {
        "current": current,
        "stale": stale,
        "recent": recent,
        "old tmp": _leftover(cache_dir, 2 * 3600),
        "fresh tmp": _leftover(cache_dir, 60),
        "mine": cache_dir / "mine",
    }
    folders["mine"].mkdir()
    _age(folders["mine"], 30 * _DAY)
    _age(folders["stale"], 2 * _DAY)
    _age(folders["recent"], 3600)
    _age(folders["current"], 3 * _DAY)  # what a search of the current settings reads, however old
    return config, _searched_study(config, data), folders


def test_gc_dry_run_lists_stale_caches_and_deletes_nothing(fake_imdb: Path, tmp_path: Path) -> None:
    config, study, folders = _stale_caches(tmp_path, fake_imdb)
    before = sorted(p.name for p in config.cache_dir.iterdir())

    sweep = sweep_caches(config, study, dry_run=True)
    assert set(sweep.removed) == {folders["stale"].name, folders["old tmp"].name}
    assert sweep.sizes[folders["old tmp"].name] == 3000
    assert sweep.sizes[folders["stale"].name] == sum(
        p.stat().st_size for p in folders["stale"].iterdir()
    )
    assert sweep.freed_bytes == sum(sweep.sizes.values()) > 3000
    assert set(sweep.kept) == {folders[k].name for k in ("current", "recent", "fresh tmp")}
    assert sweep.kept[folders["current"].name] == "the cache of the study's current settings"
    assert sweep.kept[folders["recent"].name] == "used 1h 00m ago"
    assert sweep.kept[folders["fresh tmp"].name].startswith("changed 1m ")
    assert sorted(p.name for p in config.cache_dir.iterdir()) == before


def test_gc_removes_only_stale_caches_and_the_current_one_is_used_again(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, study, folders = _stale_caches(tmp_path, fake_imdb)

    sweep = sweep_caches(config, study)
    assert set(sweep.removed) == {folders["stale"].name, folders["old tmp"].name}
    left = {"current", "recent", "fresh tmp", "mine"}
    assert sorted(p.name for p in config.cache_dir.iterdir()) == sorted(
        folders[k].name for k in left
    )
    assert sweep_caches(config, study).removed == {}

    # The next run finds the current cache whole and reads no data to prepare it again.
    def read_again(*_: object) -> None:
        raise AssertionError("the study's data were prepared again")

    monkeypatch.setattr("hpo.tasks.imdb.read_split", read_again)
    task = get_task(config.task)
    again = task.prepare(config, str(fake_imdb), search_space(task, config.space).shared)
    assert again == folders["current"]
    params = {"vocab_size": 10000, "seq_len": 200}
    assert task.trial_data(again, params).x_train.shape[1] == 200

    # A cache of other settings that a search (a worker started before the study file changed)
    # prepares or a trial loads is in use again: its time is refreshed, and it stays.
    other = dataclasses.replace(config, data=dataclasses.replace(config.data, seed=7))
    _age(folders["recent"], 2 * _DAY)
    assert (
        task.prepare(other, str(fake_imdb), search_space(task, config.space).shared)
        == (folders["recent"])
    )
    assert re.fullmatch(r"used \d+s ago", sweep_caches(config, study).kept[folders["recent"].name])
    _age(folders["recent"], 2 * _DAY)
    task.trial_data(folders["recent"], params)
    assert re.fullmatch(r"used \d+s ago", sweep_caches(config, study).kept[folders["recent"].name])


def test_gc_keeps_a_fresh_or_held_temporary_folder_and_removes_an_old_one(
    fake_imdb: Path, tmp_path: Path
) -> None:
    config, _ = _prepared(tmp_path, fake_imdb)
    study = _searched_study(config, fake_imdb)
    fresh = _leftover(config.cache_dir, 59 * 60)
    old = _leftover(config.cache_dir, 61 * 60)
    # A writer stopped (SIGSTOP, a laptop asleep) for hours, still alive: it holds its lock.
    held = _leftover(config.cache_dir, 5 * 3600)
    descriptor = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        sweep = sweep_caches(config, study)
    finally:
        os.close(descriptor)
    assert list(sweep.removed) == [old.name]
    assert sweep.kept[held.name] == "a live process is writing it"
    assert fresh.is_dir() and held.is_dir() and not old.exists()
    # Once its writer is gone, the lock with it, the old folder goes.
    assert list(sweep_caches(config, study).removed) == [held.name]
    assert fresh.is_dir()


def test_gc_removes_no_folder_of_a_caches_name_that_holds_anything_hpo_does_not_write(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # The study's cache/ a link to a folder of the user's: a folder there named like a cache,
    # without hpo's record, old, went as "left by a writer or a deletion that stopped".
    config, _ = _prepared(tmp_path, fake_imdb)
    study = _searched_study(config, fake_imdb)
    elsewhere = tmp_path / "elsewhere"
    config.cache_dir.rename(elsewhere)
    config.cache_dir.symlink_to(elsewhere)
    photos = elsewhere / "photos-0123456789abcdef"
    photos.mkdir()
    (photos / "img.txt").write_text("keep")
    # Arrays beside a file of another kind: not a cache hpo wrote either.
    mixed = _leftover(elsewhere, 0)
    (mixed / "notes.txt").write_text("mine")
    old = _leftover(elsewhere, 0)
    for folder in (photos, mixed, old):
        _age(folder, 30 * _DAY)
    sweep = sweep_caches(config, study)
    assert list(sweep.removed) == [old.name]
    assert sweep.kept[photos.name].startswith("not hpo's: it holds files other than a cache's")
    assert (photos / "img.txt").read_text() == "keep" and (mixed / "notes.txt").is_file()


def test_a_writer_holds_its_temporary_folder_until_the_cache_is_in_place(tmp_path: Path) -> None:
    held = []

    def save(path: Path, array: np.ndarray) -> None:
        held.append(array_cache.writer_alive(path.parent))
        with path.open("wb") as file:
            np.lib.format.write_array(file, array)

    folder = tmp_path / "cache" / "arrays-0123456789abcdef"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hpo.data.array_cache.np.save", save)
        array_cache.save_arrays(folder, {"x": np.zeros(3)}, {})
    assert held == [True]
    assert array_cache.cached(folder) and not array_cache.writer_alive(folder)


def test_a_sweep_stopped_half_way_leaves_no_cache_that_looks_whole(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, study, current, stale = _one_stale(tmp_path, fake_imdb)

    def killed(path: Path, *_: object, **__: object) -> None:
        (Path(path) / array_cache.META_NAME).unlink()
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("hpo.data.array_cache.shutil.rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            sweep_caches(config, study)
    assert not stale.exists() and not array_cache.cached(stale)
    (aside,) = config.cache_dir.glob(f".removing-{stale.name}-*")
    assert list(aside.glob("*.npy"))  # what was left of it, under a name no reader takes
    # The next sweep finishes the job, once nothing has written there for an hour.
    _age(aside, 2 * 3600)
    assert list(sweep_caches(config, study).removed) == [aside.name]
    assert sorted(p.name for p in config.cache_dir.iterdir()) == [current.name]


def test_gc_removes_no_cache_a_running_trial_may_read_nor_any_when_the_data_are_gone(
    fake_imdb: Path, tmp_path: Path
) -> None:
    data = Path(shutil.copytree(fake_imdb, tmp_path / "data" / "aclImdb"))
    config, study, current, stale = _one_stale(tmp_path, data)
    # A trial running for three days, on a search of older settings: its cache, used two days
    # ago, may be what it reads.
    began = datetime.datetime.now() - datetime.timedelta(days=3)
    study.add_trial(
        optuna.trial.FrozenTrial(
            number=0,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=began,
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )
    )
    sweep = sweep_caches(config, study)
    assert sweep.removed == {} and sweep.kept[stale.name] == "used 48h 00m ago"

    # The study's data gone (moved, or a disk not mounted): which cache is current is
    # unknown, so none goes; an old temporary folder still does.
    fresh_study = optuna.create_study(study_name="other", storage=config.storage_url)
    provenance.record(fresh_study, "0123456789abcdef", data, given=False)
    shutil.rmtree(data)
    old = _leftover(config.cache_dir, 2 * 3600)
    sweep = sweep_caches(config, fresh_study)
    assert list(sweep.removed) == [old.name]
    assert sweep.unknown is not None and "records no data source" in sweep.unknown
    assert sweep.kept == {
        name: "the study's current cache is unknown" for name in (current.name, stale.name)
    }


def test_a_cache_a_search_uses_while_the_sweep_decides_stays(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, study, _, stale = _one_stale(tmp_path, fake_imdb)
    discard = array_cache.discard

    # A search of the older settings finds the cache after the sweep read its time, before
    # the sweep renames it.
    def used_first(folder: Path, *args: Any, **kwargs: Any) -> bool:
        assert array_cache.cached(folder)
        return discard(folder, *args, **kwargs)

    monkeypatch.setattr("hpo.data.array_cache.discard", used_first)
    sweep = sweep_caches(config, study)
    assert sweep.removed == {}
    assert sweep.kept[stale.name] == "used while the sweep removed it"
    assert array_cache.cached(stale)
    assert not list(config.cache_dir.glob(".removing-*"))


def _saved(tmp_path: Path) -> Path:
    folder = tmp_path / "cache" / "arrays-0123456789abcdef"
    array_cache.save_arrays(folder, {"x": np.zeros(3), "y": np.ones(2)}, {})
    return folder


def test_a_cache_that_goes_while_it_is_checked_is_no_cache_and_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _saved(tmp_path)
    aside = tmp_path / "cache" / f".removing-{folder.name}-01234567"
    load = np.load

    def swept_meanwhile(path: Path, *args: Any, **kwargs: Any) -> Any:
        if folder.exists():
            os.rename(folder, aside)  # hpo gc's sweep
        return load(path, *args, **kwargs)

    monkeypatch.setattr("hpo.data.array_cache.np.load", swept_meanwhile)
    assert array_cache.cached(folder) is False
    assert sorted(p.name for p in aside.iterdir()) == ["meta.json", "x.npy", "y.npy"]
    assert "damaged" not in caplog.text
    monkeypatch.undo()

    # Gone after the check, before its use was recorded: no cache either.
    os.rename(aside, folder)
    utime = os.utime

    def swept_then(path: Any, *args: Any, **kwargs: Any) -> None:
        if folder.exists():
            os.rename(folder, aside)
        utime(path, *args, **kwargs)

    monkeypatch.setattr("hpo.data.array_cache.os.utime", swept_then)
    assert array_cache.cached(folder) is False
    assert aside.is_dir()


def test_a_damaged_cache_replaced_while_it_is_checked_is_not_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _saved(tmp_path)
    for path in folder.glob("*.npy"):
        path.write_bytes(b"garbled")
    old = tmp_path / "old"
    load = np.load

    # Another process removes the damaged cache and writes a whole one in its place.
    def replaced_meanwhile(path: Path, *args: Any, **kwargs: Any) -> Any:
        if not old.exists():
            os.rename(folder, old)
            array_cache.save_arrays(folder, {"x": np.zeros(3), "y": np.ones(2)}, {})
            return load(old / Path(path).name, *args, **kwargs)
        return load(path, *args, **kwargs)

    monkeypatch.setattr("hpo.data.array_cache.np.load", replaced_meanwhile)
    assert array_cache.cached(folder) is False
    monkeypatch.undo()
    assert array_cache.cached(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
