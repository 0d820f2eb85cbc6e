"""How to combine: the best trials of a study into one weighted, evaluated, exported model.

`selection` picks verified members, `weighting` fits their weights on validation predictions,
`build` evaluates once on the test set and writes the report (`report`, `figure`), `export`
makes one Keras model of them and `predict` scores new inputs with it.
"""

from __future__ import annotations

from hpo.ensemble.build import EnsembleResult, build_ensemble
from hpo.ensemble.command import main
from hpo.ensemble.export import EXPORT_NAME, export_ensemble
from hpo.ensemble.selection import Member, ranked_trials, select_members

__all__ = [
    "EXPORT_NAME",
    "EnsembleResult",
    "Member",
    "build_ensemble",
    "export_ensemble",
    "main",
    "ranked_trials",
    "select_members",
]
