from __future__ import annotations

import numpy as np
import pytest

from hpo import metrics


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.uniform(0, 1, 200) + labels * 0.3, 1)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.roc_auc(labels, scores) == pytest.approx(pairwise)


def test_perfect_and_constant_predictions() -> None:
    labels = np.array([0, 1, 0, 1])
    perfect = np.array([0.0, 1.0, 0.0, 1.0])
    assert metrics.accuracy(labels, perfect) == 1.0
    assert metrics.roc_auc(labels, perfect) == 1.0
    assert metrics.log_loss(labels, perfect) < 1e-6
    half = np.full(4, 0.5)
    assert metrics.log_loss(labels, half) == pytest.approx(np.log(2))
    assert metrics.expected_calibration_error(labels, half) == pytest.approx(0.0)
    assert metrics.roc_auc(labels, half) == 0.5


def test_calibration_error_of_overconfident_predictions() -> None:
    labels = np.array([1] * 7 + [0] * 3)
    probabilities = np.full(10, 0.95)
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(0.25)
    _, rate, counts = metrics.reliability_curve(labels, probabilities)
    assert counts.tolist() == [10]
    assert rate.tolist() == [0.7]
