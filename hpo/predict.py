"""`python -m hpo.predict` is `hpo predict` (the code lives in `hpo.ensemble.predict`)."""

from __future__ import annotations

import sys

from hpo.ensemble.predict import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
