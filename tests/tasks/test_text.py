"""The text task on the user's own data: a three-class CSV and a three-class folder."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from hpo.config import load_study_config
from hpo.data import text_sources
from hpo.ensemble import build_ensemble
from hpo.ensemble.exporter import export_built_ensemble
from hpo.errors import DataError
from hpo.search import run_search
from hpo.study import search_space
from hpo.tasks import get_task

if TYPE_CHECKING:
    from pathlib import Path

WORDS = {
    "cooking": ["recipe", "oven", "bake", "flour", "simmer"],
    "sports": ["goal", "match", "team", "coach", "score"],
    "travel": ["flight", "hotel", "beach", "passport", "museum"],
}
FILLER = ["the", "a", "was", "and", "it", "we", "very", "then", "there"]
STUDY = """
name = "topics"
task = "text"
n_trials = {n_trials}

[sampler]
seed = 5
startup_trials = 2

[pruner]
kind = "none"

[data]
path = "{path}"
{extra}
val_size = 30
seed = 0

[training]
max_epochs = 3
patience = 2
chance_epochs = 0

[space]
family = ["conv1d"]
vocab_size = [10000]
seq_len = [200]
embedding_dim = [32, 40]
filters = [32]
blocks = [1, 1]
branches = [1, 1]
dense_units = [0]
batch_size = [32]
learning_rate = [0.003, 0.01]
"""


def _texts(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(text, label, author) rows: each text mixes its topic's words into filler."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = list(WORDS)[i % 3]
        words = list(rng.choice(FILLER, 12)) + list(rng.choice(WORDS[topic], 4))
        rng.shuffle(words)
        rows.append((" ".join(words), topic, f"author{i % 25}"))
    return rows


def _study(folder: Path, path: Path, extra: str = "", n_trials: int = 2) -> Path:
    study = folder / "topics.toml"
    study.write_text(STUDY.format(path=path, extra=extra, n_trials=n_trials))
    return study


def _write_folder(root: Path, *, train: int, test: int) -> None:
    """`root/<split>/<topic>/NNNN.txt`: `train` and `test` texts of the three topics."""
    for split, n, seed in (("train", train, 2), ("test", test, 3)):
        for i, (text, label, _) in enumerate(_texts(n, seed)):
            path = root / split / label / f"{i:04d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def test_a_three_class_csv_with_groups_searches_and_ensembles(tmp_path: Path) -> None:
    columns = ["body", "topic", "author"]
    pd.DataFrame(_texts(150, 0), columns=columns).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(_texts(45, 1), columns=columns).to_csv(tmp_path / "test.csv", index=False)
    extra = (
        'test_path = "test.csv"\ntext_column = "body"\nlabel_column = "topic"\n'
        'group_column = "author"'
    )
    config = load_study_config(_study(tmp_path, tmp_path / "train.csv", extra))
    task = get_task("text")
    folder = task.prepare(config, None, search_space(task, config.space).shared)
    assert task.class_names(folder) == ["cooking", "sports", "travel"]
    assert task.build_context(folder) == {"classes": 3}

    summary = run_search(config, progress=False)
    assert summary.finished == 2
    study = optuna.load_study(study_name="topics", storage=config.storage_url)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    out = tmp_path / "ensemble"
    build_ensemble(config, study, top=2, out_dir=out)
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == ["cooking", "sports", "travel"]
    assert report["test_examples"] == 45
    assert set(report["test"]["ensemble"]["per_class_accuracy"]) == set(WORDS)
    assert report["test"]["ensemble"]["accuracy"] > 0.6  # chance is 1/3
    assert np.load(out / "test_predictions.npy").shape == (45, 3)

    # A test table changed since: an export cannot check its predictions, and says that the
    # test table is test_path's (it said "pass that data with --data", which replaces train's).
    export_built_ensemble(config, study, out, formats=["keras"])
    changed = pd.DataFrame(_texts(45, 1), columns=columns)
    changed.loc[0, "topic"] = "sports"  # a cooking text
    changed.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=r"test_path, which --data does not replace"):
        export_built_ensemble(config, study, out, formats=["keras"])


def test_a_three_class_text_folder_runs_a_study(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data", train=120, test=30)
    config = load_study_config(_study(tmp_path, tmp_path / "data"))
    summary = run_search(config, progress=False)
    assert summary.finished == 2 and summary.failed == 0
    study = optuna.load_study(study_name="topics", storage=config.storage_url)
    best = study.best_trial
    assert best.user_attrs["val_accuracy"] > 0.5


def test_augmented_copies_mask_drop_and_window_tokens_the_same_way_for_every_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.data import text_cache
    from hpo.tasks import text

    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 200, size=300)
    x = np.zeros((300, 200), dtype=np.int32)
    for row, length in enumerate(lengths):
        x[row, :length] = rng.integers(2, 5000, size=length)
    splits = type("Splits", (), {"x_train": x})
    monkeypatch.setattr(text, "load", lambda folder: splits)
    wide = {"vocab_size": 5000, "seq_len": 200}
    copies = text.augmented(tmp_path, wide, 2, seed=7)
    assert copies.shape == (600, 200)
    first, second = copies[:300], copies[300:]
    assert not np.array_equal(first, second)  # each copy altered anew
    np.testing.assert_array_equal(copies, text.augmented(tmp_path, wide, 2, seed=7))
    # A narrower trial gets the same copies, cut to its vocabulary and length.
    narrow = {"vocab_size": 1000, "seq_len": 100}
    np.testing.assert_array_equal(
        text.augmented(tmp_path, narrow, 2, seed=7), text_cache.derive(copies, 1000, 100)
    )
    # About a tenth of the tokens dropped (the rest close up, padding stays at the end) and a
    # tenth masked; half the reviews then cut to a window of 10-50% of what is left.
    kept = (first != 0).sum(axis=1)
    assert all(
        (row[:n] != 0).all() and (row[n:] == 0).all() for row, n in zip(first, kept, strict=True)
    )
    share = kept / lengths
    whole = share > 0.7
    assert 0.4 < whole.mean() < 0.6
    assert 0.85 < kept[whole].sum() / lengths[whole].sum() < 0.95
    assert share[~whole].min() >= 0.9 * 0.1 - 0.05 and share[~whole].max() < 0.5
    masked = (first == text_cache.OOV_ID).sum() / kept.sum()
    assert 0.08 < masked < 0.14
    # The kept tokens keep their order: a copy's unmasked tokens are a subsequence of its
    # original's.
    for row, n, original in zip(first[:20], kept, x, strict=False):
        rest = iter(original.tolist())
        assert all(token in rest for token in row[:n].tolist() if token != text_cache.OOV_ID)


def test_files_moved_inside_a_data_folder_are_prepared_again(tmp_path: Path) -> None:
    # The cache was keyed by the data folder's own size and time, which change only when an
    # entry directly in it does: texts moved from train/ to test/ (a split "fixed" after a
    # search) kept training and validating the next search on the old split, test texts
    # among them, and the fingerprint check passed on that stale cache.
    _write_folder(tmp_path / "data", train=60, test=15)
    config = load_study_config(_study(tmp_path, tmp_path / "data"))
    task = get_task("text")
    shared = search_space(task, config.space).shared
    folder = task.prepare(config, None, shared)
    rows = len(task.trial_data(folder, {"vocab_size": 10000, "seq_len": 200}).y_train)
    # Touching only test/ changes nothing the search read: the cache stands.
    (tmp_path / "data" / "test" / "sports" / "extra.txt").write_text("goal team coach")
    assert task.prepare(config, None, shared) == folder
    for i, moved in enumerate(sorted((tmp_path / "data" / "train" / "cooking").iterdir())[:3]):
        moved.rename(tmp_path / "data" / "test" / "cooking" / f"moved{i}.txt")
    again = task.prepare(config, None, shared)
    assert again != folder
    train = task.trial_data(again, {"vocab_size": 10000, "seq_len": 200})
    assert len(train.y_train) + len(train.y_val) == rows + 30 - 3


@pytest.mark.parametrize("layout", ["folder", "table"])
def test_data_held_out_under_other_rules_are_prepared_again(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache prepared before a row's copies went with its first (or a small class's share was
    # capped) held test rows in its training data, and a later search used it without a word.
    import hpo.tasks.text

    if layout == "folder":
        _write_folder(tmp_path / "data", train=60, test=0)
        source = tmp_path / "data" / "train"
    else:
        source = tmp_path / "all.csv"
        rows = _texts(60, 0)
        pd.DataFrame(rows, columns=["text", "label", "author"]).to_csv(source, index=False)
    config = load_study_config(_study(tmp_path, source))
    task = get_task("text")
    shared = search_space(task, config.space).shared
    folder = task.prepare(config, None, shared)
    assert task.prepare(config, None, shared) == folder
    monkeypatch.setattr(hpo.tasks.text, "HOLDOUT_RULES", 1)
    assert task.prepare(config, None, shared) != folder


def test_test_class_folders_unlike_trains_are_refused_before_any_work(tmp_path: Path) -> None:
    # hpo ensemble found them, after the search had spent its budget.
    from hpo.errors import ConfigError

    _write_folder(tmp_path / "data", train=30, test=9)
    (tmp_path / "data" / "test" / "sports").rename(tmp_path / "data" / "test" / "sport")
    config = load_study_config(_study(tmp_path, tmp_path / "data"))
    task = get_task("text")
    with pytest.raises(ConfigError, match=r"missing \['sports'\], unknown \['sport'\]"):
        task.prepare(config, None, search_space(task, config.space).shared)
    assert not config.cache_dir.exists()


def test_a_test_table_is_checked_by_its_header_before_the_search_and_by_its_labels_once_read(
    tmp_path: Path,
) -> None:
    # A test table without the label column was found by hpo ensemble only, after the search
    # had spent its budget. Its labels are not read before the search (nothing in the search
    # reads the test set): hpo ensemble refuses ones train does not have as it reads them.
    from hpo.errors import ConfigError

    rows = _texts(60, 0)
    train = pd.DataFrame({"text": [r[0] for r in rows], "label": [f"{i % 2}.0" for i in range(60)]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test = pd.DataFrame({"text": ["goal team", "oven bake", "hotel"], "label": ["1", "0", "2"]})
    test.rename(columns={"label": "y"}).to_csv(tmp_path / "test.csv", index=False)
    config = load_study_config(_study(tmp_path, tmp_path / "train.csv", 'test_path = "test.csv"'))
    task = get_task("text")
    shared = search_space(task, config.space).shared
    with pytest.raises(ConfigError, match=r"test\.csv has no column 'label' .*\['text', 'y'\]"):
        task.prepare(config, None, shared)
    with pytest.raises(ConfigError, match=r"no column 'label'"):
        run_search(config, progress=False)
    study = optuna.load_study(study_name="topics", storage=config.storage_url)
    assert {trial.state for trial in study.trials} <= {TrialState.WAITING}  # none ran
    test.to_csv(tmp_path / "test.csv", index=False)
    read: list[Path] = []
    real_read_table = text_sources.read_table

    def recorded(path: Path, *args: object, **kwargs: object) -> object:
        read.append(path)
        return real_read_table(path, *args, **kwargs)  # type: ignore[arg-type]

    shutil.rmtree(config.cache_dir)  # prepared again, from the tables
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_sources, "read_table", recorded)
        folder = task.prepare(config, None, shared)
    assert task.class_names(folder) == ["0", "1"]
    assert read == [tmp_path / "train.csv"]  # the search's data: train.csv alone
    with pytest.raises(ConfigError, match=r"test\.csv: .*unknown \['2'\], without examples \[\]"):
        task.load_test(config, None, folder)


def test_a_test_path_that_is_the_training_table_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    # It was read silently: the "test" score was measured on the rows the search trained on.
    from hpo.errors import ConfigError
    from hpo.tasks.text import _load_own_test

    pd.DataFrame(_texts(60, 0), columns=["text", "label", "author"]).to_csv(
        tmp_path / "train.csv", index=False
    )
    (tmp_path / "same.csv").symlink_to(tmp_path / "train.csv")
    task = get_task("text")
    for test_path in ("train.csv", "./same.csv"):
        extra = f'test_path = "{test_path}"'
        config = load_study_config(_study(tmp_path, tmp_path / "train.csv", extra))
        with pytest.raises(ConfigError, match=r"test_path .* is the training table .*train\.csv"):
            task.prepare(config, None, search_space(task, config.space).shared)
        assert not config.cache_dir.exists()
        # Nor is a study searched before the check scored on them (hpo ensemble, export).
        # Removing test_path would change its training rows: only a new study can.
        with pytest.raises(ConfigError, match=r"training table .* only for a new study \(a new"):
            _load_own_test(config, None, config.cache_dir)
    # --data naming the test table is the same mistake.
    config = load_study_config(_study(tmp_path, tmp_path / "other.csv", 'test_path = "same.csv"'))
    with pytest.raises(ConfigError, match=r"Set test_path to a table of other rows"):
        task.prepare(config, str(tmp_path / "train.csv"), search_space(task, config.space).shared)


def test_a_val_folder_is_the_validation_set_in_a_folder_and_an_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A valid/ folder beside train/ and test/ was never read: validation was cut from train/.
    import tarfile

    import hpo.tasks.text
    from hpo.errors import ConfigError

    data = tmp_path / "data"
    _write_folder(data, train=60, test=15)
    for i, (text, label, _) in enumerate(_texts(12, 4)):
        (data / "Valid" / label).mkdir(parents=True, exist_ok=True)
        (data / "Valid" / label / f"{i:04d}.txt").write_text(text)
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data, arcname="data")
    config = load_study_config(_study(tmp_path, data))
    task = get_task("text")
    shared = search_space(task, config.space).shared
    wide = {"vocab_size": 10000, "seq_len": 200}
    for source in (str(archive), None):
        folder = task.prepare(config, source, shared)
        trial = task.trial_data(folder, wide)
        assert len(trial.y_train) == 60 and np.bincount(trial.y_val).tolist() == [4, 4, 4]
        assert sorted(task.validation(folder).raw) == sorted(t for t, _, _ in _texts(12, 4))
    monkeypatch.setattr(hpo.tasks.text, "VAL_SPLIT_SETTINGS", {})
    assert task.prepare(config, None, shared) != folder
    monkeypatch.undo()
    # Classes beyond train's are refused before any work.
    (data / "Valid" / "music").mkdir()
    (data / "Valid" / "music" / "0.txt").write_text("guitar")
    with pytest.raises(ConfigError, match=r"Valid: .*missing \[\], unknown \['music'\]"):
        task.prepare(config, None, shared)


def test_a_class_too_small_after_the_held_out_test_split_is_named_so(tmp_path: Path) -> None:
    from hpo.errors import ConfigError

    _write_folder(tmp_path / "data", train=30, test=0)
    (tmp_path / "data" / "train" / "rare").mkdir()
    for i in range(2):
        (tmp_path / "data" / "train" / "rare" / f"{i}.txt").write_text(f"rare text {i}")
    config = load_study_config(_study(tmp_path, tmp_path / "data"))
    task = get_task("text")
    with pytest.raises(ConfigError, match=r"'rare' \(1\), counted after the test split was held"):
        task.prepare(config, None, search_space(task, config.space).shared)


def test_an_older_studys_test_path_relative_to_an_unknown_folder_is_not_read_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An hpo before test_path was recorded absolute recorded it relative to the folder its
    # search ran in; read from the folder a command runs in, it was another table (or none,
    # with an error that said to remove test_path, which changes the study's test split).
    from hpo.config import config_from_dict, config_to_dict
    from hpo.errors import ConfigError

    rows = _texts(60, 0)
    pd.DataFrame(rows, columns=["text", "label", "author"]).to_csv(tmp_path / "train.csv")
    study = load_study_config(_study(tmp_path, tmp_path / "train.csv", 'test_path = "test.csv"'))
    recorded = config_to_dict(study)
    recorded["data"]["test_path"] = "data/test.csv"
    config = config_from_dict(recorded)  # as read from the study's store
    here = tmp_path / "here"
    (here / "data").mkdir(parents=True)
    pd.DataFrame(rows[:6], columns=["text", "label", "author"]).to_csv(here / "data/test.csv")
    monkeypatch.chdir(here)
    task = get_task("text")
    with pytest.raises(ConfigError, match=r"test_path data/test\.csv relative to the folder") as e:
        task.prepare(config, None, search_space(task, config.space).shared)
    assert "--study FILE" in str(e.value) and "remove" not in str(e.value)
