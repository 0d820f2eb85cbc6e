"""Plots of a study as PNG files and one self-contained HTML page.

Optimization history, importances, learning curves, parallel coordinates and a per-family
comparison.

Command line::

    python -m hpo.report [--study studies/imdb.toml | --storage URL --study-name NAME] [--out DIR]

The figures come from `optuna.visualization` (plotly, for the HTML page and the dashboard) and
`optuna.visualization.matplotlib` (for the PNG files); the plotly ones are also registered with
optuna-dashboard, so they show on the study's page there.
"""

from __future__ import annotations

import contextlib
import html
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState

from hpo.command_options import add_study_arguments, open_study
from hpo.disk import raise_if_full, replacing
from hpo.errors import ConfigError, StoreError
from hpo.store import read_only_database

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Container, Sequence

__all__ = ["FIGURES", "main", "write_report"]

MAX_PARALLEL_PARAMS = 8
# A learning-curve legend beyond this many trials is unreadable, and drawing one of thousands
# takes longer than every figure of the report together.
MAX_LEGEND_ENTRIES = 40


class _ReadOnce(optuna.Study):
    """The study as the figures read it: its trials read once, into memory, and `trials`
    without a deep copy at each read.

    Optuna's plots read `study.trials`, a deep copy of every trial, once per hyperparameter
    (the importances' hover text), and each read asks the database again: minutes on a study
    of thousands of trials. The figures only read the trials.
    """

    def __init__(self, study: optuna.Study) -> None:
        storage = optuna.storages.InMemoryStorage()
        storage.create_new_study(study.directions, study.study_name)
        super().__init__(study.study_name, storage)
        self.add_trials(study.get_trials(deepcopy=False))

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials(deepcopy=False)

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[optuna.trial.FrozenTrial]:
        return super().get_trials(deepcopy=False, states=states)


def _drop_long_legends(figure: Any) -> None:
    """Removes a legend of more than `MAX_LEGEND_ENTRIES` entries from `figure`'s axes."""
    for axes in figure.axes:
        legend = axes.get_legend()
        if legend is not None and len(legend.get_texts()) > MAX_LEGEND_ENTRIES:
            legend.remove()


def _common_params(study: optuna.Study) -> list[str]:
    """The parameters every COMPLETE trial has and that take more than one value among them
    (an axis of one value carries nothing, and matplotlib warns on each)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = set.intersection(*(set(t.params) for t in complete)) if complete else set()
    varied = {n for n in names if len({repr(t.params[n]) for t in complete}) > 1}
    return sorted(varied - {"family"})[:MAX_PARALLEL_PARAMS]


def _families(study: optuna.Study) -> dict[str, Any] | None:
    """The family comparison's arguments, or None where no COMPLETE trial chose a family (an
    hpo.Tuner's hypermodel, a study of one's own): Optuna's slice plot refuses a parameter the
    study lacks."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {"params": ["family"]} if any("family" in t.params for t in complete) else None


# name -> (title, with {objective} the study's metric name; plotly plot, matplotlib plot,
# keyword arguments from the study, None where the study has nothing to show in it)
FIGURES: dict[
    str,
    tuple[
        str, Callable[..., Any], Callable[..., Any], Callable[[optuna.Study], dict[str, Any] | None]
    ],
] = {
    "optimization_history": (
        "Optimization history",
        optuna.visualization.plot_optimization_history,
        optuna.visualization.matplotlib.plot_optimization_history,
        lambda study: {},
    ),
    "param_importances": (
        "Hyperparameter importances (PED-ANOVA)",
        optuna.visualization.plot_param_importances,
        optuna.visualization.matplotlib.plot_param_importances,
        lambda study: {"evaluator": PedAnovaImportanceEvaluator()},
    ),
    "intermediate_values": (
        "Learning curves: {objective} per epoch (pruned trials included)",
        optuna.visualization.plot_intermediate_values,
        optuna.visualization.matplotlib.plot_intermediate_values,
        lambda study: {},
    ),
    "parallel_coordinate": (
        "Parallel coordinates",
        optuna.visualization.plot_parallel_coordinate,
        optuna.visualization.matplotlib.plot_parallel_coordinate,
        lambda study: {"params": _common_params(study)},
    ),
    "family_comparison": (
        "{objective} by model family",
        optuna.visualization.plot_slice,
        optuna.visualization.matplotlib.plot_slice,
        _families,
    ),
}


PAGE_NAME = "report.html"
# How every report.html hpo writes starts: a file there that does not is not one of hpo's.
_PAGE_START = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Study "


