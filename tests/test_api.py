"""`hpo.search` and the other library functions, run as a user's script runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .conftest import run_user_script, write_study

if TYPE_CHECKING:
    from pathlib import Path


def test_a_search_from_python_without_a_stderr_runs_its_trials(
    fake_imdb: Path, tmp_path: Path
) -> None:
    # pythonw, or a script a daemon or cron starts with 2>&-: sys.stderr is None, and the
    # script's own log takes descriptor 2. Every trial's process died while starting, and the
    # progress bar asked for failed on the missing stderr.
    study = write_study(tmp_path, fake_imdb, n_trials=2, enqueue=False)
    printed = run_user_script(
        tmp_path,
        f"""
import sys

log = open("search.log", "w")
assert sys.stderr is None and log.fileno() == 2

import logging

import optuna

import hpo

seen = []
handler = logging.Handler()
handler.emit = lambda record: seen.append(record.getMessage())
logging.getLogger("optuna").addHandler(handler)
summary = hpo.search({str(study)!r}, progress=True)
# Optuna's INFO lines ("A new study created", "Trial 0 finished with value") are the CLI's
# --verbose only, from Python too; the caller's verbosity is left as it was.
print([m for m in seen if "finished with value" in m or "study" in m.lower()])
print(optuna.logging.get_verbosity() == optuna.logging.INFO)
print(summary.finished, summary.failed, summary.best_value is not None)
""",
        without_stderr=True,
    )
    assert printed.splitlines()[-3:] == ["[]", "True", "2 0 True"], printed


def _tampered(path: Path, layer: dict[str, object]) -> Path:
    """A small model's `.keras` file whose Dense layer is replaced by `layer` (class and config),
    as a changed file holds it."""
    import json
    import zipfile

    import keras

    inputs = keras.Input(shape=(3,))
    made = path.with_name("made.keras")
    keras.Model(inputs, keras.layers.Dense(1, name="d")(inputs)).save(made)
    with zipfile.ZipFile(made) as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    (dense,) = [c for c in config["config"]["layers"] if c["class_name"] == "Dense"]
    dense.update(layer, registered_name=None)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"class_name": "Lambda"}, "contains a Lambda layer, which runs arbitrary Python code"),
        (
            {"class_name": "TFSMLayer", "config": {"name": "d", "filepath": "/no/such/model"}},
            "deserialization of a `TFSMLayer`.*safe mode only",
        ),
    ],
)
def test_load_model_refuses_a_layer_that_runs_code_as_the_commands_do(
    tmp_path: Path, layer: dict[str, object], message: str
) -> None:
    # Keras's own ValueError came through, whose advice (pass safe_mode=False to the loading
    # function) hpo.load_model cannot follow; the Lambda one did not say what hpo predict says.
    import hpo
    from hpo.errors import ConfigError

    path = _tampered(tmp_path / "m.keras", layer)
    with pytest.raises(ConfigError, match=rf"^cannot load {tmp_path / 'm.keras'}: .*{message}"):
        hpo.load_model(path)
    with pytest.raises(ConfigError) as raised:
        hpo.load_model(path)
    assert "safe_mode=False" not in str(raised.value)


def test_a_notebook_shows_a_tuner_and_a_study_in_one_line(tmp_path: Path) -> None:
    # A Tuner showed <hpo.tuner.Tuner object at 0x...>, and tuner.study() the whole study
    # configuration (about 1,200 characters).
    import optuna

    import hpo
    from hpo.api import Study
    from hpo.config import StudyConfig

    tuner = hpo.Tuner(lambda hp: None, max_trials=3, directory=tmp_path, project_name="p")
    assert repr(tuner) == (
        f"Tuner(project_dir={str(tmp_path / 'p')!r}, objective='val_accuracy', "
        "direction='max', max_trials=3)"
    )
    budgeted = hpo.Tuner(lambda hp: None, objective="val_loss", budget="30m", directory=tmp_path)
    assert repr(budgeted).endswith("objective='val_loss', direction='min', budget='30m 00s')")
    optuna_study = optuna.create_study()
    optuna_study.add_trial(optuna.trial.create_trial(value=0.5))
    study = Study(StudyConfig(name="s", storage="postgresql://hpo:s3cret@db/hpo"), optuna_study)
    assert repr(study) == (
        "Study(name='s', storage='postgresql://hpo:***@db/hpo', trials: 1 COMPLETE)"
    )


def test_a_study_given_two_ways_is_refused_whichever_way_it_is_open(searched: Path) -> None:
    """`study_name` beside a configuration, or either storage argument beside an open `Study`,
    was ignored: the call went on with the other study. Each is named, and nothing runs."""
    import hpo
    from hpo.config import load_study_config
    from hpo.errors import ConfigError

    config = load_study_config(searched)
    opened = hpo.load_study(config)
    assert hpo.load_study(opened) is opened
    # The configuration's own name is no second way.
    assert hpo.load_study(config, study_name=config.name).config.name == config.name
    with pytest.raises(ConfigError, match=r"study_name='other' with a configuration of the study"):
        hpo.load_study(config, study_name="other")
    for storage, name in ((config.storage_url, None), (None, "tiny")):
        with pytest.raises(ConfigError, match=r"the Study 'tiny' is open already"):
            hpo.ensemble(opened, storage=storage, study_name=name)
        with pytest.raises(ConfigError, match=r"the Study 'tiny' is open already"):
            hpo.distill(
                searched.parent / "no-ensemble-needed", opened, storage=storage, study_name=name
            )
