"""benchmarks/bench_rates.py: each family's prior rates fitted across studies, tested held out."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pytest

from hpo import cost

if TYPE_CHECKING:
    from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


bench_clock = _load("bench_clock")
bench_rates = _load("bench_rates")

T0 = datetime.datetime(2026, 1, 1)


def _trials(
    rates: dict[str, cost.Rates], seed: int, count: int = 12
) -> list[optuna.trial.FrozenTrial]:
    """Trials whose measured epochs are exactly their family's `rates` x their work."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(count):
        family = sorted(rates)[i % len(rates)]
        features = {
            "flops_per_example": float(rng.uniform(1e5, 1e7)),
            "train_examples": float(rng.uniform(500, 5000)),
            "val_examples": 500.0,
            "steps": int(rng.integers(10, 300)),
            "params": int(rng.integers(10_000, 10_000_000)),
            "elements_per_example": float(rng.uniform(1e3, 1e5)),
        }
        actual = cost.CostFeatures(**features).prior_seconds(rates[family])
        trials.append(
            optuna.trial.create_trial(
                value=0.5,
                user_attrs={
                    "family": family,
                    "precision": "float32",
                    "cost_features": features,
                    "prior_epoch_seconds": 1.0,
                    "epoch_seconds": actual,
                },
            )
        )
        trials[-1].datetime_start = T0 + datetime.timedelta(minutes=2 * i)
        trials[-1].datetime_complete = T0 + datetime.timedelta(minutes=2 * i + 1)
    return trials


CONV = cost.Rates(flop_s=4e-12, element_s=0.0, step_s=0.02, param_step_s=0.0)
NGRAM = cost.Rates(flop_s=0.0, element_s=2e-9, step_s=0.004, param_step_s=2e-9)


def test_nonnegative_least_squares_keeps_the_best_solution_with_no_negative_part() -> None:
    a = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    # The unconstrained answer is (3, -1): the slope is clipped and the intercept refitted.
    b = a @ np.array([3.0, -1.0])
    assert np.allclose(np.linalg.lstsq(a, b, rcond=None)[0], [3.0, -1.0])
    assert np.allclose(bench_rates.nonnegative_least_squares(a, b), [1.0, 0.0])
    assert np.allclose(bench_rates.nonnegative_least_squares(a, a @ [0.5, 2.0]), [0.5, 2.0])


def test_each_familys_rates_are_recovered_from_trials_they_priced() -> None:
    fitted = bench_rates.fit_rates(_trials({"conv1d": CONV, "ngram": NGRAM}, seed=0, count=16))
    for family, truth in (("conv1d", CONV), ("ngram", NGRAM)):
        for field in bench_rates.FIELDS:
            assert getattr(fitted[family], field) == pytest.approx(
                getattr(truth, field), rel=1e-6, abs=1e-15
            )


def test_a_study_is_tested_on_rates_fitted_without_it_and_without_its_twins() -> None:
    true = {"conv1d": CONV, "ngram": NGRAM}
    other = {"conv1d": NGRAM, "ngram": CONV}
    studies = {
        "a": _trials(true, seed=1),
        "a-again": _trials(true, seed=2),
        "b": _trials(other, seed=3),
    }
    shipped = bench_rates._lookup(true)
    apart = bench_rates.held_out(studies, [], shipped)
    together = bench_rates.held_out(studies, [{"a", "a-again"}], shipped)

    def replayed(
        trials: list[optuna.trial.FrozenTrial], fitted_on: list[optuna.trial.FrozenTrial]
    ) -> list[float]:
        rates = bench_rates._lookup(bench_rates.fit_rates(fitted_on))
        return bench_clock.replay(bench_clock.with_prior(trials, rates), cost.calibration)

    a, again, b = studies["a"], studies["a-again"], studies["b"]
    assert apart["a"]["fitted without it"] == replayed(a, again + b)
    assert together["a"]["fitted without it"] == replayed(a, b)
    assert together["b"]["fitted without it"] == replayed(b, a + again)
    assert together["a"]["fitted without it"] != apart["a"]["fitted without it"]
    # The rates that priced a study's trials replay it without error; one set of rates for
    # both families misprices one against the other.
    assert max(apart["a"]["hpo's rates"]) < 1e-9
    assert np.median(apart["a"]["default rates"]) > 0.05


def test_the_command_prints_each_study_held_out_and_the_rates_fitted_on_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    for name, seed in (("one", 4), ("two", 5)):
        study = optuna.create_study(study_name=name, storage=storage)
        study.add_trials(_trials({"conv1d": CONV, "ngram": NGRAM}, seed=seed))
    config = Path(__file__).resolve().parents[1] / "studies" / "imdb-smoke.toml"
    argv = ["bench_rates.py", "--config", str(config)]
    for name in ("one", "two"):
        argv += ["--study", name, storage, name]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench_rates.main() == 0
    out = capsys.readouterr().out
    assert "| one | 12 | " in out and "| two | 12 | " in out
    assert "| all, pooled | 24 | " in out
    assert "conv1d: Rates(flop_s=4e-12, element_s=0, step_s=0.02, param_step_s=0)" in out

    monkeypatch.setattr(sys, "argv", [*argv, "--same-trials", "one", "three"])
    with pytest.raises(SystemExit):
        bench_rates.main()
    assert "--same-trials names no --study labelled three" in capsys.readouterr().err