def _refuse_files_of_others(out_dir: Path) -> None:
    """Refuses an `out_dir` whose report.html, or (where it holds none) a figure's PNG, hpo
    report did not write: they were replaced, a thesis's notes by a study's figures. A link
    there is replaced, never written through, so it loses nothing.

    Raises:
        ConfigError: Names the file and the ways out.
    """
    page = out_dir / PAGE_NAME

    def kept(path: Path) -> bool:  # what replacing it would lose
        return path.exists() and not path.is_symlink()

    if kept(page):
        try:
            with page.open("rb") as file:
                ours = page.is_file() and file.read(len(_PAGE_START)) == _PAGE_START.encode()
        except OSError:  # a folder, or unreadable: not a page of hpo's
            ours = False
        theirs = [] if ours else [page.name]
    else:
        theirs = [f"{name}.png" for name in FIGURES if kept(out_dir / f"{name}.png")]
    if theirs:
        raise ConfigError(
            f"--out {out_dir} holds {', '.join(theirs)}, which hpo report did not write there "
            f"and would replace. Give another folder (such as reports/), or move "
            f"{'it' if len(theirs) == 1 else 'them'} first."
        )


def write_report(study: optuna.Study, out_dir: Path, *, register: bool = True) -> list[Path]:
    """Writes one PNG per figure and `report.html`, and registers the figures with the dashboard.

    Returns:
        The files written.

    Raises:
        StoreError: The study has no COMPLETE trial to plot.
        DiskFull: `out_dir`'s disk is full; the report there before is left whole.
    """
    _refuse_files_of_others(out_dir)
    plotted = _ReadOnce(study)
    if not plotted.get_trials(states=(TrialState.COMPLETE,)):
        raise StoreError(f"study {study.study_name!r} has no COMPLETE trials to plot yet.")
    try:
        return _write_figures(study, plotted, out_dir, register)
    except Exception as exc:
        raise_if_full(
            exc,
            out_dir,
            f"the report in {out_dir}",
            "the report there before is untouched. Free space on that disk, or give --out a "
            "folder on a larger one.",
        )
        raise


def _write_figures(
    study: optuna.Study, plotted: optuna.Study, out_dir: Path, register: bool
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna_dashboard import save_plotly_graph_object

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections: list[str] = []
    # Each file is written beside its place and put there once all are done: an interrupted
    # report (Ctrl-C, a figure that fails) leaves the earlier one whole, not mixed with this one.
    with contextlib.ExitStack() as in_place, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # One line per parameter on a study of a few trials, where no importance is firm; one
        # per figure where the trials all scored the same (their importances are all equal).
        warnings.filterwarnings("ignore", "Some regimes for parameter", UserWarning)
        warnings.filterwarnings("ignore", "The number of trials is too small", UserWarning)
        warnings.filterwarnings("ignore", "Target and region quantiles select", UserWarning)
        # Matplotlib's, where a slice has one value (a study of one trial, one family).
        warnings.filterwarnings("ignore", "Attempting to set identical low and high", UserWarning)
        for name, (title, plotly_plot, matplotlib_plot, kwargs) in FIGURES.items():
            arguments = kwargs(plotted)
            if arguments is None:
                continue
            axes = matplotlib_plot(plotted, **arguments)
            figure = np.atleast_1d(axes).flat[0].figure
            _drop_long_legends(figure)
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            png = out_dir / f"{name}.png"
            figure.savefig(in_place.enter_context(replacing(png)), format="png", dpi=90)
            plt.close(figure)
            written.append(png)
            interactive = plotly_plot(plotted, **arguments)
            if register:
                save_plotly_graph_object(study, interactive, graph_object_id=name)
            body = interactive.to_html(
                full_html=False, include_plotlyjs="inline" if not sections else False
            )
            # The study's objective as Keras logs it (val_accuracy unless the study chose another).
            shown = title.format(objective=(study.metric_names or ["value"])[0])
            sections.append(f"<h2>{html.escape(shown)}</h2>\n{body}")
        page = out_dir / PAGE_NAME
        name = html.escape(study.study_name)
        text = (
            f"{_PAGE_START}{name}</title></head>\n<body><h1>Study {name}</h1>\n"
            + "\n".join(sections)
            + "\n</body></html>\n"
        )
        in_place.enter_context(replacing(page)).write(text.encode())
        written.append(page)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: reports/ in the study's folder)"
    )


def _writable(folder: Path) -> bool:
    """Whether `folder` can be written, or made where it is missing."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return os.access(existing, os.W_OK)


def run(args: argparse.Namespace) -> int:
    """Writes the figures and prints their paths."""
    config, study = open_study(args.study, args.storage, args.study_name)
    read_only = read_only_database(config.storage_url) is not None
    out = args.out or config.study_dir / "reports"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report's figures.")
    if read_only and args.out is None and not _writable(out):
        raise ConfigError(
            f"the study's folder is read-only, so its report cannot go to {out}: give --out "
            f"DIR, a folder of yours."
        )
    files = write_report(study, out, register=not read_only)
    if read_only:
        print("(The study is read-only: its figures are not registered for the dashboard.)")
    print("\n".join(str(f) for f in files))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.report`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("report", argv)


if __name__ == "__main__":
    sys.exit(main())
