from __future__ import annotations

from unittest import mock

from hpo.precision import Precision, resolve_precision


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
