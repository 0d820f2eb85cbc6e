from __future__ import annotations

from functools import partial

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
        # Text studies use it too: it says examples, not images.
        said = rf"between 3 \(one example per class\) and 50 \(the training examples .*got {size}"
        with pytest.raises(ConfigError, match=said):
            stratify.stratified_subset(labels, index, size, seed=0)


def _grouped_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 examples of 3 classes (shares 1/2, 1/3, 1/6) in 60 groups of 1 to 9 examples."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, 60)
    groups = np.repeat([f"g{i}" for i in range(60)], sizes).astype(object)
    labels = rng.choice(3, len(groups), p=[1 / 2, 1 / 3, 1 / 6]).astype(np.int32)
    return labels, groups


def test_grouped_split_keeps_groups_whole_and_classes_on_both_sides() -> None:
    labels, groups = _grouped_data()
    train, val = stratify.grouped_split(labels, groups, 60, seed=1)
    assert not set(groups[train]) & set(groups[val])
    assert sorted([*train, *val]) == list(range(len(labels)))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(val, np.sort(val))
    assert set(labels[val]) == set(labels[train]) == {0, 1, 2}
    assert 40 <= len(val) <= 60
    shares = np.bincount(labels[val]) / len(val)
    np.testing.assert_allclose(shares, np.bincount(labels) / len(labels), atol=0.1)


def test_grouped_split_is_seeded() -> None:
    labels, groups = _grouped_data()
    first = stratify.grouped_split(labels, groups, 60, seed=3)
    again = stratify.grouped_split(labels, groups, 60, seed=3)
    other = stratify.grouped_split(labels, groups, 60, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_grouped_split_rescues_a_class_whose_groups_exceed_its_quota() -> None:
    # Class 1's quota is 1 (10% of 10) but it only comes in pairs: strict filling skips it.
    labels = np.array([0] * 16 + [1, 1, 1, 1])
    groups = np.array([f"a{i}" for i in range(16)] + ["b", "b", "c", "c"])
    train, val = stratify.grouped_split(labels, groups, 10, seed=0)
    assert set(labels[val]) == set(labels[train]) == {0, 1}
    assert not set(groups[train]) & set(groups[val])


def test_grouped_split_names_the_fix_when_groups_are_too_coarse() -> None:
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    # All of class 1 is in group "b": whichever side gets it, the other has no class 1.
    with pytest.raises(ConfigError, match=r"classes \[1\] sit in too few groups.*no group_col"):
        stratify.grouped_split(np.array([0, 0, 1, 1, 0, 0]), groups, 2, seed=0)
    with pytest.raises(ConfigError, match="between 2 and 4"):
        stratify.grouped_split(np.array([0, 0, 1, 1, 0, 1]), groups, 5, seed=0)


def test_grouped_split_without_groups_is_stratified() -> None:
    labels, _ = _grouped_data()
    got = stratify.grouped_split(labels, None, 60, seed=2)
    expected = stratify.stratified_split(labels, 60, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert len(got[1]) == 60


def test_largest_remainders_fill_the_gap_that_flooring_leaves() -> None:
    # 10% of 47/33/20 is 4.7/3.3/2.0: floors sum to 9, the one left goes to the .7.
    labels = np.repeat([0, 1, 2], [47, 33, 20])
    _, val = stratify.stratified_split(labels, 10, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [5, 3, 2])


def test_the_one_per_class_minimum_is_paid_by_the_largest_class() -> None:
    # 4% of 90/5/5 floors to 3/0/0; one each for the small classes makes 5, one over: the
    # class with room above its minimum gives it back.
    labels = np.repeat([0, 1, 2], [90, 5, 5])
    _, val = stratify.stratified_split(labels, 4, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [2, 1, 1])


def test_a_full_class_takes_no_remainder() -> None:
    # 96% of 2/98 is 1.92/94.08: the .92 would put class 0 wholly in validation.
    labels = np.repeat([0, 1], [2, 98])
    train, val = stratify.stratified_split(labels, 96, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [1, 95])
    assert set(labels[train]) == {0, 1}


def test_the_smallest_sizes_allowed_are_accepted() -> None:
    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    _, val = stratify.stratified_split(labels, 4, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [1, 1, 1, 1])
    _, val = stratify.stratified_split(labels, 96, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [49, 29, 14, 4])
    subset = stratify.stratified_subset(labels, np.arange(100), 4, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[subset]), [1, 1, 1, 1])
    # A class of one example fits on one side only, whatever the size: named, not a range.
    with pytest.raises(ConfigError, match=r"1 class\(es\) have fewer: 'rare' \(1\)\. Add"):
        stratify.stratified_split(np.array([0, 1, 1]), 2, seed=0, names=["rare", "common"])
    with pytest.raises(ConfigError, match=r"have fewer: 2 \(1\), 3 \(1\)\."):
        stratify.grouped_split(np.array([0, 0, 1, 1, 2, 3]), np.arange(6), 3, seed=0)


def test_a_class_too_small_to_split_is_counted_after_a_held_out_test_split() -> None:
    # "'rare' (1)" read as wrong where the class's folder held 2 files: one went to the test
    # split first.
    labels = np.repeat([0, 1], [10, 1])
    for split in (stratify.stratified_split, partial(stratify.grouped_split, groups=None)):
        with pytest.raises(ConfigError, match=r"'rare' \(1\)\. Add examples"):
            split(labels=labels, val_size=4, seed=0, names=["common", "rare"])
        with pytest.raises(ConfigError, match=r"'rare' \(1\), counted after the test split was"):
            split(labels=labels, val_size=4, seed=0, names=["common", "rare"], held_out=True)
