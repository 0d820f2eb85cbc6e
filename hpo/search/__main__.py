"""`python -m hpo.search` is `hpo search`."""

from __future__ import annotations

import sys

from hpo.search.command import main

sys.exit(main())
