from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import pytest

from hpo import metrics
from hpo.contract import load_keras_file
from hpo.ensemble.calibration import apply_temperature, fit_temperature, temperature_slope
from hpo.models._calibration import Temperature

if TYPE_CHECKING:
    from pathlib import Path

RNG = np.random.default_rng(3)


def _calibrated(n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    if classes == 2:
        p = 1 / (1 + np.exp(-RNG.normal(0, 2.5, n)))
        return p, (RNG.uniform(size=n) < p).astype(np.int64)
    logits = RNG.normal(0, 2, (n, classes))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return p, (p.cumsum(axis=1) > RNG.uniform(size=(n, 1))).argmax(axis=1)


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("distortion", [0.5, 2.5])
def test_the_fitted_temperature_undoes_a_known_one(classes: int, distortion: float) -> None:
    # Over-confident (logits times 2) or under-confident (divided by 2.5) copies of calibrated
    # probabilities: the fitted temperature is the factor that undoes it.
    p, labels = _calibrated(20000, classes)
    distorted = apply_temperature(p, distortion)
    fitted = fit_temperature(distorted, labels)
    assert fitted.temperature == pytest.approx(1 / distortion, rel=0.05)
    assert fitted.val_log_loss_after < fitted.val_log_loss_before
    assert metrics.expected_calibration_error(
        labels, apply_temperature(distorted, fitted.temperature), 15
    ) < metrics.expected_calibration_error(labels, distorted, 15)
    # Temperature never changes the predicted class.
    np.testing.assert_array_equal(
        metrics.predicted_class(apply_temperature(distorted, fitted.temperature)),
        metrics.predicted_class(distorted),
    )


def test_an_exactly_calibrated_ensemble_keeps_temperature_one() -> None:
    # Exactly calibrated (each probability is its examples' rate of positives): T = 1 is the
    # optimum, which a numerical search only comes near.
    exact = np.repeat([0.2, 0.8, 0.6], [5, 5, 5])
    exact_labels = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0])
    fitted = fit_temperature(exact, exact_labels)
    assert fitted.temperature == 1.0
    assert fitted.val_log_loss_after == fitted.val_log_loss_before


@pytest.mark.parametrize("seed", range(6))
def test_calibration_never_raises_the_validation_log_loss(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.integers(0, 2, n)
    cases = [
        rng.uniform(0, 1, n),  # noise
        np.full(n, 0.5),  # chance: every temperature gives the same loss
        np.where(labels == 1, 0.9, 0.1),  # all right: the best temperature is at the bound
        np.where(labels == 1, 1.0, 0.0),  # saturated
        _calibrated(n, 2)[0],
    ]
    for p in cases:
        fitted = fit_temperature(p, labels)
        assert fitted.val_log_loss_after <= fitted.val_log_loss_before
        assert fitted.val_log_loss_before == pytest.approx(metrics.log_loss(labels, p))
        assert fitted.val_log_loss_after == pytest.approx(
            metrics.log_loss(labels, apply_temperature(p, fitted.temperature))
        )
        assert 0.05 - 1e-9 <= fitted.temperature <= 20 + 1e-9


@pytest.mark.parametrize("classes", [2, 4])
def test_the_keras_layer_computes_what_was_evaluated_and_survives_a_round_trip(
    classes: int, tmp_path: Path
) -> None:
    p, _ = _calibrated(256, classes)
    columns = p.reshape(len(p), -1).astype(np.float32)
    inputs = keras.Input(shape=(columns.shape[1],))
    model = keras.Model(inputs, Temperature(1.7, name="temperature")(inputs))
    model.save(tmp_path / "t.keras")
    loaded = load_keras_file(tmp_path / "t.keras")
    assert loaded.get_layer("temperature").temperature == 1.7
    got = metrics.as_probabilities(loaded.predict(columns, verbose=0))
    expected = apply_temperature(columns.astype(np.float64).reshape(p.shape), 1.7)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_export_tolerance_grows_only_where_the_temperature_magnifies() -> None:
    p = np.array([0.5, 0.9, 1 - 1e-7, 1e-7])
    slope = temperature_slope(p, 2.0)
    assert slope[0] == 1.0  # T > 1 flattens the middle
    assert slope[2] > 1000  # and magnifies the last float32 steps before 1
    np.testing.assert_allclose(temperature_slope(p, 0.5)[0], 2.0)
    np.testing.assert_array_equal(temperature_slope(np.full((3, 4), 0.25), 3.0), 1.0)


def test_a_temperature_that_only_fits_a_few_examples_noise_is_not_kept() -> None:
    # A model near chance on 10 validation images (6 right, all at about 0.5): the loss on
    # those 10 alone falls with T -> 0.06, sharpening every prediction, which made the test
    # log-loss worse. Fitted on either half, that temperature does not lower the other half's.
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1])
    p = np.array([0.52, 0.47, 0.55, 0.51, 0.53, 0.46, 0.49, 0.54, 0.48, 0.53])
    assert (metrics.predicted_class(p) == labels).sum() == 6
    fitted = fit_temperature(p, labels)
    assert fitted.temperature == 1.0
    # Where the sharpening holds on unseen examples (the same shape of model, 2,000 of them),
    # it is kept.
    rng = np.random.default_rng(0)
    many = rng.integers(0, 2, 2000)
    right = rng.uniform(size=2000) < 0.6
    sure = 0.5 + rng.uniform(0.0, 0.05, 2000)
    q = np.where(right == (many == 1), sure, 1 - sure)
    assert fit_temperature(q, many).temperature < 0.5


