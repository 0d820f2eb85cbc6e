from __future__ import annotations

import numpy as np
import pytest

from hpo import metrics
from hpo.ensemble.weighting import Method, caruana_selection, fit_weights

LABELS = np.array([1, 0] * 50)


def _confident(correct_mask: np.ndarray, confidence: float) -> np.ndarray:
    """Probabilities that are right with `confidence` where the mask is set, 0.5 elsewhere."""
    right = np.where(LABELS == 1, confidence, 1 - confidence)
    return np.where(correct_mask, right, 0.5)


def test_caruana_combines_complementary_members_and_drops_a_bad_one() -> None:
    first_half = np.arange(len(LABELS)) < len(LABELS) // 2
    a = _confident(first_half, 0.9)
    b = _confident(~first_half, 0.9)
    bad = 1 - _confident(np.ones_like(first_half), 0.8)
    weights, rounds = caruana_selection(np.stack([a, bad, b]), LABELS)
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.5])
    assert rounds == 2
    averaged = (a + b) / 2
    assert metrics.log_loss(LABELS, averaged) < min(
        metrics.log_loss(LABELS, a), metrics.log_loss(LABELS, b)
    )


def test_caruana_keeps_a_dominant_member_alone() -> None:
    good = _confident(np.ones(len(LABELS), dtype=bool), 0.8)
    noise = np.random.default_rng(0).uniform(0.3, 0.7, len(LABELS))
    weights, _ = caruana_selection(np.stack([noise, good]), LABELS)
    np.testing.assert_allclose(weights, [0.0, 1.0])


@pytest.mark.parametrize("method", list(Method))
def test_weights_are_non_negative_sum_to_one_and_score_the_blend(method: Method) -> None:
    rng = np.random.default_rng(1)
    predictions = np.clip(LABELS * 0.6 + 0.2 + rng.normal(0, 0.25, (4, len(LABELS))), 0.01, 0.99)
    fitted = fit_weights(method, predictions, LABELS)
    assert np.all(fitted.weights >= 0)
    assert fitted.weights.sum() == pytest.approx(1.0)
    blended = fitted.weights @ predictions
    assert fitted.val_log_loss == pytest.approx(metrics.log_loss(LABELS, blended))
    assert fitted.val_accuracy == pytest.approx(metrics.accuracy(LABELS, blended))
    if method is Method.UNIFORM:
        np.testing.assert_allclose(fitted.weights, 0.25)


def test_score_weights_follow_validation_accuracy() -> None:
    perfect = LABELS * 0.8 + 0.1
    chance = np.full(len(LABELS), 0.6)
    fitted = fit_weights(Method.SCORE, np.stack([perfect, chance]), LABELS)
    np.testing.assert_allclose(fitted.weights, [1.0, 0.0])


def test_caruana_and_score_weights_on_softmax_members() -> None:
    # Three classes; member a knows classes 0 and 1, member b knows class 2, c is noise.
    labels = np.repeat([0, 1, 2], 20)
    eye = np.eye(3)
    a = np.where((labels < 2)[:, None], 0.7 * eye[labels] + 0.1, 1 / 3)
    b = np.where((labels == 2)[:, None], 0.7 * eye[labels] + 0.1, 1 / 3)
    c = np.random.default_rng(0).dirichlet(np.ones(3), len(labels))
    predictions = np.stack([a, c, b])
    fitted = fit_weights(Method.CARUANA, predictions, labels)
    assert fitted.weights[1] == 0.0
    assert fitted.weights[0] > fitted.weights[2] > 0
    blended = metrics.blend(fitted.weights, predictions)
    assert fitted.val_log_loss == pytest.approx(metrics.log_loss(labels, blended))
    assert fitted.val_log_loss < min(metrics.log_loss(labels, a), metrics.log_loss(labels, b))
    assert fitted.val_accuracy == 1.0
    # Score weights: accuracy above the 1/3 chance of three classes.
    score = fit_weights(Method.SCORE, predictions, labels)
    above = np.array([metrics.accuracy(labels, p) - 1 / 3 for p in predictions]).clip(0)
    np.testing.assert_allclose(score.weights, above / above.sum())


def test_score_weights_fall_back_to_uniform_when_no_member_beats_chance() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    # Both members right half the time: no accuracy above chance (0.5) to weight by.
    guessing = np.array([[0.6, 0.6, 0.6, 0.6, 0.6, 0.6], [0.4, 0.4, 0.4, 0.4, 0.4, 0.4]])
    fitted = fit_weights(Method.SCORE, guessing, labels)
    np.testing.assert_array_equal(fitted.weights, [0.5, 0.5])
    assert fitted.rounds == 0
    assert fitted.val_accuracy == 0.5
    assert fitted.val_log_loss == pytest.approx(-np.log(0.5))


def test_caruana_reports_the_rounds_of_its_best_prefix_and_stops_improving() -> None:
    labels = np.array([1, 1, 0, 0])
    strong = np.array([0.9, 0.9, 0.1, 0.1])
    weak = np.array([0.6, 0.6, 0.4, 0.4])
    fitted = fit_weights(Method.CARUANA, np.stack([weak, strong]), labels)
    # One round of the strong member is best; adding anything after only raises the loss.
    assert fitted.rounds == 1
    np.testing.assert_array_equal(fitted.weights, [0.0, 1.0])
    assert fitted.val_log_loss == pytest.approx(-np.log(0.9))
    weights, rounds = caruana_selection(np.stack([weak, strong]), labels, rounds=3)
    assert rounds == 1 and weights.tolist() == [0.0, 1.0]
    uniform = fit_weights(Method.UNIFORM, np.stack([weak, strong]), labels)
    assert uniform.rounds == 0 and uniform.weights.tolist() == [0.5, 0.5]


def test_regression_members_are_selected_by_the_squared_error_of_their_average() -> None:
    from hpo.ensemble.weighting import squared_error_selection

    targets = np.linspace(-1.0, 1.0, 50)
    # Two members biased in opposite directions average to the targets; a third is noise.
    rng = np.random.default_rng(0)
    members = np.stack([targets + 0.3, targets - 0.3, targets + rng.normal(0, 0.5, 50)])
    weights, rounds = squared_error_selection(members, targets)
    np.testing.assert_allclose(weights, [0.5, 0.5, 0.0])
    assert rounds == 2
    # Targets of several outputs ([n, k]) are scored over every output.
    two = np.stack([targets, 2 * targets], axis=1)
    weights, _ = squared_error_selection(np.stack([two + 0.3, two - 0.3, two + 1.0]), two)
    np.testing.assert_allclose(weights, [0.5, 0.5, 0.0])
