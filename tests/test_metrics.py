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


def test_multiclass_metrics_on_a_constructed_case() -> None:
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # right, confidence 0.7
            [0.1, 0.3, 0.6],  # wrong (2), the label ranked second
            [0.2, 0.2, 0.6],  # right, confidence 0.6
            [0.5, 0.4, 0.1],  # wrong (0), label 2 ranked third
        ]
    )
    assert metrics.accuracy(labels, probabilities) == 0.5
    assert metrics.top_k_accuracy(labels, probabilities, 2) == 0.75
    assert metrics.top_k_accuracy(labels, probabilities, 3) == 1.0
    expected = -np.mean(np.log([0.7, 0.3, 0.6, 0.1]))
    assert metrics.log_loss(labels, probabilities) == pytest.approx(expected)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, probabilities, 3), [[1, 0, 0], [0, 0, 1], [1, 0, 1]]
    )
    assert metrics.per_class_accuracy(labels, probabilities, 3) == [1.0, 0.0, 0.5]
    # Top-label calibration: bins 0.5 (one wrong), 0.6 (one right, one wrong), 0.7 (one right).
    gaps = [abs(0.5 - 0), 2 * abs(0.6 - 0.5), abs(0.7 - 1)]
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(sum(gaps) / 4)
    assert set(metrics.summary(labels, probabilities)) == {
        "accuracy",
        "top3_accuracy",
        "log_loss",
        "ece",
    }
    assert metrics.chance_accuracy(probabilities) == pytest.approx(1 / 3)


def test_binary_and_two_class_softmax_agree() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 100)
    positive = rng.uniform(0.01, 0.99, 100)
    softmax = np.stack([1 - positive, positive], axis=1)
    assert metrics.accuracy(labels, positive) == metrics.accuracy(labels, softmax)
    assert metrics.log_loss(labels, positive) == pytest.approx(metrics.log_loss(labels, softmax))
    # A model's [n, 1] sigmoid output is read as binary, [n, k] as multi-class.
    assert metrics.as_probabilities(positive[:, None]).shape == (100,)
    assert metrics.as_probabilities(softmax).shape == (100, 2)
    weights = np.array([0.25, 0.75])
    blended = metrics.blend(weights, np.stack([softmax, softmax[::-1]]))
    np.testing.assert_allclose(blended, 0.25 * softmax + 0.75 * softmax[::-1])


def test_probabilities_and_blends_are_float64_whatever_the_model_gave() -> None:
    # A mixed-precision model's sigmoid output is float32 and [n, 1]; the ensemble's weights
    # may be float32 too. Metrics and blends are computed in float64 on `[n]`.
    sigmoid = np.array([[0.2], [0.9]], dtype=np.float32)
    p = metrics.as_probabilities(sigmoid)
    assert p.dtype == np.float64 and p.shape == (2,)
    members = np.stack([sigmoid[:, 0], 1 - sigmoid[:, 0]])
    blended = metrics.blend(np.array([0.25, 0.75], dtype=np.float32), members)
    assert blended.dtype == np.float64
    np.testing.assert_allclose(blended, [0.65, 0.3], rtol=1e-6)
