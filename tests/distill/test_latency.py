from __future__ import annotations

import time

from hpo.distill.latency import latencies


def test_models_are_timed_in_turns_after_one_warm_up_each() -> None:
    calls: list[str] = []

    def model(name: str, seconds: float) -> object:
        def predict() -> None:
            calls.append(name)
            time.sleep(seconds)

        return predict

    result = latencies({"a": model("a", 0.002), "b": model("b", 0.0)}, examples=500, repeats=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    # Milliseconds per 1,000 inputs: a call of 500 inputs taking >= 2 ms is >= 4 ms per 1,000.
    assert set(result) == {"a", "b"}
    assert result["a"] >= 4.0
