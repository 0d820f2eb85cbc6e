"""The study's leaderboard: best trials, counts by state, the best value and the latest ensemble.

Command line::

    python -m hpo.status [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--top N] [--json | --csv FILE]

`--json` prints one object that follows `hpo/inspection/status_schema.json` (schema_version 1);
`--csv -` writes the table to standard output.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpo.artifacts import artifact_bytes, has_checkpoint, removed_checkpoints
from hpo.budget import format_duration, spent_seconds
from hpo.caches import cache_bytes
from hpo.command_options import add_study_arguments, open_study, positive_int
from hpo.contract import Attr, OwnLoss
from hpo.errors import ConfigError
from hpo.search.identity import WorkerIdentity
from hpo.store import redact_url

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    import optuna
    import pandas as pd

__all__ = ["SCHEMA_PATH", "leaderboard", "main", "status"]

SCHEMA_PATH = Path(__file__).with_name("status_schema.json")
SCHEMA_VERSION = 1
_log = logging.getLogger("hpo.status")
# Parameter columns in the terminal table: those that differ between the trials shown.
MAX_PARAM_COLUMNS = 8
_COLUMNS = {
    "number": "trial",
    "state": "state",
    "value": "value",
    f"user_attrs_{Attr.VAL_ACCURACY}": "val_accuracy",
    f"user_attrs_{Attr.EPOCHS}": "epochs",
    f"user_attrs_{Attr.TRAIN_SECONDS}": "train_seconds",
    "params_family": "family",
}


def leaderboard(
    study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial] | None = None
) -> pd.DataFrame:
    """All trials as a table, best first: COMPLETE by value, then the rest by trial number.

    Args:
        trials: The study's trials as read once (`study.get_trials`), for a table that agrees
            with what else was made of them while a search adds trials; default: read now.
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    frame = _own_losses(_trials_frame(trials).rename(columns=_COLUMNS))
    frame["complete"] = frame["state"] == TrialState.COMPLETE.name
    # Optuna keeps a pruned trial's last intermediate value as its value: only a COMPLETE
    # trial's ranks it.
    frame["rank"] = frame["value"].where(frame["complete"])
    lower_first = study.direction == StudyDirection.MINIMIZE
    frame = frame.sort_values(["complete", "rank", "trial"], ascending=[False, lower_first, True])
    return frame.drop(columns=["complete", "rank"]).reset_index(drop=True)


