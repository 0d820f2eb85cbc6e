from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from hpo.command_options import open_study
from hpo.inspection.report import FIGURES, main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_each_figure_and_registers_them(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["--study", str(study_copy), "--out", str(out)]) == 0
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes().startswith(PNG_MAGIC), name
        assert png.stat().st_size > 5000, name
    page = (out / "report.html").read_text()
    assert "<h1>Study tiny</h1>" in page
    # Titles name the study's objective as Keras logs it.
    assert "<h2>val_accuracy by model family</h2>" in page
    assert "plotly" in page.lower()
    assert str(out / "report.html") in capsys.readouterr().out

    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    _, study = open_study(study_copy, None, None)
    registered = get_plotly_graph_objects(study._storage.get_study_system_attrs(study._study_id))
    assert set(FIGURES) <= set(registered)


def test_report_of_a_study_without_complete_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.store import open_storage

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    study = optuna.create_study(study_name="empty", storage=open_storage(url, create=True))
    study.set_user_attr("hpo_config", {"name": "empty", "study_dir": str(tmp_path / "empty")})
    assert main(["--storage", url, "--study-name", "empty"]) == 2
    assert "no COMPLETE trials to plot" in capsys.readouterr().err
