"""How to combine, after the ensemble: one fast model trained on the ensemble's soft labels.

`teacher` reads the exported ensemble back and computes its probabilities on the study's
training and validation inputs, `student` trains one model of the study on them in its own
process (as a trial trains), `latency` times models side by side, `build` evaluates the student
once on test beside the ensemble and its best member and exports it, `report` writes it up.
"""

from __future__ import annotations

from hpo import api
from hpo._callable import make_callable
from hpo.distill.build import DISTILLED_DIR, DistillResult, distill_ensemble
from hpo.distill.command import main

__all__ = ["DISTILLED_DIR", "DistillResult", "distill_ensemble", "main"]

# `hpo.distill(...)` is the public API's function (`hpo.api.distill`), this package is callable.
make_callable(__name__, api.distill)
