from __future__ import annotations

from typing import TYPE_CHECKING, Any
from unittest import mock

import optuna
import pytest

from hpo.config import load_study_config
from hpo.contract import Attr
from hpo.precision import Precision, global_policy, resolve_precision
from hpo.study import search_space
from hpo.tasks.imdb import IMDB

from .conftest import write_study
from .training.test_runner import PARAMS, _trial

if TYPE_CHECKING:
    from pathlib import Path


def test_explicit_precision_is_kept() -> None:
    for precision in (Precision.FLOAT32, Precision.MIXED_BFLOAT16):
        assert resolve_precision(precision, "sepconv1d", None) is precision


def test_auto_uses_mixed_precision_on_gpus() -> None:
    assert resolve_precision(Precision.AUTO, "conv1d", 9) is Precision.MIXED_BFLOAT16
    assert resolve_precision(Precision.AUTO, "conv1d", 7) is Precision.MIXED_FLOAT16


def test_auto_on_cpus_follows_the_measured_table() -> None:
    with mock.patch("hpo.precision.cpu_bf16_kind", return_value="amx"):
        assert resolve_precision(Precision.AUTO, "conv1d", None) is Precision.MIXED_BFLOAT16
        assert resolve_precision(Precision.AUTO, "sepconv1d", None) is Precision.FLOAT32
    with mock.patch("hpo.precision.cpu_bf16_kind", return_value=None):
        assert resolve_precision(Precision.AUTO, "conv1d", None) is Precision.FLOAT32


@pytest.mark.parametrize(
    ("cpu_kind", "policy", "compute"),
    [("amx", "mixed_bfloat16", "bfloat16"), (None, "float32", "float32")],
)
def test_a_trial_trains_its_layers_in_the_resolved_policy_and_restores_the_global_one(
    fake_imdb: Path, tmp_path: Path, cpu_kind: str | None, policy: str, compute: str
) -> None:
    """`auto` on a CPU with bfloat16 instructions trains conv1d's layers in mixed bfloat16
    (float32 weights, bfloat16 arithmetic, a float32 output); on one without, in float32."""
    import keras

    from hpo.training import runner

    config = load_study_config(write_study(tmp_path, fake_imdb))
    assert config.training.precision is Precision.AUTO
    folder = IMDB.prepare(config, None, search_space(IMDB, config.space).shared)
    trial = _trial(config, PARAMS, optuna.pruners.NopPruner())
    built: list[keras.Model] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = prepare_model(*args, **kwargs)
        built.append(result[0])
        return result

    prepare_model = runner.prepare_model
    before = keras.mixed_precision.global_policy().name
    with (
        mock.patch("hpo.precision.cpu_bf16_kind", return_value=cpu_kind),
        mock.patch.object(runner, "prepare_model", spy),
    ):
        runner.train_trial(trial, config, folder, tmp_path / "work")
    assert keras.mixed_precision.global_policy().name == before == "float32"
    assert trial.study.trials[0].user_attrs[Attr.PRECISION] == policy
    (model,) = built
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert convs
    for layer in convs:
        assert layer.dtype_policy.name == policy
        assert layer.compute_dtype == compute
        assert all(w.dtype == "float32" for w in layer.weights)
    assert model.output.dtype == "float32"


def test_a_trials_policy_computes_losses_in_float32_under_a_float16_floatx() -> None:
    import keras

    # A keras.json of "floatx": "float16": losses and metrics take floatx as their dtype.
    keras.config.set_floatx("float16")
    try:
        with global_policy("float32"):
            assert keras.losses.SparseCategoricalCrossentropy().dtype == "float32"
        assert keras.config.floatx() == "float16"
    finally:
        keras.config.set_floatx("float32")
