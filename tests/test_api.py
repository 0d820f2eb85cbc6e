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

import hpo

summary = hpo.search({str(study)!r}, progress=True)
print(summary.finished, summary.failed, summary.best_value is not None)
""",
        without_stderr=True,
    )
    assert printed.splitlines()[-1] == "2 0 True", printed
