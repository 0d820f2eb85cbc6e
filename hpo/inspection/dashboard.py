"""Start optuna-dashboard on a study's storage and artifact store.

Command line::

    python -m hpo.dashboard [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--port 8080] [--host 127.0.0.1 [--allow-remote]]

It binds to loopback by default. The dashboard has no authentication: binding to any other
address needs --allow-remote and prints a warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from typing import TYPE_CHECKING

from hpo._cli import add_study_arguments, open_study
from hpo.errors import ConfigError
from hpo.search.recovery import raise_keyboard_interrupt_on_sigterm
from hpo.store import AtomicFileSystemArtifactStore, open_storage

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["is_loopback", "main"]

DEFAULT_PORT = 8080


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


NEEDS_TENSORFLOW = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )


def run(args: argparse.Namespace) -> int:
    """Serves the dashboard until Ctrl-C or SIGTERM."""
    from optuna_dashboard import run_server

    if not is_loopback(args.host) and not args.allow_remote:
        raise ConfigError(
            f"--host {args.host} would expose the dashboard, which has no authentication, "
            f"beyond this machine. Add --allow-remote if that is what you want."
        )
    config, study = open_study(args.study, args.storage, args.study_name)
    if not is_loopback(args.host):
        print(
            f"WARNING: serving on {args.host}:{args.port} without authentication; anyone who "
            f"can reach it can read and change study {study.study_name!r}.",
            file=sys.stderr,
        )
    print(
        f"Dashboard for study {study.study_name!r}: http://{args.host}:{args.port}/dashboard/ "
        f"(artifacts from {config.artifact_dir}); Ctrl-C or SIGTERM stops it.",
        flush=True,
    )
    raise_keyboard_interrupt_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        run_server(
            open_storage(config.storage_url, create=False, heartbeat=False),
            host=args.host,
            port=args.port,
            artifact_store=AtomicFileSystemArtifactStore(config.artifact_dir),
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.dashboard`; serves until interrupted."""
    from hpo.cli import run_module

    return run_module("dashboard", argv)


if __name__ == "__main__":
    sys.exit(main())