def _trials_frame(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """The trials as Optuna's `trials_dataframe` has them (number, state, value, params_*,
    user_attrs_*), from trials already read; its columns also where there are none."""
    import pandas as pd

    params = sorted({name for trial in trials for name in trial.params})
    attrs = sorted({name for trial in trials for name in trial.user_attrs})
    columns = [
        "number",
        "state",
        "value",
        *(f"params_{name}" for name in params),
        *(f"user_attrs_{name}" for name in attrs),
    ]
    records = [
        {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.values[0] if trial.values else None,
            **{f"params_{name}": value for name, value in trial.params.items()},
            **{f"user_attrs_{name}": value for name, value in trial.user_attrs.items()},
        }
        for trial in trials
    ]
    return pd.DataFrame(records, columns=columns)


def _own_losses(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with hpo's own loss (`Attr.VAL_LOSS`) where it was, in a column named for what
    it measures (`OwnLoss`), not `val_loss`: that is Keras's, the value where it is the
    objective. One column, as a study's models are all classifiers or all of targets."""
    import pandas as pd

    recorded = f"user_attrs_{Attr.VAL_LOSS}"
    if recorded not in frame:
        return frame
    unrecorded = pd.Series(None, index=frame.index, dtype=object)
    labels = frame.get(f"user_attrs_{Attr.LABELS}", unrecorded)
    names = labels.map(lambda value: OwnLoss.of(value).value)
    at = frame.columns.get_loc(recorded)
    losses = frame.pop(recorded)
    for name in reversed(names[losses.notna()].unique()):
        frame.insert(at, name, losses.where(names == name))
    return frame


def _as_json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with each cell that holds a list or a dict (a trial's history, its metrics) as
    JSON text, which a CSV reader can parse back (`json.loads`), not as Python's repr."""
    import json

    def cell(value: Any) -> Any:
        return json.dumps(value) if isinstance(value, (list, dict)) else value

    return frame.apply(lambda column: column.map(cell) if column.dtype == object else column)


class _Recorded:
    """`status`'s default budget: the one the study's last run recorded."""


_RECORDED = _Recorded()


def status(
    study: optuna.Study,
    storage_url: str,
    top: int,
    artifact_bytes: int | None = None,
    cache_bytes: int | None = None,
    budget: float | _Recorded | None = _RECORDED,
) -> dict[str, Any]:
    """The study's status as JSON-serialisable data (see `hpo/inspection/status_schema.json`).

    Args:
        artifact_bytes: What the study's artifacts take on disk, if known.
        cache_bytes: What the study's prepared data (its cache folder) take on disk, if known.
        budget: The budget in seconds (None: none) that the next `hpo search` without
            --budget uses, the study file's; default: the one the study's last run recorded.
            A last run given another --budget is named beside it.
    """
    every_trial = study.get_trials(deepcopy=False)
    by_number = {trial.number: trial for trial in every_trial}
    counts = {state.name: 0 for state in TrialState}
    for trial in every_trial:
        counts[trial.state.name] += 1
    # One read of the trials for all of it: a search adds trials meanwhile.
    ranked = leaderboard(study, every_trial)
    first = ranked.head(1).to_dict("records")
    best = (
        by_number[int(first[0]["trial"])]
        if first and first[0]["state"] == TrialState.COMPLETE.name
        else None
    )
    table = ranked.head(top)
    trials = [
        {
            "number": int(row["trial"]),
            "state": row["state"],
            "value": _number(row.get("value")),
            "family": row.get("family") if isinstance(row.get("family"), str) else None,
            "val_accuracy": _number(row.get("val_accuracy")),
            **_own_loss(by_number[int(row["trial"])]),
            "epochs": _integer(row.get("epochs")),
            "train_seconds": _number(row.get("train_seconds")),
            "params": by_number[int(row["trial"])].params,
            "reason": _reason(by_number[int(row["trial"])]),
            "worker": _worker(by_number[int(row["trial"])]),
        }
        for _, row in table.iterrows()
    ]
    removed = removed_checkpoints(study)
    ensembles = [
        summary
        for name, record in study.user_attrs.items()
        if name.startswith("ensemble_top") and (summary := _ensemble(name, record)) is not None
    ]
    latest = max(ensembles, key=lambda e: e["created"], default=None)
    recorded = study.user_attrs.get("hpo_config")
    last = _number(recorded.get("budget")) if isinstance(recorded, dict) else None
    if isinstance(budget, _Recorded):
        budget = last
    spent = spent_seconds(study)
    # A run given --budget records it, and a rerun without the flag has the study file's: the
    # status says what the next run has, and the last run's where it differs.
    last_run = {"last_run_budget_seconds": last} if last != budget else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "study": study.study_name,
        "storage": redact_url(storage_url),
        "artifacts": {
            "bytes": artifact_bytes,
            "checkpoints": sum(has_checkpoint(t, removed) for t in every_trial),
            "removed_checkpoints": len(removed),
        },
        "cache": {"bytes": cache_bytes},
        "budget": {
            "budget_seconds": budget,
            "spent_seconds": round(spent, 1),
            "left_seconds": None if budget is None else round(max(0.0, budget - spent), 1),
            **last_run,
        },
        "direction": study.direction.name.lower(),
        "objective": (study.metric_names or [Attr.VAL_ACCURACY])[0],
        "counts": counts,
        "best": {"number": best.number, "value": _number(best.value)} if best else None,
        "trials": trials,
        "latest_ensemble": latest,
    }


def _own_loss(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's `val_loss` as it recorded it, hpo's own loss, and the name of what it measures
    (`OwnLoss`), which the table shows it under."""
    loss = _number(trial.user_attrs.get(Attr.VAL_LOSS))
    name = None if loss is None else OwnLoss.of(trial.user_attrs.get(Attr.LABELS)).value
    return {"val_loss": loss, "val_loss_name": name}


def format_status(data: dict[str, Any]) -> str:
    """A readable terminal rendering of `status`."""
    import pandas as pd

    counts = ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n)
    lines = [f"Study {data['study']!r} ({data['storage']}): {counts or 'no trials'}"]
    budget = data.get("budget")
    if budget and budget["spent_seconds"]:
        line = f"Time spent: {format_duration(budget['spent_seconds'])}"
        if budget["budget_seconds"] is not None:
            line += (
                f" of a {format_duration(budget['budget_seconds'])} budget, "
                f"{format_duration(budget['left_seconds'])} left"
            )
        if "last_run_budget_seconds" in budget:
            last = budget["last_run_budget_seconds"]
            line += (
                f" (its last run had "
                f"{'no budget' if last is None else f'a budget of {format_duration(last)}'}; a "
                f"search has the study file's budget unless given --budget)"
            )
        lines.append(line)
    artifacts = data.get("artifacts")
    if artifacts and (artifacts["checkpoints"] or artifacts["removed_checkpoints"]):
        size = "" if artifacts["bytes"] is None else f", {artifacts['bytes'] / 1e6:.1f} MB on disk"
        lines.append(
            f"Checkpoints: {artifacts['checkpoints']} stored{size}"
            + (
                f", {artifacts['removed_checkpoints']} removed by hpo gc"
                if artifacts["removed_checkpoints"]
                else ""
            )
        )
    cache = data.get("cache")
    if cache and cache["bytes"]:
        lines.append(f"Prepared data: {cache['bytes'] / 1e6:.1f} MB on disk")
    # What the trials' value is (absent from older output): a column of its own, under its
    # name, unless hpo measured it itself (a classifier's accuracy), never replaced by another.
    objective = data.get("objective")
    if best := data["best"]:
        value = "not finite" if best["value"] is None else f"{best['value']:.4f}"
        lines.append(f"Best: trial {best['number']}, {objective or 'value'} {value}")
    if trials := data["trials"]:
        varying = _varying_params([t["params"] for t in trials])
        shown = varying[:MAX_PARAM_COLUMNS]
        # hpo's loss under the name of what it measures: one, as a study's models are all
        # classifiers or all of targets.
        losses = list(dict.fromkeys(t["val_loss_name"] for t in trials if t["val_loss_name"]))
        accuracy = any(t["val_accuracy"] is not None for t in trials)
        measured = {*losses, *([Attr.VAL_ACCURACY] if accuracy else [])}
        rows = [
            _with_params(
                {
                    "trial": t["number"],
                    "state": t["state"],
                    "family": t["family"],
                    **({objective: t["value"]} if objective not in (None, *measured) else {}),
                    "val_acc": t["val_accuracy"],
                    **{n: t["val_loss"] if t["val_loss_name"] == n else None for n in losses},
                    "epochs": t["epochs"],
                    "seconds": t["train_seconds"],
                    "note": (t["reason"] or _running_on(t))[:50],
                },
                {k: t["params"].get(k) for k in shown},
            )
            for t in trials
        ]
        table = pd.DataFrame(rows)
        if table["val_acc"].isna().all():  # regression: no trial has an accuracy
            table = table.drop(columns="val_acc")
        # A value a trial lacks (a parameter of another family's, an inactive conditional one)
        # is None, which pandas shows as "None" in a column of strings or of no values: "-".
        table = table.mask(table.isna(), math.nan)
        lines.append(table.to_string(index=False, na_rep="-", float_format=_format_number))
        if hidden := varying[MAX_PARAM_COLUMNS:]:
            # A study of families of one's own varies more than fit a line; none is dropped
            # unsaid.
            lines.append(
                f"({len(hidden)} more parameters vary, not shown: {', '.join(hidden)}; "
                f"--json or --csv gives every one)"
            )
    if data["latest_ensemble"]:
        e = data["latest_ensemble"]
        # Which of its two fits the ensemble kept: the pool's Caruana selection, or the top
        # trials weighted by its --method (a record from before `kept` names the method).
        how = "pool selection" if e.get("kept") == "pool" else e["method"]
        if e.get("refit") is True:  # its members trained again, on training + validation
            how += ", refitted"
        lines.append(
            f"Latest ensemble ({e['name']}, {how}): "
            f"test accuracy {e['test_accuracy']:.4f}, "
            f"log-loss {e['test_log_loss']:.4f}, members {e['members']} -> {e['out_dir']}"
        )
    return "\n".join(lines)


def _with_params(row: dict[Any, Any], params: dict[str, Any]) -> dict[Any, Any]:
    """The table's row with the parameters before its note, one named as a column of hpo's
    (`epochs`, `seconds`) under the name --csv gives it (`params_epochs`), not in its place."""
    note = row.pop("note")
    own = {*row, "note"}
    return {
        **row,
        **{f"params_{name}" if name in own else name: value for name, value in params.items()},
        "note": note,
    }


def _format_number(value: float) -> str:
    # A column of integers with a gap is a float column to pandas: 30000, not 3e+04.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _varying_params(params: list[dict[str, Any]]) -> list[str]:
    """Names of parameters (besides the family) whose values differ, in order of appearance."""
    names = list(dict.fromkeys(name for p in params for name in p if name != "family"))
    return [n for n in names if len({repr(p.get(n)) for p in params}) > 1]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    # JSON has no infinity: status's output has null for it, as for NaN.
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


# An ensemble's study attribute (`hpo.ensemble.report`): what status shows of it, by type.
_ENSEMBLE_FIELDS: dict[str, Callable[[Any], bool]] = {
    "out_dir": lambda v: isinstance(v, str),
    "method": lambda v: v in ("caruana", "score", "uniform"),
    "members": lambda v: isinstance(v, list) and all(_is_integer(m) for m in v),
    "weights": lambda v: isinstance(v, list) and all(_is_number(w) for w in v),
    "test_accuracy": lambda v: _is_number(v),
    "test_log_loss": lambda v: _is_number(v),
    "created": lambda v: isinstance(v, str),
}


def _ensemble(name: str, record: Any) -> dict[str, Any] | None:
    """The ensemble's record with its name, or None (with a warning) where a field status shows
    is missing or of another type: the attribute was written by something else."""
    wrong = (
        list(_ENSEMBLE_FIELDS)
        if not isinstance(record, dict)
        else [k for k, valid in _ENSEMBLE_FIELDS.items() if k not in record or not valid(record[k])]
    )
    if wrong:
        _log.warning(
            "study attribute %r is not an ensemble's record as hpo ensemble writes it (%s "
            "missing or malformed); status leaves it out. Run hpo ensemble again to replace it.",
            name,
            ", ".join(wrong),
        )
        return None
    return {**record, "name": name}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(trial: optuna.trial.FrozenTrial) -> str | None:
    attrs = trial.user_attrs
    reason = (
        attrs.get(Attr.PRUNE_REASON) or attrs.get(Attr.FAIL_REASON) or attrs.get(Attr.STOP_REASON)
    )
    return str(reason) if reason else None


def _worker(trial: optuna.trial.FrozenTrial) -> str | None:
    identity = WorkerIdentity.recorded(trial)
    return None if identity is None else str(identity)


def _running_on(trial: dict[str, Any]) -> str:
    worker = trial.get("worker")
    return f"on {worker}" if trial["state"] == TrialState.RUNNING.name and worker else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    parser.add_argument(
        "--top",
        type=positive_int(" Use --top 5 for the five best trials."),
        default=10,
        help="trials to list (default 10)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print JSON (schema: hpo/inspection/status_schema.json)"
    )
    output.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write every trial's row to this CSV file (a new one, or one an earlier --csv "
        "wrote; a link to one is written through); - writes it to standard output",
    )


def run(args: argparse.Namespace) -> int:
    """Prints the leaderboard, JSON, or writes the CSV."""
    if args.csv is not None:
        _check_csv_path(args.csv)
    config, study = open_study(args.study, args.storage, args.study_name)
    if args.csv is not None:
        # The table alone: the rest of the status (artifact sizes, budget) is not written.
        table = _as_json_cells(leaderboard(study))
        if args.csv == _STDOUT:
            _whole_numbers(table).to_csv(sys.stdout, index=False)
        else:
            _write_csv(table, args.csv.resolve())
            print(f"Wrote {len(table)} trials to {args.csv}")
        return 0
    data = status(
        study,
        config.storage_url,
        args.top,
        artifact_bytes(config, study),
        cache_bytes(config),
        budget=config.budget,
    )
    print(json.dumps(data, indent=2) if args.json else format_status(data))
    return 0


# The first cells of every table `--csv` writes: a file that starts otherwise is not one.
_CSV_HEADER = "trial,state,"
# `--csv -`: the table on standard output.
_STDOUT = Path("-")


def _check_csv_path(path: Path) -> None:
    """Refuses a `--csv` path that is a folder, in none, not a regular file (a pipe, a device:
    `-` is standard output), or a file other than a table an earlier `--csv` wrote (a typo
    naming the study's database, its study file or a checkpoint would replace it). A link is
    checked, and written, as the file it names."""
    if path == _STDOUT:
        return
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ConfigError(
            f"--csv {path} is not a regular file (a pipe or a device, such as /dev/stdout), "
            "which the table cannot replace; give --csv - for standard output, or a file path, "
            "such as trials.csv."
        )
    target = path.resolve()
    if target.is_dir() or not target.parent.is_dir():
        where = "is a folder" if target.is_dir() else f"is in {target.parent}, no folder"
        raise ConfigError(
            f"--csv {path} {where}; give a file path, such as trials.csv, or - for standard output."
        )
    if not target.exists():
        return
    try:
        with target.open("rb") as file:
            ours = file.read(len(_CSV_HEADER)) == _CSV_HEADER.encode()
    except OSError as exc:
        raise ConfigError(f"--csv {path} cannot be read ({exc}); give another path.") from exc
    if not ours:
        raise ConfigError(
            f"--csv {path} is a file that hpo status did not write (it does not start with "
            f"{_CSV_HEADER!r}), which the table would replace; give a new path, such as "
            "trials.csv, or remove that file first (--csv - writes to standard output)."
        )


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Writes `table` to `path` whole or not at all (a temporary file beside it, renamed)."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        _whole_numbers(table).to_csv(part, index=False)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _whole_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each float column whose values are all whole numbers as integers: a
    parameter some trials lack (another family's `filters`) is a float column to pandas, and
    was written 64.0, 1.0; an empty cell stays empty."""
    table = table.copy()
    for name in table.columns:
        column = table[name]
        if column.dtype.kind == "f" and column.notna().any():
            known = column.dropna()
            if (known == known.round()).all() and known.abs().max() < 2**53:
                table[name] = column.astype("Int64")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.status`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("status", argv)


if __name__ == "__main__":
    sys.exit(main())
