"""A search started from a script's top level, outside `if __name__ == "__main__":`, refused.

Each trial process starts by running the script that started the search again, as Python's
multiprocessing does to find the script's functions (`python script.py`; not `python -m
package`, nor a notebook). A search at the script's top level would run again in each of them:
the children fail before they can write a log, and a `Tuner(..., overwrite=True)` there would
delete the study being searched. So the search looks at the script before any child starts.
"""

from __future__ import annotations

import ast
import multiprocessing
import multiprocessing.spawn
import sys
from pathlib import Path

from hpo.errors import HpoError

__all__ = ["check_main_guard", "child_starting"]


def child_starting() -> bool:
    """Whether this process is a child that is running its parent's script to start."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def check_main_guard(what: str) -> None:
    """Refuses `what` (a search) called from where each trial process would call it again.

    Raises:
        HpoError: Called while a child process starts, or from a script's top level outside
            `if __name__ == "__main__":`; names the fix.
    """
    fix = (
        f'put {what} under `if __name__ == "__main__":` at the end of your script (a notebook '
        f"needs nothing): each trial process starts by running the script again"
    )
    if child_starting():
        raise HpoError(f"{what} ran while a trial process was starting; {fix}.")
    script = _script_children_run()
    line = _top_level_line()
    if script is None or line is None:
        return
    try:
        tree = ast.parse(script.read_text(), str(script))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return  # cannot tell: the children will say
    guarded = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.If) and _is_main_test(node.test)
    ]
    if any(first <= line <= last for first, last in guarded):
        return
    raise HpoError(f"{what} is called at the top level of {script} (line {line}); {fix}.")


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


def _top_level_line() -> int | None:
    """The line of the main module's top level that this call comes from, if any."""
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            line = frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return line


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
