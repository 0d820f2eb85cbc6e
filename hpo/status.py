"""`python -m hpo.status` is `hpo status` (the code lives in `hpo.inspection.status`)."""

from __future__ import annotations

import sys

from hpo.inspection.status import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
