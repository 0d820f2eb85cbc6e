from __future__ import annotations

import warnings

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


def test_summary_rounds_each_headline_metric_to_six_places() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([0.1234567, 0.8, 0.3, 0.4, 0.95, 0.55])
    got = metrics.summary(y, p)
    expected = {
        "accuracy": metrics.accuracy(y, p),
        "roc_auc": metrics.roc_auc(y, p),
        "log_loss": metrics.log_loss(y, p),
        "ece": metrics.expected_calibration_error(y, p),
    }
    assert got == {k: round(v, 6) for k, v in expected.items()}
    assert got["log_loss"] != expected["log_loss"] and got["ece"] != expected["ece"]
    # Multi-class: top-3 accuracy instead of ROC AUC; a label 4th in its row is a top-3 miss.
    y3 = np.array([1, 3])
    p3 = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    got3 = metrics.summary(y3, p3)
    assert list(got3) == ["accuracy", "top3_accuracy", "log_loss", "ece"]
    assert (got3["accuracy"], got3["top3_accuracy"]) == (0.0, 0.5)
    assert got3["log_loss"] == round(-(np.log(0.2) + np.log(0.1)) / 2, 6)


def test_edges_a_half_ties_and_empty_classes() -> None:
    # p = 0.5 is class 0; chance is 1/2 for a sigmoid output and 1/classes for a softmax.
    assert metrics.accuracy(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert metrics.predicted_class(np.array([0.5, 0.7])).tolist() == [0, 1]
    assert metrics.chance_accuracy(np.array([0.3, 0.6])) == 0.5
    assert metrics.chance_accuracy(np.full((2, 4), 0.25)) == 0.25
    # A probability of 1 falls in the last of the default 15 bins.
    mean_p, _, counts = metrics.reliability_curve(np.array([1, 1, 0]), np.array([1.0, 0.95, 0.05]))
    np.testing.assert_allclose(mean_p, [0.05, 0.975])
    np.testing.assert_array_equal(counts, [1, 2])
    default = metrics.expected_calibration_error(np.array([1, 0]), np.array([0.62, 0.68]))
    assert metrics.ECE_BINS == 15
    assert default == metrics.expected_calibration_error(
        np.array([1, 0]), np.array([0.62, 0.68]), 15
    )
    assert default != metrics.expected_calibration_error(
        np.array([1, 0]), np.array([0.62, 0.68]), 10
    )
    # A class never predicted nor seen still has its row and column; its accuracy is NaN,
    # silently.
    matrix = metrics.confusion_matrix(np.array([0, 0]), np.array([[0.9, 0.05, 0.05]] * 2), 3)
    assert matrix.tolist() == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_class = metrics.per_class_accuracy(np.array([0, 0]), np.array([[0.9, 0.1]] * 2), 2)
    assert per_class[0] == 1.0 and np.isnan(per_class[1])
    # float32 input is computed in float64: the same log-loss to the last bit.
    p32 = np.array([0.3, 0.7, 0.9], dtype=np.float32)
    y = np.array([0, 1, 1])
    assert metrics.log_loss(y, p32) == metrics.log_loss(y, p32.astype(np.float64))
    assert metrics.expected_calibration_error(y, p32) == metrics.expected_calibration_error(
        y, p32.astype(np.float64)
    )


def test_the_summary_s_ece_is_the_one_the_calibration_report_gives() -> None:
    # summary() used 10 bins and the report's calibration section 15: one report gave the same
    # ensemble's test predictions two ECEs (0.15 and 0.53 here, where the bins part them).
    from hpo.ensemble.calibration import ECE_BINS

    labels, probabilities = np.array([1, 0]), np.array([0.62, 0.68])
    calibrated = metrics.expected_calibration_error(labels, probabilities, ECE_BINS)
    assert metrics.summary(labels, probabilities)["ece"] == round(calibrated, 6)
    assert calibrated == pytest.approx(0.53)
