from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.config import (
    UNLIMITED_TRIALS,
    PrunerKind,
    config_from_dict,
    config_to_dict,
    load_study_config,
)
from hpo.errors import ConfigError

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.mark.parametrize("name", ["imdb.toml", "imdb-smoke.toml"])
def test_shipped_study_files_load(name: str) -> None:
    config = load_study_config(STUDIES / name)
    assert config.name == Path(name).stem
    assert config.study_dir == STUDIES / config.name
    assert config.storage_url == f"sqlite:///{(STUDIES / config.name / 'study.db').resolve()}"
    assert config.artifact_dir == STUDIES / config.name / "artifacts"
    # The default study judges each trial within its family (the smoke study, with two
    # start-up trials in all, stays study-wide).
    assert config.pruner.by_family is (name == "imdb.toml")


def test_values_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nn_trials = 7\n[pruner]\nkind = "hyperband"\n[data]\npath = "d.tar.gz"\n'
    )
    config = load_study_config(path)
    assert config.n_trials == 7
    assert config.pruner.kind is PrunerKind.HYPERBAND
    assert config.training.max_epochs == 20
    assert config.data.path == str(tmp_path / "d.tar.gz")
    assert config.with_overrides(n_trials=9, timeout=None).n_trials == 9


def test_only_a_budget_with_the_unlimited_trial_count_has_no_trial_limit(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n')
    config = load_study_config(path)
    assert config.trial_limit == 50
    assert config.with_overrides(n_trials=UNLIMITED_TRIALS).trial_limit == UNLIMITED_TRIALS
    assert config.with_overrides(n_trials=UNLIMITED_TRIALS, budget=60.0).trial_limit is None
    assert config.with_overrides(n_trials=9, budget=60.0).trial_limit == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "s"\nn_trial = 3\n', r"unknown key 'n_trial'\. Did you mean 'n_trials'\?"),
        (
            'name = "s"\npatience = 3\n',
            r"unknown key 'patience'\. It is a key of the \[training\] table: move it under",
        ),
        ('name = "s"\nseed = 3\n', r"It is a key of the \[sampler\] or the \[data\] table"),
        (
            'name = "s"\n[data]\nval_size = 10\nmax_epochs = 3\n',
            r"unknown key 'data\.max_epochs'\. It is a key of the \[training\] table",
        ),
        (
            'name = "s"\n[data]\nval_size = 10\nbudget = "1h"\n',
            r"unknown key 'data\.budget'\. It is a top-level key: move it above",
        ),
        (
            'name = "s"\n[data]\nval_size = 0.1\n',
            r"'data\.val_size' must be a whole number \(a count of examples, not a share",
        ),
        (
            'name = "s"\n[training]\nmax_epoch = 3\n',
            r"unknown key 'training.max_epoch'.*training.max_epochs",
        ),
        ('name = "s"\nn_trials = "ten"\n', r"'n_trials' must be of type int, got 'ten'"),
        ('name = "s"\nn_trials = 0\n', r"'n_trials' must be >= 1, got 0"),
        ('name = "s"\n[pruner]\nkind = "mediann"\n', r"'pruner.kind' must be one of 'median'"),
        ('name = "s"\nenqueue_defaults = 1\n', r"'enqueue_defaults' must be of type bool"),
        ('name = "s"\n[space]\nfilters = 32\n', r"'space.filters' must be a non-empty list"),
        ('name = "s/x"\n', r"'name' must be a name of ASCII letters"),
        ('name = ".."\n', r"'name' must be a name of ASCII letters.*got '\.\.'"),
        ('name = "-x"\n', r"'name' must be a name of ASCII letters"),
        # A long name of allowed characters was told about the characters.
        (f'name = "{"a" * 101}"\n', r"'name' must be at most 100 characters .*not 101, got 'a"),
        ('name = "s"\n[training]\nprecision = "fp8"\n', r"'training.precision' must be one of"),
        ('name = "s"\nmax_trial_minutes = 0\n', r"'max_trial_minutes' must be a finite number > 0"),
        # An empty path was the folder the command ran in (Path("") is ".").
        ('name = "s"\nartifacts = ""\n', r"'artifacts' must name a file or folder, got ''"),
        ('name = "s"\nstorage = " "\n', r"'storage' must name a file or folder, got ' '"),
        ('name = "s"\n[data]\npath = ""\n', r"'data.path' must name a file or folder, got ''"),
        ('name = "s"\n[data]\ntest_path = ""\n', r"'data.test_path' must name a file or"),
        # inf passed, and every trial failed on a limit it could not state.
        (
            'name = "s"\nmax_trial_minutes = inf\n',
            r"'max_trial_minutes' must be a finite .*got inf",
        ),
        ('name = "s"\ntimeout = inf\n', r"'timeout' must be a finite number > 0 seconds.*got inf"),
        ('name = "s"\nbudget = inf\n', r"'budget' must be a duration greater than zero.*got inf"),
        ('name = "s"\ntraining = 3\n', r"'training' must be a table"),
        ("name = \n", r"not valid TOML"),
        (
            'name = "s"\n[training]\nobjective = "val_my_score"\n',
            r"'training.direction' must be 'max' or 'min' for objective 'val_my_score', which "
            r"is no metric Keras builds in",
        ),
        (
            'name = "s"\n[training]\nobjective = "val_r2_score"\ndirection = "min"\n',
            r"'val_r2_score' is better maximized: its direction must be 'max' \(or left out\), "
            r"got 'min'\. For a metric of your own that Keras logs as 'r2_score', give it a name",
        ),
        (
            'name = "s"\n[training]\nobjective = "val_loss"\ndirection = "max"\n',
            r"'val_loss' is better minimized: its direction must be 'min'",
        ),
        ('name = "s"\n[training]\nobjective = ""\n', r"'training.objective' must be a metric"),
        (
            'name = "s"\n[data]\nencoding = "utf8-bom"\n',
            r"'data.encoding' must be a text encoding Python knows, such as 'utf-8', 'cp1252'",
        ),
        ('name = "s"\n[data]\nencoding = "base64"\n', r"'data.encoding' must be a text"),
        ('name = "s"\n[data]\nencoding = "utf-8\\u0000"\n', r"'data.encoding' must be a text"),
        # Python's bare RuntimeError("Could not determine home directory.") before.
        (
            'name = "s"\n[data]\npath = "~no_such_user_hpo/x"\n',
            r"data\.path is '~no_such_user_hpo/x', whose home folder cannot be found",
        ),
        (
            'name = "s"\nartifacts = "~no_such_user_hpo/a"\n',
            r"artifacts is '~no_such_user_hpo/a', whose home folder cannot be found",
        ),
    ],
)
def test_bad_study_files_name_the_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_study_config(path)


