"""`hpo.search(...)`, `hpo.ensemble(...)` and `hpo.distill(...)`: packages that are also the
public functions.

`hpo.search`, `hpo.ensemble` and `hpo.distill` name both a package (whose modules the commands
and tests import) and a function of the public API (`hpo.api`). Python sets a package as an
attribute of its parent whenever it is imported, so a function of the same name in
`hpo/__init__.py` would be replaced by the package; instead the package itself is made
callable, and calls the function.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["make_callable"]


class _CallablePackage(types.ModuleType):
    __function__: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__function__(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by name, as a module is: cloudpickle sends `hpo.search` along with a user's
        # function that calls `tuner.search` (any name a package has as a submodule), and its
        # reducer for modules does not apply to a subclass.
        return importlib.import_module, (self.__name__,)


def make_callable(package: str, function: Callable[..., Any]) -> None:
    """Makes the package `package` (already in `sys.modules`) call `function` when called."""
    module = sys.modules[package]
    module.__class__ = _CallablePackage
    module.__function__ = function  # type: ignore[attr-defined]
    module.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    if module.__doc__ is not None:  # None under python -OO, which drops docstrings
        call = f"Called as `hpo.{package.rpartition('.')[2]}(...)`"
        module.__doc__ += f"\n{call}:\n\n{function.__doc__ or ''}"
