"""benchmarks/_common.py: what the benchmark scripts share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hpo.study import search_space
from hpo.tasks.imdb import IMDB

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
spec = importlib.util.spec_from_file_location("_common", BENCHMARKS / "_common.py")
assert spec is not None and spec.loader is not None
common = importlib.util.module_from_spec(spec)
sys.modules.setdefault("_common", common)
spec.loader.exec_module(common)


def test_family_defaults_fit_a_narrowed_space_and_are_the_families_own_without_one() -> None:
    plain = common.family_defaults(IMDB, "ngram")
    assert plain["seq_len"] == 1600 and plain["family"] == "ngram"
    space = search_space(
        IMDB, {"seq_len": [200, 400], "vocab_size": [10000], "nb_buckets": [262144]}
    )
    fitted = common.family_defaults(IMDB, "ngram", space)
    assert fitted["seq_len"] == 400 and fitted["vocab_size"] == 10000
    assert fitted["ngram_order"] == plain["ngram_order"]  # untouched where the space allows it
    nbsvm = common.family_defaults(IMDB, "nbsvm", space)
    assert nbsvm["nb_buckets"] == 262144 and nbsvm["seq_len"] == 400
