"""A trial that hangs is ended past its cap and failed with the reason; the search goes on."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config import TrainingConfig, load_study_config
from hpo.contract import Attr
from hpo.search import overrun, run_search
from hpo.search.overrun import trial_limit
from hpo.store import open_storage

from ..conftest import write_study

if TYPE_CHECKING:
    from pathlib import Path

# A user's hypermodel whose callback hangs in the first trial that trains.
HANGING = """
import os
import time
from pathlib import Path

import keras
import keras_tuner
from keras import layers

MARKER = Path(__file__).with_name("hung-once")


class HangOnce(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        try:
            os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        # As good as forever here; it returns at last so that without its guard the test fails
        # instead of hanging.
        time.sleep(200)


class Pooled(keras_tuner.HyperModel):
    def build(self, hp):
        inputs = keras.Input(shape=(None,), dtype="int32")
        x = layers.Embedding(hp.get("vocab_size"), 8, mask_zero=True)(inputs)
        x = layers.GlobalAveragePooling1D()(x)
        model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
        return model

    def fit(self, hp, model, x, y, **kwargs):
        return model.fit(x, y, callbacks=[HangOnce()], **kwargs)
"""


def test_the_grace_is_the_longest_epoch_a_trial_may_start_with(tmp_path: Path) -> None:
    config = load_study_config(write_study(tmp_path, tmp_path))
    default = config.with_overrides(max_trial_minutes=120.0, training=TrainingConfig())
    limit = trial_limit(default, None)
    assert limit is not None
    # patience 3: four epochs must fit in the cap, so a healthy one is at most a quarter of it.
    assert limit.grace == 30 * 60
    assert limit.at - time.monotonic() == pytest.approx(150 * 60, abs=5)
    assert limit.why == "the per-trial cap of 2h 00m"
    # A short cap leaves no room for the fixed costs: at least a minute.
    short = trial_limit(default.with_overrides(max_trial_minutes=1.0), None)
    assert short is not None and short.grace == 60
    # The budget ends first: the limit is its end plus the cap's grace.
    budget = trial_limit(default, time.time() + 600)
    assert budget is not None and budget.why == "the study's budget"
    assert budget.at - time.monotonic() == pytest.approx(600 + 30 * 60, abs=5)
    # Where the cheapest default's epoch is 50 minutes, a trial may start with room for two of
    # its own (`cap_epochs`): a healthy epoch is at most half the cap.
    slow = trial_limit(default, None, cheapest=50 * 60.0)
    assert slow is not None and slow.grace == 60 * 60
    # Without a cap or a budget, a trial runs as long as it runs.
    assert trial_limit(config, None) is None


@pytest.mark.slow
def test_a_hung_trial_is_failed_with_the_reason_and_the_search_goes_on(
    fake_imdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "hanging_models.py").write_text(HANGING)
    path = write_study(folder, fake_imdb, n_trials=1, families='["pooled"]')
    # A cap of 30 s, so the grace is 15 s: one of min(max_epochs, patience + 1) = 2 epochs. A
    # tiny trial takes 5 s, 25 s on a machine with 8 busy processes per core.
    path.write_text(
        "max_trial_minutes = 0.5\n"
        + path.read_text()
        + '\n[families]\npooled = "hanging_models:Pooled"\n'
    )
    monkeypatch.setattr(overrun, "MIN_GRACE_S", 1.0)
    config = load_study_config(path)
    summary = run_search(config, progress=False)

    assert (folder / "hung-once").exists()
    assert (summary.finished, summary.failed) == (1, 1)
    storage = open_storage(config.storage_url, create=False, heartbeat=False)
    trials = optuna.load_study(study_name=config.name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    hung = trials[0]
    log = config.study_dir / "logs" / "trial-00000.log"
    assert hung.user_attrs[Attr.FAIL_REASON] == (
        "hung: still running 15s past the per-trial cap of 30s, more than a healthy trial runs "
        "over; killed: the child process ran past its deadline and was ended with signal 15 "
        f"(SIGTERM); its stack then is at the end of {log}"
    )
    assert 45 <= hung.user_attrs[Attr.TRIAL_SECONDS] < 90
    # Its stack names the callback that never returned.
    assert re.search(r'hanging_models.py", line \d+ in on_epoch_end', log.read_text())
    # Nothing of it is kept: no checkpoint recorded, and its scratch checkpoint is removed.
    assert Attr.CHECKPOINT_ID not in hung.user_attrs
    assert not (config.study_dir / "trials" / "00000").exists()
