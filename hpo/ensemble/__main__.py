"""`python -m hpo.ensemble` is `hpo ensemble`."""

from __future__ import annotations

import sys

from hpo.ensemble.command import main

sys.exit(main())
