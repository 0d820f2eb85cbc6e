"""An export takes its inputs as the members' own `keras.Input`s declare them, not as the
training data were typed (a pandas DataFrame's float64, numpy's int64)."""

from __future__ import annotations

import types

import numpy as np

from hpo.ensemble.export import export_ensemble


def _member(number: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(trial=types.SimpleNamespace(number=number, params={}))


def _task(raw_input: object) -> types.SimpleNamespace:
    import keras

    return types.SimpleNamespace(
        raw_input=lambda folder, backend: raw_input,
        export_preprocessing=lambda folder, params, backend: ("same", keras.layers.Identity()),
    )


def _model(dtype: str) -> object:
    import keras

    inputs = keras.Input((3,), dtype=dtype)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_float64_training_data_give_the_float32_input_the_members_declare() -> None:
    import keras

    models = [_model("float32"), _model("float32")]
    task = _task(keras.Input((3,), dtype="float64", name="inputs"))

    ensemble = export_ensemble(task, None, [_member(0), _member(1)], models, np.array([0.3, 0.7]))

    assert [str(given.dtype) for given in ensemble.inputs] == ["float32"]
    x = np.random.default_rng(0).normal(size=(5, 3))  # float64 rows still predict
    expected = 0.3 * models[0].predict(x, verbose=0) + 0.7 * models[1].predict(x, verbose=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)


def test_members_that_declare_different_types_take_the_widest() -> None:
    import keras

    models = [_model("float32"), _model("float64")]
    task = _task(keras.Input((3,), dtype="float32", name="inputs"))

    ensemble = export_ensemble(task, None, [_member(0), _member(1)], models, np.array([0.5, 0.5]))

    assert [str(given.dtype) for given in ensemble.inputs] == ["float64"]


def test_a_dict_of_inputs_takes_each_inputs_declared_type_by_name() -> None:
    import keras

    number = keras.Input((2,), name="num")
    category = keras.Input((1,), dtype="int32", name="cat")
    joined = keras.layers.Concatenate()([number, keras.ops.cast(category, "float32")])
    model = keras.Model(
        {"cat": category, "num": number}, keras.layers.Dense(2, activation="softmax")(joined)
    )
    task = _task(
        {
            "num": keras.Input((2,), dtype="float64", name="num"),
            "cat": keras.Input((1,), dtype="int64", name="cat"),
        }
    )

    ensemble = export_ensemble(task, None, [_member(0)], [model], np.ones(1))

    assert {given.name: str(given.dtype) for given in ensemble.inputs} == {
        "num": "float32",
        "cat": "int32",
    }


def test_uint8_pixels_stay_uint8_for_a_float_input_and_kinds_that_disagree_stay_as_given() -> None:
    # keras.io's image models declare float32 and rescale: the export serves the uint8 pixels
    # the serving docs promise (a first fix served float32). Members declaring an integer and
    # a float type do not make a float64 input either.
    import keras

    pixels = keras.Input((3,), dtype="uint8", name="image")
    ensemble = export_ensemble(_task(pixels), None, [_member(0)], [_model("float32")], np.ones(1))
    assert [str(given.dtype) for given in ensemble.inputs] == ["uint8"]

    models = [_model("int32"), _model("float32")]
    task = _task(keras.Input((3,), dtype="float32", name="inputs"))
    ensemble = export_ensemble(task, None, [_member(0), _member(1)], models, np.full(2, 0.5))
    assert [str(given.dtype) for given in ensemble.inputs] == ["float32"]
