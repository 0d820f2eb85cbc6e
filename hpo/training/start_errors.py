"""How to train one trial: the error a trial process died of while it started, for its caller.

A child of the trial fork server first does what multiprocessing does to start one (run the
script that started the search again, unpickle what it was sent) before it opens its log
(`hpo.training.isolation`). An error there ends it with exit code 1, printed on the server's
stderr, which is /dev/null (`hpo._quiet`); the caller saw only "died while starting". The server
keeps that error in a folder of the caller's, in a file named after the child, where the caller
reads it (`start_error`) into the `TrialProcessDied` it raises.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tempfile
    from types import TracebackType

__all__ = ["START_ERRORS_VAR", "keep_start_errors", "start_error", "start_errors_folder"]

# The folder, set in the caller's environment before the fork server starts, which the server
# reads (once, as it starts) and its children write their start errors to.
START_ERRORS_VAR = "HPO_START_ERRORS"
_folder: tempfile.TemporaryDirectory[str] | None = None


def start_errors_folder() -> Path:
    """This process's folder for its fork server's start errors, made on first use and
    removed when the process exits; a scratch folder named by the process (`hpo.scratch`), so
    the next hpo command removes it where the process was killed (a notebook's kernel
    restarted) and could not."""
    global _folder
    if _folder is None:
        from hpo.scratch import scratch_folder  # it imports this module's importer

        _folder = scratch_folder("starterrors")
        atexit.register(_folder.cleanup)
    return Path(_folder.name)


def keep_start_errors() -> None:
    """Has an error that ends this process (the fork server) or a child forked from it, which
    multiprocessing hands to `sys.excepthook`, also written to `$HPO_START_ERRORS/<pid>`."""
    folder = os.environ.get(START_ERRORS_VAR)
    if not folder:
        return
    print_error = sys.excepthook

    def keep(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        try:
            with open(Path(folder) / str(os.getpid()), "w", encoding="utf-8") as kept:
                kept.writelines(traceback.format_exception_only(kind, error))
        except OSError:
            pass  # the caller then says only that it died while starting
        print_error(kind, error, trace)

    sys.excepthook = keep


def start_error(pid: int | None) -> str | None:
    """The error the child `pid` of this process's fork server died of while it started, if
    it kept one (`keep_start_errors`); read once (the file is removed)."""
    if _folder is None or pid is None:
        return None
    path = Path(_folder.name) / str(pid)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return text or None
