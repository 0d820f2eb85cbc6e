from __future__ import annotations

import numpy as np
import pytest

from hpo import metrics
from hpo.ensemble.choice import Source, choose
from hpo.ensemble.pool import guarded_selection, halves
from hpo.ensemble.weighting import caruana_selection

N = 600
LABELS = np.random.default_rng(7).integers(0, 2, N)
# Each test draws its members from a generator of its own: a shared one would give each test
# data that depends on which tests pytest-xdist ran before it in the same process.


def _informative(rng: np.random.Generator, strength: float = 1.2) -> np.ndarray:
    """A member that knows the label, with noise of its own: sigmoid of a noisy margin."""
    margin = (2 * LABELS - 1) * strength + rng.normal(0, 1, N)
    return 1 / (1 + np.exp(-margin))


def _half_fitter(rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
    """Confidently right on the examples in `first`, confidently guessing on the others: a
    member that fits one half's noise (by chance or by leaking it) and knows nothing else."""
    right = np.where(LABELS == 1, 0.97, 0.03)
    guess = rng.choice([0.03, 0.97], N)
    return np.where(first, right, guess)


def test_halves_are_stratified_and_fixed() -> None:
    labels = np.array([0] * 7 + [1] * 13 + [2] * 4)
    first = halves(labels)
    assert abs(int(first.sum()) - int((~first).sum())) <= 1
    for label in (0, 1, 2):
        assert abs(int(first[labels == label].sum()) - int((~first[labels == label]).sum())) <= 1
    np.testing.assert_array_equal(first, halves(labels))


def test_selection_picks_the_informative_members_out_of_a_noisy_pool() -> None:
    rng = np.random.default_rng(1)
    informative = [_informative(rng) for _ in range(3)]
    noise = [rng.uniform(0.05, 0.95, N) for _ in range(4)] + [np.full(N, 0.5)]
    # Noise first: a pool ranks trials by accuracy, and a lucky noise member can rank high.
    order = [noise[0], informative[0], noise[1], noise[2], informative[1], noise[3]]
    pool = np.stack([*order, informative[2], noise[4]])
    selection = guarded_selection(pool, LABELS, max_members=5)
    assert set(np.flatnonzero(selection.weights)) <= {1, 4, 6}
    assert np.count_nonzero(selection.weights) >= 2
    blended = metrics.blend(selection.weights, pool)
    assert metrics.log_loss(LABELS, blended) < min(metrics.log_loss(LABELS, p) for p in informative)
    assert selection.weights.sum() == pytest.approx(1.0)
    assert not selection.fallback


@pytest.mark.parametrize("fitted_half", [0, 1])
def test_selection_never_picks_a_member_that_fits_only_one_half(fitted_half: int) -> None:
    rng = np.random.default_rng(2)
    first = halves(LABELS)
    fitter = _half_fitter(rng, first if fitted_half == 0 else ~first)
    pool = np.stack([fitter, _informative(rng), _informative(rng), _informative(rng, 0.8)])
    # Unguarded selection on the whole validation set takes it: it is right on half of it.
    unguarded, _ = caruana_selection(pool, LABELS)
    assert unguarded[0] > 0
    selection = guarded_selection(pool, LABELS, max_members=4)
    assert selection.weights[0] == 0
    assert np.count_nonzero(selection.weights) >= 1


def test_a_pool_of_duplicates_keeps_the_best_ranked_copy() -> None:
    rng = np.random.default_rng(3)
    member = _informative(rng)
    selection = guarded_selection(np.stack([member] * 6), LABELS, max_members=3)
    np.testing.assert_array_equal(selection.weights, [1, 0, 0, 0, 0, 0])
    assert selection.rounds == 1
    # Duplicates beside other members: copies tie, and only the first copy gets weight.
    other = _informative(rng)
    selection = guarded_selection(np.stack([member, other, member, other]), LABELS, 4)
    assert selection.weights[2] == selection.weights[3] == 0
    # Copies of a member no better than chance: nothing qualifies; the best-ranked stands alone.
    chance = np.full(N, 0.5)
    selection = guarded_selection(np.stack([chance] * 3), LABELS, 3)
    np.testing.assert_array_equal(selection.weights, [1, 0, 0])
    assert selection.fallback


def test_selection_holds_at_most_max_members_and_works_on_softmax_members() -> None:
    # One of 30 draws of these members has a single best one; this one has not.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    eye = np.eye(3)
    members = [
        np.clip(0.6 * eye[labels] + rng.dirichlet(np.ones(3), len(labels)) * 0.4, 1e-3, 1)
        for _ in range(6)
    ]
    pool = np.stack([m / m.sum(axis=1, keepdims=True) for m in members])
    for cap in (1, 2, 6):
        selection = guarded_selection(pool, labels, max_members=cap)
        assert 1 <= np.count_nonzero(selection.weights) <= cap
    assert np.count_nonzero(guarded_selection(pool, labels, max_members=6).weights) >= 2


def test_choose_keeps_the_pool_when_the_top_trials_are_weak_and_scores_both_cross_fitted() -> None:
    # The two best-ranked trials are weak and overconfident; better ones rank lower.
    rng = np.random.default_rng(4)
    weak = [np.where(_informative(rng, 0.5) > 0.5, 0.999, 0.001) for _ in range(2)]
    pool = np.stack([*weak, _informative(rng, 1.5), _informative(rng, 1.5)])
    choice = choose(pool, LABELS, top=2)
    assert choice.chosen is Source.POOL
    assert choice.cross_fitted["pool"] < choice.cross_fitted["top"]
    np.testing.assert_array_equal(choice.top.weights[2:], 0)
    assert choice.weights is choice.pool.weights
    # The plain ensemble's score: Caruana weights fitted on each half, scored on the other.
    first = halves(LABELS, 1)
    losses = []
    for fit, score in ((first, ~first), (~first, first)):
        weights = caruana_selection(pool[:2, fit], LABELS[fit])[0]
        losses.append(metrics.log_loss(LABELS[score], weights @ pool[:2, score]) * score.sum())
    assert choice.cross_fitted["top"] == pytest.approx(sum(losses) / N, abs=1e-6)
