"""Start optuna-dashboard on a study's storage and artifact store.

Command line::

    python -m hpo.dashboard [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--port 8080] [--host 127.0.0.1 [--allow-remote]]

It binds to loopback by default. The dashboard has no authentication: binding to any other
address needs --allow-remote and prints a warning.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from hpo._cli import add_bind_arguments, add_study_arguments, check_bind, is_loopback, open_study
from hpo.search.recovery import raise_keyboard_interrupt_on_sigterm
from hpo.store import open_artifact_store, open_storage

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["add_arguments", "main", "run"]

DEFAULT_PORT = 8080


NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    add_bind_arguments(parser, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    """Serves the dashboard until Ctrl-C or SIGTERM."""
    from optuna_dashboard import run_server

    check_bind(args.host, args.allow_remote, "the dashboard")
    config, study = open_study(args.study, args.storage, args.study_name)
    if not is_loopback(args.host):
        print(
            f"WARNING: serving on {args.host}:{args.port} without authentication; anyone who "
            f"can reach it can read and change study {study.study_name!r}.",
            file=sys.stderr,
        )
    print(
        f"Dashboard for study {study.study_name!r}: http://{args.host}:{args.port}/dashboard/ "
        f"(artifacts from {config.artifact_location}); Ctrl-C or SIGTERM stops it.",
        flush=True,
    )
    raise_keyboard_interrupt_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        run_server(
            open_storage(config.storage_url, create=False, heartbeat=False),
            host=args.host,
            port=args.port,
            artifact_store=open_artifact_store(config.artifact_location),
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.dashboard`; serves until interrupted."""
    from hpo.cli import run_module

    return run_module("dashboard", argv)


if __name__ == "__main__":
    sys.exit(main())
