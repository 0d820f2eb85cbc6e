"""`python -m hpo.gc` is `hpo gc` (the code lives in `hpo.artifacts`)."""

from __future__ import annotations

import sys

from hpo.artifacts import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
