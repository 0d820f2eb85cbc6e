from __future__ import annotations

import pytest

from hpo._env import PROGRESS_VAR, env_flag
from hpo.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "on"),
    [
        *[("1", True), ("true", True), ("Yes", True), (" on ", True)],
        *[("0", False), ("", False), ("false", False), ("NO", False), ("off", False)],
    ],
)
def test_a_switch_reads_one_and_zero_and_their_spellings(
    monkeypatch: pytest.MonkeyPatch, text: str, on: bool
) -> None:
    # HPO_PROGRESS=0 turned the progress bar on (any text was on), and HPO_VERBOSE=true was off.
    monkeypatch.setenv(PROGRESS_VAR, text)
    assert env_flag(PROGRESS_VAR) is on


def test_an_unset_switch_is_off_and_any_other_value_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROGRESS_VAR, raising=False)
    assert env_flag(PROGRESS_VAR) is False
    monkeypatch.setenv(PROGRESS_VAR, "2")
    with pytest.raises(ConfigError, match=r"\$HPO_PROGRESS must be 1 \(on\) or 0 \(off\).*'2'"):
        env_flag(PROGRESS_VAR)
