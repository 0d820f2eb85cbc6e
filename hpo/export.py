"""`python -m hpo.export` is `hpo export` (the code lives in `hpo.ensemble.export_command`)."""

from __future__ import annotations

import sys

from hpo.ensemble.export_command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
