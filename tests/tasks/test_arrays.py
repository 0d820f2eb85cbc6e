"""The arrays task: the study's copy of the arrays `hpo.Tuner.search` is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpo.tasks.arrays import fingerprint, save_study_arrays

if TYPE_CHECKING:
    from pathlib import Path


def test_the_same_examples_reshuffled_are_the_study_s_first_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype("float32")
    y = rng.integers(0, 3, size=60)
    w = rng.uniform(size=60).astype("float32")
    cache = tmp_path / "cache"
    first = save_study_arrays(cache, x[:40], y[:40], x[40:], y[40:], w[:40])

    # Running the same code again with an unseeded `Dataset.shuffle`: the same examples,
    # each with its own label and weight, in another order (the validation rows too). The
    # first copy serves, so the study's recorded fingerprint still matches.
    train, val = rng.permutation(40), 40 + rng.permutation(20)
    again = save_study_arrays(cache, x[train], y[train], x[val], y[val], w[train])
    assert again == first
    assert fingerprint(again) == fingerprint(first)
    assert [f.name for f in cache.glob("arrays-*")] == [first.name]
    # Its validation rows keep their order, that of the earlier trials' predictions.
    np.testing.assert_array_equal(np.load(again / "y_val.npy"), y[40:])

    # Other data are another copy: a changed value, labels paired with other inputs, other
    # weights, and the same rows split otherwise (a `validation_split` of reshuffled data).
    changed = x.copy()
    changed[3, 1] += 1.0
    others = [
        (changed[:40], y[:40], changed[40:], y[40:], w[:40]),
        (x[:40], y[:40][::-1], x[40:], y[40:], w[:40]),
        (x[:40], y[:40], x[40:], y[40:], w[:40][::-1]),
        (x[:40], y[:40], x[40:], y[40:], None),
        (x[20:], y[20:], x[:20], y[:20], w[20:]),
    ]
    folders = {save_study_arrays(cache, *arrays) for arrays in others}
    assert first not in folders
    assert len(folders) == len(others)
