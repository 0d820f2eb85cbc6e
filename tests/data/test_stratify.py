from __future__ import annotations

import numpy as np
import pytest

from hpo.data import stratify
from hpo.errors import ConfigError


def test_stratified_split_keeps_every_class_on_both_sides() -> None:
    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    train, val = stratify.stratified_split(labels, 20, seed=1)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(100))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    np.testing.assert_array_equal(np.bincount(labels[val]), [10, 6, 3, 1])
    again = stratify.stratified_split(labels, 20, seed=1)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(stratify.stratified_split(labels, 20, seed=2)[1], val)
    # Rounding would give the smallest class no validation image; it still gets one.
    _, small = stratify.stratified_split(labels, 5, seed=0)
    assert set(labels[small]) == {0, 1, 2, 3} and len(small) == 5


@pytest.mark.parametrize("val_size", [3, 97, 0])
def test_stratified_split_rejects_sizes_that_drop_a_class(val_size: int) -> None:
    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    with pytest.raises(ConfigError, match=rf"between 4 and 96 .*got {val_size}"):
        stratify.stratified_split(labels, val_size, seed=0)


def test_stratified_subset_draws_from_index_in_proportion() -> None:
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    index = np.arange(0, 100, 2)  # 30, 15 and 5 of each class
    subset = stratify.stratified_subset(labels, index, 10, seed=0)
    assert set(subset) <= set(index) and (np.diff(subset) > 0).all()
    np.testing.assert_array_equal(np.bincount(labels[subset]), [6, 3, 1])
    np.testing.assert_array_equal(stratify.stratified_subset(labels, index, 10, seed=0), subset)
    np.testing.assert_array_equal(stratify.stratified_subset(labels, index, 50, seed=0), index)
    for size in (2, 51):
        with pytest.raises(ConfigError, match=rf"train_size .*between 3 .* and 50 .*got {size}"):
            stratify.stratified_subset(labels, index, size, seed=0)
