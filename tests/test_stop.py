from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pytest

import hpo
from hpo import api
from hpo.ensemble.in_memory import Ensemble

if TYPE_CHECKING:
    from pathlib import Path


def test_a_stop_a_library_swallowed_inside_a_python_call_stops_it_as_it_returns() -> None:
    # A notebook's Stop during tuner.ensemble() or Ensemble.export(): TensorFlow's finalizer
    # (AtomicFunction.__del__) printed "Exception ignored in ... KeyboardInterrupt" and the
    # cell ran to its end, 3 times in 20. Run where Ctrl-C is Python's default handling, as in
    # a kernel; the swallowing library is a try/except around the signal.
    code = textwrap.dedent(
        """
        import signal
        from hpo._stop import stoppable, raise_if_asked

        steps = []

        @stoppable
        def export():
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                steps.append("swallowed")
            steps.append("went on")
            return "written"

        try:
            export()
        except KeyboardInterrupt:
            steps.append("stopped")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        raise_if_asked()  # forgotten once raised: a later load does not raise it again
        assert stoppable(lambda: 1)() == 1
        print(steps)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['swallowed', 'went on', 'stopped']"


def test_the_python_calls_that_load_or_write_models_are_stoppable() -> None:
    for call in (
        hpo.Tuner.get_best_models,
        hpo.Tuner.load_model,
        hpo.Tuner.ensemble,
        Ensemble.predict,
        Ensemble.evaluate,
        Ensemble.export,
        api.Study.load_model,
        api.load_model,
        api.ensemble,
    ):
        layers = [call]
        while hasattr(layers[-1], "__wrapped__"):
            layers.append(layers[-1].__wrapped__)
        assert any(f.__code__.co_qualname == "stoppable.<locals>.call" for f in layers), call


def test_a_stopped_tuner_search_says_what_was_kept_and_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook's Stop showed a traceback of 16 to 43 frames through SQLAlchemy and
    # multiprocessing, and nothing of what the search kept.
    from hpo.data import in_memory

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(in_memory, "split_arrays", stopped)
    tuner = hpo.Tuner(lambda hp: None, max_trials=1, directory=tmp_path, project_name="p")
    with pytest.raises(KeyboardInterrupt, match=r"search interrupted\. .* saved in .*p, .*again"):
        tuner.search(np.zeros((4, 2)), np.arange(4) % 2, validation_split=0.5)

    # A stop by another signal keeps its own name.
    def terminated(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("signal SIGTERM")

    monkeypatch.setattr(in_memory, "split_arrays", terminated)
    with pytest.raises(KeyboardInterrupt, match=r"^signal SIGTERM$"):
        tuner.search(np.zeros((4, 2)), np.arange(4) % 2, validation_split=0.5)
