"""An exclusive lock on a file, the kernel's (`flock`): a process that dies holding it holds
it no more."""

from __future__ import annotations

import contextlib
import fcntl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["exclusive_lock"]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Waits for the lock of `path` (made if missing, never emptied) and holds it inside."""
    with open(path, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield
