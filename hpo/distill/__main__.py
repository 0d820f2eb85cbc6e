"""`python -m hpo.distill` is `hpo distill`."""

from __future__ import annotations

import sys

from hpo.distill.command import main

sys.exit(main())
