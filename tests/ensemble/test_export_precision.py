"""An ensemble's own layers compute in float32 whatever the session's dtype policy or floatx."""

from __future__ import annotations

import types

import numpy as np
import pytest

from hpo.ensemble.export import export_ensemble, export_model


def _member(number: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(trial=types.SimpleNamespace(number=number, params={}))


@pytest.mark.parametrize(
    ("policy", "floatx"), [("mixed_bfloat16", "float32"), ("float32", "float16")]
)
def test_the_wrapper_is_float32_under_a_sessions_mixed_policy_or_float16(
    policy: str, floatx: str
) -> None:
    import keras

    task = types.SimpleNamespace(
        raw_input=lambda folder, backend: keras.Input((3,), name="x"),
        export_preprocessing=lambda folder, params, backend: ("same", keras.layers.Identity()),
    )
    models = [
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        for _ in range(2)
    ]
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = 0.3 * models[0].predict(x, verbose=0) + 0.7 * models[1].predict(x, verbose=0)
    keras.mixed_precision.set_global_policy(policy)
    keras.config.set_floatx(floatx)
    try:
        ensemble = export_ensemble(
            task, None, [_member(0), _member(1)], models, np.array([0.3, 0.7])
        )
        single = export_model(task, None, {}, models[0], "one")
        # The session's settings are left as they were.
        assert keras.mixed_precision.global_policy().name == policy
        assert keras.config.floatx() == floatx
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.config.set_floatx("float32")
    for model in (ensemble, single):
        policies = {layer.dtype_policy.name for layer in model.layers}
        assert policies == {"float32"}, policies
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
