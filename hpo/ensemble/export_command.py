"""Export the ensemble or one trial as .keras, TensorFlow SavedModel, ONNX or LiteRT, each checked.

The `hpo export` command (also `python -m hpo.export`).

Command line::

    hpo export --ensemble ensembles/imdb-top5 --study studies/imdb.toml --format onnx
    hpo export --trial 12 --study studies/imdb.toml --format savedmodel --format onnx [--out DIR]
        [--format keras] [--data PATH]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpo.backend import recorded_backend, use_backend
from hpo.command_options import (
    DATA_HELP,
    add_study_arguments,
    open_ensemble_study,
    open_study,
)
from hpo.ensemble.export import across_backends
from hpo.ensemble.exporter import ensemble_report, export_built_ensemble, export_trial
from hpo.ensemble.predict import export_backend
from hpo.ensemble.serving import (
    FORMATS,
    Format,
    as_formats,
    check_formats,
    describe_exports,
    serving_backend,
)
from hpo.errors import ConfigError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from hpo.backend import Backend

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--ensemble", type=Path, help="an ensemble folder written by hpo ensemble: exports go in it"
    )
    what.add_argument("--trial", type=int, help="the number of a COMPLETE trial to export")
    add_study_arguments(parser, ensemble=True)
    parser.add_argument(
        "--format",
        dest="formats",
        action="extend",
        nargs="+",
        choices=FORMATS,
        default=[],
        help="keras, savedmodel (TensorFlow Serving), onnx or litert (TensorFlow Lite); one "
        "or more (default for a trial: keras; an ensemble already has its .keras)",
    )
    parser.add_argument(
        "--out", type=Path, help="a trial's output folder (default exports/<study>-trial<N>)"
    )
    parser.add_argument("--data", help=DATA_HELP)


def run(args: argparse.Namespace) -> int:
    """Writes and checks the exports, and prints one line per export."""
    if args.ensemble is not None:
        if args.out is not None:
            raise ConfigError(
                "--out is for a trial's export; an ensemble's exports go into its own folder, "
                f"{args.ensemble}, beside ensemble.keras. Leave out --out."
            )
        if not args.formats:
            raise ConfigError(
                "say which formats to add to the ensemble: --format savedmodel, --format onnx "
                "and/or --format litert (its ensemble.keras is already there)."
            )
        # Before Keras loads, and before the study it names is asked for: a folder hpo
        # ensemble wrote (Tuner.ensemble().export writes none of hpo export's).
        ensemble_report(args.ensemble, args.formats)
        # A SavedModel, ONNX or LiteRT is written on TensorFlow, whatever the models were made on.
        made_on = export_backend(args.ensemble)
        _load_keras(made_on, args.formats)
        config, study = open_ensemble_study(args, args.ensemble)
        with across_backends(made_on.value):
            result = export_built_ensemble(
                config, study, args.ensemble, formats=args.formats, data=args.data
            )
    else:
        config, study = open_study(args.study, args.storage, args.study_name)
        made_on = recorded_backend(study.user_attrs.get("hpo_config"), config.training.backend)
        _load_keras(made_on, args.formats or [Format.KERAS])
        with across_backends(made_on.value):
            result = export_trial(
                config,
                study,
                args.trial,
                formats=args.formats or [Format.KERAS],
                out_dir=args.out,
                data=args.data,
            )
    checked = "the ensemble's test predictions" if args.ensemble else "its validation predictions"
    print(f"Exports in {result.out_dir}/, each loaded back and checked against {checked}:")
    print("\n".join(describe_exports(result.report["export"], result.written)))
    print(f"Paths and SHA-256 in {result.out_dir / 'report.json'}")
    return 0


def _load_keras(made_on: Backend, formats: Sequence[str]) -> None:
    """Loads Keras on the backend that writes `formats` of models made on `made_on`, after
    refusing a format this process cannot write (loading Keras takes seconds)."""
    backend = serving_backend(made_on, formats)
    check_formats(as_formats(formats), backend.value)
    use_backend(backend)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.export`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("export", argv)
