"""Seeded, stratified splits and subsets of labelled examples: every class on every side, and
every group (a movie, an author) on one side only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpo.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["grouped_split", "stratified_split", "stratified_subset"]


def stratified_split(
    labels: np.ndarray,
    val_size: int,
    seed: int,
    names: Sequence[str] | None = None,
    *,
    held_out: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into train and validation, keeping class proportions (seeded).

    Every class appears on both sides; per-class validation counts are the largest-remainder
    rounding of `val_size` times the class's share. `held_out` says that a test split was held
    out of the examples before (`hpo.data.holdout`), which a too small class's message names.

    Returns:
        (train_index, val_index), each sorted.

    Raises:
        ConfigError: A class of fewer than 2 examples (named by `names`, if given), or a
            `val_size` that leaves some class out of one side.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    _check_val_size(classes, counts, val_size, names, held_out)
    quota = _allocate(counts, val_size, np.ones_like(counts), counts - 1)
    val_index = _pick(labels, np.arange(n), classes, quota, seed)
    return np.setdiff1d(np.arange(n), val_index), val_index


def stratified_subset(labels: np.ndarray, index: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded subset of `index` of `size` items, class proportions kept, every class in it.

    Args:
        labels: Class of every item; `index` points into it.
        index: The items to draw from (e.g. a train index from `stratified_split`).
        size: How many to keep (e.g. data.train_size).
        seed: Seed of the draw.

    Returns:
        The chosen entries of `index`, sorted.

    Raises:
        ConfigError: `size` is below the number of classes or above `len(index)`.
    """
    classes, counts = np.unique(labels[index], return_counts=True)
    if not len(classes) <= size <= len(index):
        raise ConfigError(
            f"data.train_size must be between {len(classes)} (one example per class) and "
            f"{len(index)} (the training examples left after the validation split), got "
            f"{size}. Pick one in that range."
        )
    quota = _allocate(counts, size, np.ones_like(counts), counts)
    return _pick(labels[index], np.asarray(index), classes, quota, seed)


def _check_val_size(
    classes: np.ndarray,
    counts: np.ndarray,
    val_size: int,
    names: Sequence[str] | None,
    held_out: bool,
) -> None:
    k, n = len(counts), int(counts.sum())
    small = [
        f"{names[c] if names is not None else c!r} ({count})"
        for c, count in zip(classes.tolist(), counts.tolist(), strict=True)
        if count < 2
    ]
    if small:
        after = (
            ", counted after the test split was held out of each class (a class of 2 gives "
            "it 1: a class then needs 3 at least)"
            if held_out
            else ""
        )
        raise ConfigError(
            f"every class needs 2 training examples at least, one for the validation split and "
            f"one to train on; {len(small)} class(es) have fewer: {', '.join(small[:5])}{after}. "
            f"Add examples of them, or leave them out of the data."
        )
    if not k <= val_size <= n - k:
        raise ConfigError(
            f"data.val_size must leave every class on both sides: between {k} and {n - k} for "
            f"{n} examples of {k} classes (smallest class: {counts.min()}), got {val_size}. "
            "Pick a val_size in that range."
        )


def _allocate(counts: np.ndarray, size: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    exact = size * counts / counts.sum()
    quota = np.clip(np.floor(exact).astype(np.int64), low, high)
    # Flooring and clipping leave a gap of at most one per class; close it by remainder.
    while (gap := size - int(quota.sum())) != 0:
        step = 1 if gap > 0 else -1
        room = np.flatnonzero(quota < high if step > 0 else quota > low)
        pick = room[np.argmax(step * (exact[room] - quota[room]))]
        quota[pick] += step
    return quota


def _pick(
    labels: np.ndarray, index: np.ndarray, classes: np.ndarray, quota: np.ndarray, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(index[labels == c])[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray | None,
    val_size: int,
    seed: int,
    names: Sequence[str] | None = None,
    *,
    held_out: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into train and validation (seeded), keeping every group on one side.

    Without groups this is `stratified_split`. With groups: each class's validation quota is
    its share of `val_size` (largest remainder, at least 1, at most all but one, as in
    `stratified_split`). Groups are visited in a seeded random order and one moves to
    validation whole when no class would pass its quota; the visit stops once every quota is
    met. A class still without a validation example then takes the first remaining group (in
    the same order) that holds it. So validation has about `val_size` texts (at most that, before
    such a rescue), in class proportions as close to the data's as the group sizes allow.

    Args:
        labels: Class index of every example.
        groups: Group id of every example, or None.
        val_size: About how many examples validation gets (data.val_size).
        seed: Seed of the split.
        names: The classes' names by index, for messages.
        held_out: Whether a test split was held out of the examples before, for messages.

    Returns:
        (train_index, val_index), each sorted.

    Raises:
        ConfigError: `val_size` or the grouping leaves some class out of one side.
    """
    if groups is None:
        return stratified_split(labels, val_size, seed, names, held_out=held_out)
    classes, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
    k = len(classes)
    _check_val_size(classes, counts, val_size, names, held_out)
    ids, group_of = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    per_group = np.zeros((len(ids), k), dtype=np.int64)
    np.add.at(per_group, (group_of, y), 1)
    quota = _allocate(counts, val_size, np.ones_like(counts), counts - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    in_val = np.zeros(len(ids), dtype=bool)
    taken = np.zeros(k, dtype=np.int64)
    for group in order:
        if (taken + per_group[group] <= quota).all():
            in_val[group] = True
            taken += per_group[group]
            if (taken == quota).all():
                break
    for c in range(k):
        if taken[c] == 0:
            rescue = next(g for g in order if not in_val[g] and per_group[g, c])
            in_val[rescue] = True
            taken += per_group[rescue]
    if (bad := (taken == 0) | (taken == counts)).any():
        raise ConfigError(
            f"the split by group cannot put every class on both sides at data.val_size="
            f"{val_size}: classes {classes[bad].tolist()} sit in too few groups "
            f"({[int((per_group[:, c] > 0).sum()) for c in np.flatnonzero(bad)]}). Use a "
            "larger val_size, a group_column with smaller groups, or no group_column."
        )
    val_mask = in_val[group_of]
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
