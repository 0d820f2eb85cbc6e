"""Start optuna-dashboard on a study's storage and artifact store.

Command line::

    python -m hpo.dashboard [--study studies/imdb.toml | --storage URL --study-name NAME]
        [--port 8080] [--host 127.0.0.1 [--allow-remote]]

It binds to loopback by default. The dashboard has no authentication: binding to any other
address needs --allow-remote and prints a warning.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import make_server

from hpo.command_options import (
    add_bind_arguments,
    add_study_arguments,
    bind_error,
    check_bind,
    is_loopback,
    open_study,
)
from hpo.errors import StoreError
from hpo.store import open_artifact_store, open_storage

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from wsgiref.types import WSGIApplication

__all__ = ["add_arguments", "main", "run", "serve_until_signalled"]

DEFAULT_PORT = 8080


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    add_study_arguments(parser)
    add_bind_arguments(parser, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    """Serves the dashboard until Ctrl-C or SIGTERM."""
    from optuna_dashboard import wsgi

    check_bind(args.host, args.allow_remote, "the dashboard")
    config, study = open_study(args.study, args.storage, args.study_name)
    if not is_loopback(args.host):
        print(
            f"WARNING: serving on {args.host}:{args.port} without authentication; anyone who "
            f"can reach it can read and change study {study.study_name!r}.",
            file=sys.stderr,
        )
    try:
        store = open_artifact_store(config.artifact_location, create=False)
        artifacts = f"artifacts from {config.artifact_location}"
    except StoreError as exc:  # the trials and figures are still worth showing
        print(f"WARNING: {exc} The dashboard shows no artifacts.", file=sys.stderr)
        store, artifacts = None, "no artifacts"
    app = wsgi(
        open_storage(config.storage_url, create=False, heartbeat=False), artifact_store=store
    )
    ready = (
        f"Dashboard for study {study.study_name!r}: http://{args.host}:{args.port}/dashboard/ "
        f"({artifacts}); Ctrl-C or SIGTERM stops it."
    )
    serve_until_signalled(app, args.host, args.port, ready)
    return 0


def serve_until_signalled(app: WSGIApplication, host: str, port: int, ready: str = "") -> None:
    """Serves `app` with wsgiref (as optuna-dashboard's `run_server` does) until SIGINT or SIGTERM;
    prints `ready` once it listens.

    The signal only sets a flag that the serving loop reads between requests, so a request in
    flight finishes first. Raising KeyboardInterrupt from the handler instead (what `run_server`
    relies on) loses the signal when it lands inside a request: wsgiref's handler catches every
    exception there, logs it and serves on.
    """
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    try:
        server = make_server(host, port, app)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise bind_error(host, port, exc) from exc
    if ready:
        print(ready, flush=True)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            server.timeout = 0.2  # how long handle_request waits before the flag is read again
            while not stop.is_set():
                server.handle_request()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.dashboard`; serves until interrupted."""
    from hpo.cli import run_module

    return run_module("dashboard", argv)


if __name__ == "__main__":
    sys.exit(main())
