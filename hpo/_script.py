"""A script's top level, which the trial processes of a search it starts must not run again.

Each child process that Python's multiprocessing starts (spawn, fork server) begins by running
the script that started its parent again (`python script.py`, `python -m package.module`,
`ipython script.ipy`; not a notebook), to find what it was given by name. hpo gives its
children what they need of the user's code by value (the hypermodel and the classes `__main__`
registered: see `hpo.models.portable`), so they need nothing of the script. Run again, a search
at the script's top level (outside `if __name__ == "__main__":`, as KerasTuner's examples write
it) would run again in each child, and a `Tuner(..., overwrite=True)` before it delete the study
being searched. So while the script's main thread runs outside that guard, children start with
the script hidden from them, as a notebook's is (`main_hidden_from_children`).
"""

from __future__ import annotations

import ast
import functools
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.errors import HpoError

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "check_not_starting_child",
    "child_starting",
    "main_hidden_from_children",
    "script_outside_guard",
]


def child_starting() -> bool:
    """Whether this process is a child that is running its parent's script to start."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def check_not_starting_child(what: str) -> None:
    """Refuses `what` (a search) called by a child process while it runs its parent's script.

    hpo's children never run the part of a script a search is called from
    (`main_hidden_from_children`); this stops what would otherwise loop, should one ever.

    Raises:
        HpoError: Called while a child process starts; names the fix.
    """
    if child_starting():
        raise HpoError(
            f"{what} ran while a trial process was starting (it ran the script that started "
            f'the search again); put {what} under `if __name__ == "__main__":` in your script.'
        )


def main_hidden_from_children() -> bool:
    """Whether children started now must not run `__main__` again: it has no file to run
    (a script piped to `python -`), or its main thread is at the script's top level outside
    `if __name__ == "__main__":`, where what it runs now would run again in each child, or
    it runs `__main__` from code other than the script's own (IPython runs a `.ipy` script as a
    cell: `_runs_elsewhere`), which no guard of the script's keeps from running again."""
    path = _script_children_run()
    if path is None:
        return False
    try:
        return _outside_guard(path, elsewhere_counts=True)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True  # no file a child could run (or not one Python could)


def script_outside_guard() -> Path | None:
    """The script (`__main__`'s file) whose top level the main thread runs outside `if
    __name__ == "__main__":` now, if it does; importing it would run that part again."""
    file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not file:
        return None
    try:
        return Path(file) if _outside_guard(Path(file)) else None
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _outside_guard(path: Path, *, elsewhere_counts: bool = False) -> bool:
    ranges = _guarded_lines(str(path), path.stat().st_mtime_ns)
    main = sys._current_frames().get(threading.main_thread().ident or -1)
    line = _top_level_line(main, path)
    if line is None:
        return elsewhere_counts and _runs_elsewhere(main)
    return not any(first <= line <= last for first, last in ranges)


def _script_children_run() -> Path | None:
    """The file each child process runs first, as multiprocessing decides it; None if none."""
    data = multiprocessing.spawn.get_preparation_data("hpo")
    if "init_main_from_path" in data:
        return Path(data["init_main_from_path"])
    name = data.get("init_main_from_name")
    if name is None or name == "__main__" or name.endswith(".__main__"):
        return None  # `python -m package`: multiprocessing does not run its __main__ again
    file = getattr(sys.modules["__main__"], "__file__", None)
    return Path(file) if file else None


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str, mtime_ns: int) -> tuple[tuple[int, int], ...]:
    """The line ranges of the script's top-level `if __name__ == "__main__":` blocks (the
    modification time keys the cache)."""
    del mtime_ns
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), path)
    return tuple(
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.If) and _is_main_test(node.test)
    )


def _top_level_line(frame: FrameType | None, script: Path) -> int | None:
    """The line of the script's top level, run as `__main__`, that `frame` runs within, if any.

    Only the script's own code counts: a child process that multiprocessing started runs as
    `__main__` too, from `python -c ...` (`<string>`, line 1), while the script it ran again
    is `__mp_main__`; that line is none of the script's.
    """
    line = None
    target: str | None = None
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            if target is None:
                target = os.path.realpath(script)
            if os.path.realpath(code.co_filename) == target:
                line = frame.f_lineno
        frame = frame.f_back
    return line


def _runs_elsewhere(frame: FrameType | None) -> bool:
    """Whether `frame` runs the top level of `__main__` itself (its namespace, not a copy)
    from code of another name than the script's (`_top_level_line` found none of its lines).

    IPython runs a script of its own (`ipython search.ipy`, `%run search.ipy`; a `.ipynb`
    too) as one cell, named as its cells are (`<ipython-input-1-...>`, a file of the
    kernel's), with `__main__.__file__` the script; `python -i search.py` runs its prompt
    (`<stdin>`) in the script's `__main__`. Nothing there is under the script's guard, and a
    child would run the whole script again. A child process that multiprocessing started runs
    its bootstrap (`python -c ...`) in the namespace it started with, which the script it ran
    again replaced as `__main__`: that is not this.
    """
    main = sys.modules.get("__main__")
    namespace = None if main is None else vars(main)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is namespace:
            return True
        frame = frame.f_back
    return False


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    values = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(values) == 1
