from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import jsonschema
import optuna
import pandas as pd
import pytest

from hpo.config import load_study_config
from hpo.inspection.status import SCHEMA_PATH, format_status, leaderboard, main, status
from hpo.store import open_storage

if TYPE_CHECKING:
    from pathlib import Path


def test_json_follows_the_documented_schema(
    searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--study", str(searched), "--json", "--top", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["study"] == "tiny"
    assert data["counts"]["COMPLETE"] == 4
    assert len(data["trials"]) == 3
    values = [t["value"] for t in data["trials"]]
    assert values == sorted(values, reverse=True)
    assert data["best"]["value"] == values[0]
    assert {t["family"] for t in data["trials"]} <= {"conv1d", "sepconv1d"}


def test_table_and_csv(searched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--study", str(searched)]) == 0
    out = capsys.readouterr().out
    assert "Study 'tiny'" in out
    assert "4 COMPLETE" in out
    assert "val_acc" in out
    # hpo's loss of a classifier under the name of what it measures, not Keras's val_loss.
    assert "val_log_loss" in out and "val_loss" not in out
    csv = tmp_path / "trials.csv"
    assert main(["--study", str(searched), "--csv", str(csv)]) == 0
    frame = pd.read_csv(csv)
    assert len(frame) == 4
    assert {"trial", "state", "value", "family", "val_accuracy", "val_log_loss"} <= set(
        frame.columns
    )
    # What a trial records as a list or a table is JSON there, to be read back.
    history = json.loads(frame.loc[0, "user_attrs_history"])
    assert len(history["val_loss"]) == frame.loc[0, "epochs"]


def test_shows_the_latest_ensemble(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.command_options import open_study
    from hpo.ensemble import build_ensemble

    config, study = open_study(study_copy, None, None)
    build_ensemble(config, study, top=2, out_dir=tmp_path / "e")
    assert main(["--study", str(study_copy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["latest_ensemble"]["name"] == "ensemble_top2"
    assert 1 <= len(data["latest_ensemble"]["members"]) <= 2
    # The table names the fit the ensemble kept: it said "caruana" (the plain top ensemble's
    # method) where the pool's selection was kept, as hpo ensemble had printed.
    record = study.user_attrs["ensemble_top2"]
    assert record["refit"] is False
    for kept, refit, shown in (
        ("pool", False, "pool selection"),
        ("top", False, record["method"]),
        ("pool", True, "pool selection, refitted"),
    ):
        study.set_user_attr("ensemble_top2", {**record, "kept": kept, "refit": refit})
        assert main(["--study", str(study_copy)]) == 0
        assert f"Latest ensemble (ensemble_top2, {shown}): " in capsys.readouterr().out


@pytest.mark.parametrize("top", ["0", "-1", "two"])
def test_top_must_be_a_whole_number_of_trials(
    top: str, searched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --top -1 and 0 printed the study's counts with no trial table, and no word why.
    with pytest.raises(SystemExit) as exc:
        main(["--study", str(searched), "--top", top])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--top: must be a whole number >= 1, got '{top}'. Use --top 5" in err


def test_a_mistyped_storage_never_creates_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    assert main(["--storage", f"sqlite:///{missing}", "--study-name", "x"]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["--study", str(tmp_path / "nope.toml")]) == 2


def test_unknown_study_name(searched: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = load_study_config(searched).storage_url
    assert main(["--storage", url, "--study-name", "tiny2"]) == 2
    assert "Studies there: ['tiny']" in capsys.readouterr().err


def test_a_running_trial_shows_its_worker(tmp_path: Path) -> None:
    from hpo.search.identity import WorkerIdentity

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=open_storage(url, create=True, heartbeat=False))
    me = WorkerIdentity.current()
    me.record(study.ask())

    data = status(study, url, top=5)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["trials"][0]["worker"] == str(me)
    assert me.boot_id and me.boot_id[:8] in data["trials"][0]["worker"]
    assert f"on {me.host}:{me.pid} (boot" in format_status(data)


def test_the_table_prints_integer_parameters_as_integers() -> None:
    def trial(number: int, params: dict[str, object]) -> dict[str, object]:
        return {
            "number": number,
            "state": "COMPLETE",
            "family": "conv1d",
            "val_accuracy": 0.88643,
            "val_loss": 0.3,
            "val_loss_name": "val_log_loss",
            "epochs": 4,
            "train_seconds": 12.5,
            "params": params,
            "reason": None,
        }

    # A parameter one family lacks leaves a gap, which makes pandas hold the column as floats.
    data = {
        "study": "s",
        "storage": "sqlite:///s.db",
        "counts": {"COMPLETE": 2},
        "best": None,
        "trials": [
            trial(0, {"vocab_size": 30000, "learning_rate": 0.003}),
            trial(1, {"learning_rate": 0.01}),
        ],
        "latest_ensemble": None,
    }
    table = format_status(data)
    assert "30000" in table and "3e+04" not in table
    assert "0.003" in table and "0.8864" in table
    # A gap in a column of strings (a conditional parameter of a hypermodel, inactive in one
    # trial) is "-" too, as in the other columns; it showed "None".
    data["trials"] = [trial(0, {"pooled/hidden": "wide"}), trial(1, {"pooled/hidden": None})]
    [wide, gap] = _table(data)
    assert (wide["pooled/hidden"], gap["pooled/hidden"]) == ("wide", "-")
    assert "None" not in format_status(data)
    # More varying parameters than columns (families of one's own): the rest are named, not
    # dropped unsaid.
    data["trials"] = [trial(n, {f"mine/p{i}": n * i for i in range(11)}) for n in range(2)]
    table = format_status(data)
    assert "mine/p8" in table and "mine/p9" not in table.splitlines()[0]
    assert "(2 more parameters vary, not shown: mine/p9, mine/p10; --json or --csv" in table


def _ranked_by(
    objective: str, direction: str, trials: list[tuple[float, dict[str, object]]]
) -> optuna.Study:
    """An in-memory study ranked by `objective`, as a search names it, of complete trials of
    these values and user attributes."""
    study = optuna.create_study(direction=direction)
    study.set_metric_names([objective])
    study.add_trials(optuna.trial.create_trial(value=v, user_attrs=a) for v, a in trials)
    return study


def _table(data: dict[str, object]) -> list[dict[str, str]]:
    """The rows of `format_status`'s table, each by its column's name."""
    lines = format_status(data).splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trial", "state"])
    header = lines[at].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[at + 1 :]]


def test_an_objective_of_val_loss_keeps_its_column_beside_hpos_own_loss() -> None:
    # A model compiled with loss="mae": Keras's val_loss (the objective, the value) is the MAE,
    # hpo's own is the squared error. The table showed hpo's under "val_loss" in place of the
    # objective's, so it read as sorted wrongly, and the trial lines did the same.
    from hpo.search.progress import describe_trial

    targets = {"labels": "targets"}
    study = _ranked_by(
        "val_loss",
        "minimize",
        [(2.1631, {"val_loss": 7.4598, **targets}), (0.8478, {"val_loss": 1.2839, **targets})],
    )
    data = status(study, "sqlite:///s.db", top=5)
    rows = _table(data)
    assert [(r["trial"], r["val_loss"]) for r in rows] == [("1", "0.8478"), ("0", "2.163")]
    assert [r["val_mse"] for r in rows] == ["1.284", "7.46"] and "val_acc" not in rows[0]
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert [(t["value"], t["val_loss"], t["val_loss_name"]) for t in data["trials"]] == [
        (0.8478, 1.2839, "val_mse"),
        (2.1631, 7.4598, "val_mse"),
    ]
    assert "val_loss=0.8478 val_mse=1.2839" in describe_trial(study.trials[1], "val_loss")
    # --csv names the column as the table does.
    csv = leaderboard(study)
    assert "val_loss" not in csv.columns and list(csv["val_mse"]) == [1.2839, 7.4598]

    # A classifier's: hpo's log-loss, not Keras's val_loss (with the weights' penalties, say);
    # a trial from before hpo recorded its labels was a classifier's.
    study = _ranked_by(
        "val_loss",
        "minimize",
        [
            (0.41, {"val_loss": 0.3, "val_accuracy": 0.9, "labels": "sparse"}),
            (0.52, {"val_loss": 0.4, "val_accuracy": 0.8}),
        ],
    )
    data = status(study, "sqlite:///s.db", top=5)
    assert [t["val_loss_name"] for t in data["trials"]] == ["val_log_loss"] * 2
    assert [(r["val_loss"], r["val_acc"], r["val_log_loss"]) for r in _table(data)] == [
        ("0.41", "0.9", "0.3"),
        ("0.52", "0.8", "0.4"),
    ]
    line = describe_trial(study.trials[0], "val_loss")
    assert "val_loss=0.4100 val_acc=0.9000 val_log_loss=0.3000" in line
    assert list(leaderboard(study)["val_log_loss"]) == [0.3, 0.4]


def test_the_objective_is_shown_once_under_its_name() -> None:
    # hpo's accuracy is a classifier's value, and hpo's squared error the value of a study
    # ranked by the val_mse Keras logs: each shows once, in hpo's column.
    study = _ranked_by("val_accuracy", "maximize", [(0.9, {"val_loss": 0.3, "val_accuracy": 0.9})])
    row = _table(status(study, "sqlite:///s.db", top=5))[0]
    assert (row["val_acc"], row["val_log_loss"]) == ("0.9", "0.3") and "val_accuracy" not in row
    study = _ranked_by("val_mse", "minimize", [(1.5, {"val_loss": 1.5, "labels": "targets"})])
    row = _table(status(study, "sqlite:///s.db", top=5))[0]
    assert row["val_mse"] == "1.5" and list(row).count("val_mse") == 1
    # Soft labels ranked by the accuracy Keras logs: hpo measures none, so the objective keeps
    # a column of its own (there was none).
    study = _ranked_by("val_accuracy", "maximize", [(0.16, {"val_loss": 0.2, "labels": "targets"})])
    row = _table(status(study, "sqlite:///s.db", top=5))[0]
    assert (row["val_accuracy"], row["val_mse"]) == ("0.16", "0.2")


def _many_trials(count: int) -> optuna.Study:
    """An in-memory study of `count` complete trials of two families, with learning curves."""
    study = optuna.create_study(direction="maximize")
    family = optuna.distributions.CategoricalDistribution(["conv1d", "nbsvm"])
    rate = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    vocab = optuna.distributions.CategoricalDistribution([10000])  # a parameter all share
    study.add_trials(
        optuna.trial.create_trial(
            params={
                "family": ("conv1d", "nbsvm")[n % 2],
                "learning_rate": 1e-3 * (1 + n % 7),
                "vocab_size": 10000,
            },
            distributions={"family": family, "learning_rate": rate, "vocab_size": vocab},
            value=0.8 + n / (100 * count),
            intermediate_values={0: 0.7, 1: 0.8 + n / (100 * count)},
        )
        for n in range(count)
    )
    return study


def _trial_reads(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records each read of the study's trials from its storage: whether it deep-copied them."""
    reads: list[bool] = []
    read = study._storage.get_all_trials

    def counting(study_id: int, deepcopy: bool = True, states: object = None) -> list[object]:
        reads.append(deepcopy)
        return read(study_id, deepcopy=deepcopy, states=states)  # type: ignore[arg-type]

    monkeypatch.setattr(study._storage, "get_all_trials", counting)
    return reads


def test_status_reads_the_trials_without_copying_them_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `study.trials` deep-copies every trial: read once per leaderboard row it took `hpo status`
    # a minute on a study of 3,000 trials.
    study = _many_trials(60)
    copied = _trial_reads(study, monkeypatch)
    data = status(study, "sqlite:///s.db", top=50)
    assert len(data["trials"]) == 50 and data["trials"][0]["number"] == 59
    assert data["trials"][0]["params"]["family"] == "nbsvm"
    assert copied and not any(copied)


def _ensemble_record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "out_dir": "ensembles/e",
        "method": "caruana",
        "members": [0],
        "weights": [1.0],
        "test_accuracy": 0.9,
        "test_log_loss": 0.3,
        "created": "2025-01-01T00:00:00+00:00",
    }
    return {**record, **changes}


@pytest.mark.parametrize(
    ("attrs", "shown"),
    [
        ({"ensemble_top3": "hello"}, None),
        ({"ensemble_top3": {"members": [1], "created": "z"}}, None),
        ({"ensemble_top3": _ensemble_record(test_accuracy="high")}, None),
        (
            {
                "ensemble_top3": _ensemble_record(created="2025-01-01"),
                "ensemble_top9": _ensemble_record(created=5),
            },
            "ensemble_top3",
        ),
        ({"hpo_config": {"budget": "abc"}}, None),
        ({"hpo_config": [1]}, None),
        ({"hpo_config": {"budget": float("inf")}}, None),
        ({"budget_run:zzz": "abc", "budget_run:yyy": [0, 60]}, None),
    ],
)
def test_status_leaves_out_malformed_study_attributes(
    attrs: dict[str, object], shown: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    study = _many_trials(2)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    data = status(study, "sqlite:///s.db", top=5)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert format_status(data).startswith("Study")
    assert (data["latest_ensemble"] or {}).get("name") == shown
    assert data["budget"]["budget_seconds"] is None
    assert data["budget"]["spent_seconds"] == (60 if "budget_run:yyy" in attrs else 0)
    malformed = [k for k in attrs if k != "budget_run:yyy" and k != shown]
    if not malformed[0].startswith("hpo_config"):  # a malformed budget is shown as none
        assert all(key in caplog.text for key in malformed)


def test_status_shows_the_budget_the_next_search_has(
    study_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It showed the last run's --budget 8m, with time left, where a plain hpo search (the
    # study file's 4m) then said the budget was spent.
    text = study_copy.read_text()
    study_copy.write_text(text.replace("n_trials = 4\n", 'n_trials = 4\nbudget = "4m"\n', 1))
    config = load_study_config(study_copy)
    assert config.budget == 240
    study = optuna.load_study(study_name=config.name, storage=config.storage_url)
    study.set_user_attr("hpo_config", {**study.user_attrs["hpo_config"], "budget": 480.0})
    study.set_user_attr("budget_run:extra", [0, 269])
    assert main(["--study", str(study_copy)]) == 0
    out = capsys.readouterr().out
    assert "of a 4m 00s budget, 0s left (its last run had a budget of 8m 00s; a search has " in out
    assert main(["--study", str(study_copy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["budget"]["budget_seconds"] == 240
    assert data["budget"]["last_run_budget_seconds"] == 480
    # Read by its database, the study's budget is the recorded one, as a joining search's is.
    opened = ["--storage", config.storage_url, "--study-name", config.name, "--json"]
    assert main(opened) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["budget"]["budget_seconds"] == 480
    assert "last_run_budget_seconds" not in data["budget"]


def test_status_shows_an_infinite_epoch_count_as_unknown() -> None:
    study = _many_trials(2)
    study.add_trial(
        optuna.trial.create_trial(value=0.99, user_attrs={"epochs": float("inf"), "history": {}})
    )
    data = status(study, "sqlite:///s.db", top=5)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["trials"][0]["epochs"] is None
    assert "Study" in format_status(data)


def test_whole_number_columns_are_written_as_integers_empty_cells_kept(tmp_path: Path) -> None:
    # A parameter some trials lack (another family's `filters`) is a float column to pandas:
    # --csv wrote 64.0 and 1.0.
    from hpo.inspection.status import _write_csv

    table = pd.DataFrame(
        {
            "trial": [0, 1, 2],
            "state": ["COMPLETE"] * 3,
            "filters": [64.0, None, 32.0],
            "learning_rate": [0.01, 0.003, None],
            "value": [0.5, 1.0, 0.75],
        }
    )
    path = tmp_path / "trials.csv"
    _write_csv(table, path)
    assert path.read_text().splitlines() == [
        "trial,state,filters,learning_rate,value",
        "0,COMPLETE,64,0.01,0.5",
        "1,COMPLETE,,0.003,1.0",
        "2,COMPLETE,32,,0.75",
    ]


def test_status_reads_the_trials_once_while_a_search_adds_them() -> None:
    # A search's worker starts a trial between two reads of the study: status read it twice
    # (its trials, then the leaderboard's) and failed with a KeyError for the new trial.
    study = _many_trials(3)
    read = study.get_trials

    def get_trials(*args: object, **kwargs: object) -> list[optuna.trial.FrozenTrial]:
        trials = read(*args, **kwargs)  # type: ignore[arg-type]
        study.ask()
        return trials

    study.get_trials = get_trials  # type: ignore[method-assign]
    data = status(study, "sqlite:///s.db", top=10)
    assert [t["number"] for t in data["trials"]] == [2, 1, 0]
    assert sum(data["counts"].values()) == 3 and data["best"]["number"] == 2


def test_pruned_trials_follow_the_complete_ones_by_number() -> None:
    # Optuna keeps a pruned trial's last intermediate value as its value, by which the
    # leaderboard ranked it among the others.
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=0.1),
            optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=0.9),
            optuna.trial.create_trial(value=0.6),
            optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL),
            optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=0.5),
        ]
    )
    assert list(leaderboard(study)["trial"]) == [2, 0, 1, 3, 4]
    data = status(study, "sqlite:///s.db", top=10)
    assert [t["number"] for t in data["trials"]] == [2, 0, 1, 3, 4]
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))


def test_a_column_no_trial_has_a_value_in_shows_dashes_not_none() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=0.1),
            optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL),
        ]
    )
    table = format_status(status(study, "sqlite:///s.db", top=10))
    assert "None" not in table
    assert table.splitlines()[-1].split()[:2] == ["1", "FAIL"]