@pytest.mark.parametrize("classes", [2, 3])
def test_a_validation_set_the_ensemble_gets_all_right_does_not_make_it_certain(
    classes: int,
) -> None:
    # A short-trained model, every one of its 100 validation examples on the right side but
    # none past 0.86: fitted to the labels alone, T went to its bound (1/20) and turned the
    # 0.14-0.86 into 1e-15 to 1 - 1e-15; one wrong test example then cost 34 nats. Fitted to
    # Platt's targets it stays sure short of that, and the examples it is shown next, five of
    # them wrong, lose less to it than to the uncalibrated probabilities.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, 100)
    if classes == 2:
        p = np.where(labels == 1, rng.uniform(0.55, 0.86, 100), rng.uniform(0.14, 0.45, 100))
    else:
        p = np.full((100, classes), 0.2)
        p[np.arange(100), labels] = 0.6
    fitted = fit_temperature(p, labels)
    calibrated = apply_temperature(p, fitted.temperature)
    assert fitted.temperature < 1  # it does sharpen them
    assert calibrated.max() < 1 - 1e-5
    shown = labels.copy()
    shown[:5] = (shown[:5] + 1) % classes
    assert metrics.log_loss(shown, calibrated) < metrics.log_loss(shown, p)


@pytest.mark.parametrize("sure", [0.9, 0.99, 0.999999])
def test_members_sure_of_every_validation_example_are_not_sharpened_to_the_bound(
    sure: float,
) -> None:
    # Members 0.99 sure and right on every one of 50 validation examples: the clipped loss
    # was flat where every example saturates, the bounded search drifted there and returned
    # T = 0.05, the sharpest allowed: the ensemble said 1.0000 for every test image. Platt's
    # target for 25 examples a class is 26/27; the fit lands on it exactly. Where that is
    # softer than the members (a higher validation log-loss), T = 1 is kept.
    from hpo.ensemble.calibration import _fitted_inverse

    labels = np.repeat([0, 1], 25)
    p = np.where(labels == 1, sure, 1 - sure)
    inverse = _fitted_inverse(p, labels)
    np.testing.assert_allclose(
        1 / (1 + np.exp(-inverse * np.log(sure / (1 - sure)))), 26 / 27, rtol=1e-6
    )
    fitted = fit_temperature(p, labels).temperature
    if sure > 26 / 27:
        assert fitted == 1.0
    else:  # less sure than Platt's target: made as sure as that
        np.testing.assert_allclose(apply_temperature(p, fitted)[labels == 1], 26 / 27)
    three = np.repeat([0, 1, 2], 12)
    q = np.full((36, 3), (1 - sure) / 2)
    q[np.arange(36), three] = sure
    inverse = _fitted_inverse(q, three)
    np.testing.assert_allclose(apply_temperature(q, 1 / inverse).max(axis=1), 13 / 14)
    fitted = fit_temperature(q, three).temperature
    assert fitted == 1.0 if sure > 13 / 14 else 1 / inverse <= fitted <= 1.0