@pytest.mark.parametrize(
    ("objective", "mode"),
    [
        ("val_accuracy", "max"),
        ("val_loss", "min"),
        ("val_auc", "max"),
        ("val_r2_score", "max"),
        ("val_f1_score", "max"),
        ("val_mean_io_u", "max"),
        ("val_mae", "min"),
        ("val_root_mean_squared_error", "min"),
    ],
)
def test_a_keras_metrics_direction_goes_without_saying(
    tmp_path: Path, objective: str, mode: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[training]\nobjective = "{objective}"\n')
    assert load_study_config(path).training.mode == mode


def test_a_study_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes('name = "bom"\nbudget = "5m"\n'.encode("utf-8-sig"))
    config = load_study_config(path)
    assert (config.name, config.budget) == ("bom", 300)


def test_a_relative_sqlite_file_and_artifact_folder_are_the_study_files_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read from the current folder, the same study file run from another one made a second,
    # empty study there: a fresh budget, trials from 0 again.
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "s.toml").write_text('storage = "sqlite:///db/s.db?timeout=5"\nartifacts = "arts"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_study_config(Path("../proj/s.toml"))
    assert config.storage_url == f"sqlite:///{folder.resolve()}/db/s.db?timeout=5"
    assert config.artifact_location == str(folder.resolve() / "arts")
    # Absolute paths, other databases and buckets are kept as written.
    for storage in ("sqlite:////data/s.db", "postgresql://u@db/hpo"):
        (folder / "s.toml").write_text(f'storage = "{storage}"\nartifacts = "s3://bucket"\n')
        config = load_study_config(folder / "s.toml")
        assert (config.storage_url, config.artifact_location) == (storage, "s3://bucket")


def test_the_data_paths_a_study_records_are_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # test_path was recorded as the search read it, 'studies/../data/test.csv' from the folder
    # it ran in, while its data source was recorded absolute: `hpo export --storage URL` from
    # any other folder found no test table, or another table of the same relative path.
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "t.toml").write_text(
        'name = "t"\ntask = "text"\n[data]\npath = "../data/train.csv"\n'
        'test_path = "../data/test.csv"\n'
    )
    monkeypatch.chdir(tmp_path)
    recorded = config_to_dict(load_study_config(Path("studies/t.toml")))["data"]
    assert recorded["path"] == str(tmp_path.resolve() / "data" / "train.csv")
    assert recorded["test_path"] == str(tmp_path.resolve() / "data" / "test.csv")
    # A configuration made in Python names its files from the folder its search runs in.
    made = config_from_dict({"name": "p", "data": {"test_path": "held/test.csv"}})
    assert config_to_dict(made)["data"]["test_path"] == str(tmp_path.resolve() / "held/test.csv")


