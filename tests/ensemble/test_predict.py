"""`hpo predict` reads a folder of images as training reads one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpo.ensemble import predict
from hpo.ensemble.predict import _image_files

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_a_folder_given_to_predict_is_read_as_training_reads_it(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for path in (folder / "b.png", folder / ".ipynb_checkpoints" / "b.png", elsewhere / "c.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (folder / "._b.png").write_bytes(b"")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    one = tmp_path / "a.png"

    assert list(_image_files([str(one), str(folder)])) == [
        (str(one), False),
        (str(folder / "b.png"), True),
        (str(folder / "linked" / "c.png"), True),
    ]


def test_a_class_name_with_a_line_break_or_tab_is_printed_in_one_column(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(predict, "_predict", lambda model, x, folder: np.array([[0.2, 0.8]]))
    assert predict._run_text(None, ["plain", "new\nline\tclass"], ["A film."], tmp_path) == 0
    assert capsys.readouterr().out == "0.8000\tnew line class\tA film.\n"
