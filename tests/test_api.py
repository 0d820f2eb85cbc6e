"""`hpo.search` and the other library functions, run as a user's script runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
