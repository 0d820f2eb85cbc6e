"""Running a study: workers on one storage, their progress, and the `hpo search` command.

`workers` prepares the data once and runs trials in child processes until the study's budget or
trial count is reached; `progress` prints and stops; `identity` names the worker of a trial and
`recovery` handles workers that died; `command` is the command line. How one trial trains lives
in `hpo.training`.
"""

from __future__ import annotations

from hpo import api
from hpo._callable import make_callable
from hpo.search.command import main
from hpo.search.workers import SearchSummary, run_search, run_worker

__all__ = ["SearchSummary", "main", "run_search", "run_worker"]

# `hpo.search(...)` is the public API's function (`hpo.api.search`), this package is callable.
make_callable(__name__, api.search)