def test_infinite_values_are_null_in_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    # json.dumps wrote Infinity, which is not JSON.
    study = optuna.create_study(direction="maximize")
    study.add_trials(optuna.trial.create_trial(value=v) for v in (0.5, float("inf"), -math.inf))
    data = status(study, "sqlite:///s.db", top=10)
    parsed = json.loads(json.dumps(data), parse_constant=lambda name: pytest.fail(name))
    jsonschema.validate(parsed, json.loads(SCHEMA_PATH.read_text()))
    assert parsed["best"] == {"number": 1, "value": None}
    assert [t["value"] for t in parsed["trials"]] == [None, 0.5, None]
    assert "Best: trial 1, val_accuracy not finite" in format_status(data)


def test_a_hyperparameter_named_as_a_column_keeps_hpos_column() -> None:
    # A hypermodel's hp named "epochs" took the place of the epochs the trial trained.
    study = optuna.create_study(direction="maximize")
    hp = optuna.distributions.IntDistribution(1, 100)
    study.add_trials(
        optuna.trial.create_trial(
            value=0.5 + e / 100,
            params={"epochs": e, "seconds": e + 1},
            distributions={"epochs": hp, "seconds": hp},
            user_attrs={"epochs": 3, "train_seconds": 7.0},
        )
        for e in (10, 20)
    )
    rows = _table(status(study, "sqlite:///s.db", top=5))
    assert [(r["epochs"], r["params_epochs"]) for r in rows] == [("3", "20"), ("3", "10")]
    assert [(r["seconds"], r["params_seconds"]) for r in rows] == [("7", "21"), ("7", "11")]


