from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import optuna
import pytest

from hpo.command_options import open_study
from hpo.errors import ConfigError
from hpo.inspection.report import FIGURES, main, write_report

from .test_status import _many_trials, _trial_reads

if TYPE_CHECKING:
    from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_writes_each_figure_and_registers_them(
    study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    # Links where the files go, to files elsewhere: each is replaced, its target left alone
    # (hpo report wrote through them).
    out.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("a file of the user's")
    for name in ("report.html", f"{next(iter(FIGURES))}.png"):
        (out / name).symlink_to(elsewhere)
    assert main(["--study", str(study_copy), "--out", str(out)]) == 0
    assert elsewhere.read_text() == "a file of the user's"
    for name in FIGURES:
        png = out / f"{name}.png"
        assert not png.is_symlink(), name
        assert png.read_bytes().startswith(PNG_MAGIC), name
        assert png.stat().st_size > 5000, name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.html", *(f"{name}.png" for name in FIGURES)]
    )
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


def test_an_interrupted_report_leaves_the_earlier_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second hpo report stopped (SIGTERM) after its first figure had rewritten that file
    # beside the earlier report's others: a mixed report, said to be "nothing half-written".
    import hpo.inspection.report as report

    out = tmp_path / "report"
    write_report(_many_trials(3), out, register=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    last = list(FIGURES)[-1]
    title, plotly_plot, _, kwargs = FIGURES[last]

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setitem(report.FIGURES, last, (title, plotly_plot, interrupted, kwargs))
    with pytest.raises(KeyboardInterrupt):
        write_report(_many_trials(5), out, register=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_report_that_does_not_fit_is_disk_full_and_leaves_the_earlier_one_whole(
    tmp_path: Path,
) -> None:
    # It was OSError's traceback (exit code 1), where hpo ensemble and hpo export say which
    # disk is full and the fix.
    from hpo.errors import DiskFull

    from ..conftest import small_disk
    from ..test_disk import _fill

    with small_disk(tmp_path / "disk", "16m") as disk:
        out = disk / "report"
        write_report(_many_trials(3), out, register=False)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        _fill(disk)
        with pytest.raises(DiskFull) as caught:
            write_report(_many_trials(5), out, register=False)
        assert str(caught.value).startswith(
            f"no space left on device writing the report in {out} (0 KB free there); the "
            f"report there before is untouched. Free space on that disk, or give --out "
        )
        assert caught.value.exit_code == 2
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_of_a_study_without_complete_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.store import open_storage

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    study = optuna.create_study(study_name="empty", storage=open_storage(url, create=True))
    study.set_user_attr("hpo_config", {"name": "empty", "study_dir": str(tmp_path / "empty")})
    assert main(["--storage", url, "--study-name", "empty"]) == 2
    assert "no COMPLETE trials to plot" in capsys.readouterr().err


def test_a_large_study_is_read_once_and_its_figures_say_nothing_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Optuna's plots read `study.trials` (a deep copy of every trial, from the database) once per
    # parameter; the figures read a copy in memory, made from one read.
    study = _many_trials(80)
    reads = _trial_reads(study, monkeypatch)
    with warnings.catch_warnings():
        # Neither PED-ANOVA's "fewer than 2 trials" per parameter, nor matplotlib's on an
        # axis of one value (a parameter every trial shares).
        warnings.simplefilter("error")
        written = write_report(study, tmp_path / "report", register=False)
    assert reads == [False]
    assert {p.name for p in written} == {f"{name}.png" for name in FIGURES} | {"report.html"}
    # A study of one trial: matplotlib's "identical low and high xlims" on its slice plot.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(_many_trials(1), tmp_path / "one", register=False)
    # Trials that all scored the same (fake data, every one at 1.0): PED-ANOVA's "target and
    # region quantiles select the same set of trials", printed once per importance figure.
    tied = optuna.create_study(direction="maximize")
    tied.add_trials(
        optuna.trial.create_trial(
            params=t.params,
            distributions=t.distributions,
            value=1.0,
            intermediate_values=t.intermediate_values,
        )
        for t in _many_trials(6).trials
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(tied, tmp_path / "tied", register=False)


def test_a_study_without_families_has_the_report_without_their_comparison(
    tmp_path: Path,
) -> None:
    # An hpo.Tuner's hypermodel chooses no family: Optuna's slice plot raised "Parameter family
    # does not exist in your study", and there was no report.
    study = optuna.create_study(direction="maximize")
    rate = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    study.add_trials(
        optuna.trial.create_trial(
            params={"learning_rate": 1e-3 * (n + 1)},
            distributions={"learning_rate": rate},
            value=0.5 + n / 10,
            intermediate_values={0: 0.4, 1: 0.5 + n / 10},
        )
        for n in range(3)
    )
    written = write_report(study, tmp_path / "report", register=False)
    expected = {f"{name}.png" for name in FIGURES if name != "family_comparison"}
    assert {p.name for p in written} == expected | {"report.html"}
    assert "by model family" not in (tmp_path / "report" / "report.html").read_text()


def test_a_legend_of_more_trials_than_anyone_reads_is_left_out() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpo.inspection.report import MAX_LEGEND_ENTRIES, _drop_long_legends

    figure, (few, many) = plt.subplots(1, 2)
    for axes, lines in ((few, 3), (many, MAX_LEGEND_ENTRIES + 1)):
        for n in range(lines):
            axes.plot([0, 1], [0, n], label=f"Trial{n}")
        axes.legend()
    _drop_long_legends(figure)
    assert few.get_legend() is not None and many.get_legend() is None
    plt.close(figure)


def test_files_hpo_report_did_not_write_are_refused_not_replaced(tmp_path: Path) -> None:
    # --out mydocs replaced the user's report.html (and their PNGs of a figure's name).
    out = tmp_path / "mydocs"
    out.mkdir()
    (out / "report.html").write_text("<html>my thesis notes</html>")
    with pytest.raises(ConfigError, match=r"mydocs holds report.html, which hpo report did not"):
        write_report(_many_trials(3), out, register=False)
    assert (out / "report.html").read_text() == "<html>my thesis notes</html>"
    (out / "report.html").unlink()
    figure = out / f"{next(iter(FIGURES))}.png"
    figure.write_bytes(b"my figure")
    with pytest.raises(ConfigError, match=rf"holds {figure.name}, which .* move it first"):
        write_report(_many_trials(3), out, register=False)
    assert figure.read_bytes() == b"my figure"
    # A report of hpo's is replaced by the next.
    figure.unlink()
    write_report(_many_trials(3), out, register=False)
    write_report(_many_trials(5), out, register=False)
    assert len(list(out.iterdir())) == len(FIGURES) + 1
