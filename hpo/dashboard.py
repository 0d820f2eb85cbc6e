"""`python -m hpo.dashboard` is `hpo dashboard` (the code lives in `hpo.inspection.dashboard`)."""

from __future__ import annotations

import sys

from hpo.inspection.dashboard import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