def test_a_relative_storage_an_older_hpo_read_from_the_working_folder_is_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Before a64489b they were read from the folder hpo ran in: after an upgrade, the same
    # command made a second, empty study beside the study file, and lost the checkpoints.
    (tmp_path / "studies").mkdir()
    (tmp_path / "runs" / "arts").mkdir(parents=True)
    (tmp_path / "runs" / "s.db").write_bytes(b"")
    study = tmp_path / "studies" / "s.toml"
    study.write_text('storage = "sqlite:///runs/s.db"\nartifacts = "runs/arts"\n')
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="hpo.config"):
        config = load_study_config(study)
    assert config.storage_url == f"sqlite:///{tmp_path.resolve()}/runs/s.db"
    assert config.artifact_location == str(tmp_path.resolve() / "runs" / "arts")
    assert caplog.text.count("where there is nothing; it is read from") == 2
    # Once they are beside the study file, they are read from there, without a word.
    (tmp_path / "runs").rename(tmp_path / "studies" / "runs")
    config = load_study_config(study)
    assert config.storage_url == f"sqlite:///{tmp_path.resolve()}/studies/runs/s.db"


def test_missing_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist\. Pass an existing file"):
        load_study_config(tmp_path / "nope.toml")
    # A relative path from another folder: said relative to where the command runs (the hint
    # was --study studies/imdb.toml, which does not exist there either).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as missing:
        load_study_config("studies/imdb-smoke.toml")
    assert f"does not exist (a path relative to {tmp_path}, where this runs)" in str(missing.value)
    assert "run from the project's root folder" in str(missing.value)
    # A folder (tab completion stopping at studies/) was a raw IsADirectoryError.
    (tmp_path / "studies").mkdir()
    with pytest.raises(ConfigError, match=r"is a folder; give a study file \(TOML\) in it\.$"):
        load_study_config(tmp_path / "studies")
    (tmp_path / "studies" / "imdb.toml").write_text("")
    with pytest.raises(ConfigError, match=r"such as .*studies/imdb.toml \(it holds imdb.toml\)"):
        load_study_config(tmp_path / "studies")