def _csv_study(tmp_path: Path, trials: int) -> list[str]:
    """Arguments of `hpo status` for a study in `tmp_path` as a search leaves it, of `trials`
    complete trials."""
    from hpo.config import StudyConfig, config_to_dict
    from hpo.study import create_study

    config = StudyConfig(name="s", study_dir=tmp_path / "s")
    config.study_dir.mkdir()
    study = create_study(config, config.storage_url)
    study.set_user_attr("hpo_config", config_to_dict(config))
    study.add_trials(optuna.trial.create_trial(value=n / 10) for n in range(trials))
    return ["--storage", config.storage_url, "--study-name", "s"]


def test_csv_of_a_study_without_trials_has_its_header_and_is_written_again(
    tmp_path: Path,
) -> None:
    # It wrote a bare newline, which the next --csv refused as a file hpo did not write.
    study = _csv_study(tmp_path, 0)
    path = tmp_path / "trials.csv"
    assert main([*study, "--csv", str(path)]) == 0
    assert path.read_text() == "trial,state,value\n"
    assert main([*study, "--csv", str(path)]) == 0


def test_csv_dash_is_standard_output_and_a_pipe_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    study = _csv_study(tmp_path, 2)
    assert main([*study, "--csv", "-"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "trial,state,value",
        "1,COMPLETE,0.1",
        "0,COMPLETE,0.0",
    ]
    assert not (tmp_path / "-").exists()
    # A pipe was read (waiting for a writer) and named a file to remove.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main([*study, "--csv", str(fifo)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and "give --csv - for standard output" in err


def test_csv_through_a_link_writes_its_target(tmp_path: Path) -> None:
    # The table replaced the link with a file of its own.
    study = _csv_study(tmp_path, 1)
    target = tmp_path / "target.csv"
    assert main([*study, "--csv", str(target)]) == 0
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    target.write_text(target.read_text() + "9,COMPLETE,0.5\n")
    assert main([*study, "--csv", str(link)]) == 0
    assert link.is_symlink() and target.read_text().splitlines() == [
        "trial,state,value",
        "0,COMPLETE,0",
    ]
