"""`python -m hpo.report` is `hpo report` (the code lives in `hpo.inspection.report`)."""

from __future__ import annotations

import sys

from hpo.inspection.report import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