def test_the_configuration_stored_in_a_study_never_holds_the_storage_password(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n')
    url = "postgresql+psycopg://hpo:s3cret-pw@db.example:5432/studies"
    stored = config_to_dict(load_study_config(path).with_overrides(storage=url))
    assert stored["storage"] == "postgresql+psycopg://hpo:***@db.example:5432/studies"
    assert "s3cret-pw" not in json.dumps(stored)
    # What a later command rebuilds from the store still names the server, user and database.
    assert config_from_dict(stored).storage_url == stored["storage"]


# Every bounded key: the last value allowed, the first refused, and what the error says.
BOUNDS = [
    ("sampler", "startup_trials", 0, -1, ">= 0"),
    # Optuna's samplers and NumPy take no other seed: a traceback after the study was made.
    ("sampler", "seed", 0, -1, "from 0 to 4294967295"),
    ("sampler", "seed", 2**32 - 1, 2**32, "from 0 to 4294967295"),
    ("data", "seed", 0, -1, ">= 0"),
    ("pruner", "startup_trials", 0, -1, ">= 0"),
    ("pruner", "warmup_epochs", 0, -1, ">= 0"),
    ("data", "val_size", 2, 1, ">= 2"),
    ("data", "train_size", 0, -1, ">= 0 (0 means all)"),
    ("data", "image_size", [8, 4096], [7, 32], "[height, width] in pixels, each from 8 to 4096"),
    ("data", "image_size", [4096, 8], [32, 4097], "[height, width] in pixels, each from 8 to 4096"),
    ("data", "image_size", [32, 32], [32, 32, 3], "[height, width] in pixels, each from 8 to 4096"),
    ("training", "max_epochs", 1, 0, ">= 1"),
    ("training", "patience", 1, 0, ">= 1"),
    ("training", "lr_patience", 1, 0, ">= 1"),
    ("training", "lr_factor", 0.999, 1.0, "in (0, 1)"),
    ("training", "lr_factor", 0.001, 0.0, "in (0, 1)"),
    ("training", "chance_epochs", 0, -1, ">= 0"),
    ("training", "chance_margin", 0.0, -0.01, "[0, 0.5)"),
    ("training", "chance_margin", 0.49, 0.5, "[0, 0.5)"),
    (None, "n_trials", 1, 0, ">= 1"),
    (None, "timeout", 0.5, 0.0, "a finite number > 0 seconds (leave it out for no limit)"),
    (None, "max_trial_minutes", 0.5, 0.0, "a finite number > 0 (leave it out for no limit)"),
    (None, "workers", 1, 0, ">= 1"),
    (None, "trials_per_gpu", 1, 0, ">= 1"),
    (None, "max_failures", 1, 0, ">= 1"),
    (
        None,
        "keep_checkpoints",
        1,
        0,
        ">= 1 (the best trials' checkpoints to keep; leave it out to keep all)",
    ),
]


def _toml(value: object) -> str:
    return json.dumps(value)  # TOML's numbers and arrays of numbers are JSON's


@pytest.mark.parametrize(("table", "key", "edge", "past", "expected"), BOUNDS)
def test_each_bound_takes_its_edge_and_refuses_one_past_it(
    tmp_path: Path, table: str | None, key: str, edge: object, past: object, expected: str
) -> None:
    def study(value: object) -> Path:
        path = tmp_path / "s.toml"
        line = f"{key} = {_toml(value)}\n"
        path.write_text('name = "s"\n' + (f"[{table}]\n{line}" if table else line))
        return path

    config = load_study_config(study(edge))
    loaded = getattr(getattr(config, table) if table else config, key)
    assert loaded == edge
    name = f"{table}.{key}" if table else key
    # Keys typed float hold what the file says as a float.
    shown = float(past) if isinstance(edge, float) else past  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as refused:
        load_study_config(study(past))
    assert str(refused.value) == (
        f"{tmp_path / 's.toml'}: '{name}' must be {expected}, got {shown!r}."
    )


def test_pruning_within_each_family_is_off_unless_asked_and_builds_the_family_pruner(
    tmp_path: Path,
) -> None:
    from hpo.study import FamilyPruner, make_pruner

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n')
    assert not load_study_config(path).pruner.by_family
    assert not isinstance(make_pruner(load_study_config(path)), FamilyPruner)
    path.write_text('name = "s"\n[pruner]\nby_family = true\n')
    config = load_study_config(path)
    assert config.pruner.by_family and isinstance(make_pruner(config), FamilyPruner)
    # A study recorded before the setting existed reads back with it off.
    recorded = config_to_dict(config)
    del recorded["pruner"]["by_family"]
    assert config_from_dict(recorded).pruner.by_family is False


def test_a_trials_seed_stays_within_the_seeds_numpy_takes() -> None:
    import numpy as np

    from hpo.config import SamplerConfig

    assert SamplerConfig(seed=7).trial_seed(3) == 10
    last = SamplerConfig(seed=2**32 - 1)
    assert last.trial_seed(3) == 2
    np.random.seed(last.trial_seed(0))  # as keras.utils.set_random_seed seeds NumPy


def test_the_reprs_of_a_study_and_a_search_mask_the_storage_password() -> None:
    import optuna

    from hpo.api import Study
    from hpo.config import StudyConfig
    from hpo.search.workers import SearchSummary

    url = "postgresql+psycopg://hpo:s3cretPW@db.example/hpo"
    config = StudyConfig(name="t7", storage=url)
    summary = SearchSummary(
        study_name="t7", storage_url=url, finished=1, failed=0, best_number=0, best_value=0.5
    )
    study = Study(config, optuna.create_study())
    for shown in (repr(config), str(config), repr(study), repr(summary)):
        assert "s3cretPW" not in shown
        assert "'postgresql+psycopg://hpo:***@db.example/hpo'" in shown
    assert repr(config).startswith("StudyConfig(name='t7', task='imdb', storage=")
    assert config.storage == url  # masked only where shown


def test_a_study_named_after_its_file_says_so_when_the_name_does_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "my study.toml"
    path.write_text("n_trials = 2\n")
    with pytest.raises(ConfigError, match=r"has no 'name' key, so the study is named after the"):
        load_study_config(path)
    with pytest.raises(ConfigError, match=r'Add name = "my-study" to the study file'):
        load_study_config(path)
    # The default study file, missing where a command runs: said as the default, not as a
    # file the user gave, with how to run it.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as missing:
        load_study_config("studies/imdb.toml")
    message = str(missing.value)
    assert "no study file was given, and the default one, studies/imdb.toml" in message
    assert str(tmp_path) in message and "--study FILE" in message
    assert "for example --study studies/imdb.toml" not in message
