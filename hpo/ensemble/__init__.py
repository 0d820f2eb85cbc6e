"""How to combine: the best trials of a study into one weighted, evaluated, exported model.

`selection` gathers the pool (trials whose validation predictions verify) and loads members,
`weighting` and `pool` fit weights on validation predictions (the top trials', and a guarded
selection from the whole pool), `choice` keeps one of the two and `calibration` fits its
temperature, `build` evaluates once on the test set and writes the report (`report`,
`figure`, and `evaluated`: the test predictions with their checksum), `export` makes one
Keras model of them and `predict` scores new inputs with it. `serving` writes that model as
`.keras`, a SavedModel or ONNX (`onnx_export`) and checks each as its runtime loads it;
`exporter` does so for one trial, or for an ensemble already built (`hpo export`).
"""

from __future__ import annotations

from hpo import api
from hpo._callable import make_callable
from hpo.ensemble.build import EnsembleResult, build_ensemble
from hpo.ensemble.command import main
from hpo.ensemble.export import EXPORT_NAME, export_ensemble
from hpo.ensemble.selection import Member, ranked_trials

__all__ = [
    "EXPORT_NAME",
    "EnsembleResult",
    "Member",
    "build_ensemble",
    "export_ensemble",
    "main",
    "ranked_trials",
]

# `hpo.ensemble(...)` is the public API's function (`hpo.api.ensemble`), this package is callable.
make_callable(__name__, api.ensemble)
