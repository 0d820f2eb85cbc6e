"""Serve one study database to many workers through Optuna's gRPC storage proxy.

The `hpo storage-proxy` command.

Many workers (tens to hundreds, on many machines) each holding a database connection can exhaust
the server; the proxy holds one cached connection pool and the workers talk to it instead, with
`--storage grpc://HOST:PORT`. It has no authentication: it binds to 127.0.0.1 unless
`--allow-remote` is given, and belongs on a private network.

Command line::

    hpo storage-proxy --storage postgresql+psycopg://user:pw@db/hpo [--host H] [--port 13000]
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from hpo.command_options import add_bind_arguments, bind_error, check_bind
from hpo.search.recovery import raise_keyboard_interrupt_on_sigterm
from hpo.store import open_rdb_storage, redact_url

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["DEFAULT_PORT", "add_arguments", "main", "run"]

DEFAULT_PORT = 13000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--storage", required=True, help="the database URL to serve")
    add_bind_arguments(parser, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    """Serves the storage until Ctrl-C or SIGTERM."""
    import optuna
    from optuna.storages import run_grpc_proxy_server

    check_bind(args.host, args.allow_remote, "the study database through the proxy")
    # Optuna's cached wrapper: the proxy answers most reads without a database round trip.
    storage = optuna.storages.get_storage(open_rdb_storage(args.storage, create=True))
    print(
        f"gRPC storage proxy for {redact_url(args.storage)} at grpc://{args.host}:{args.port}; "
        f"workers use --storage grpc://{args.host}:{args.port}. Ctrl-C or SIGTERM stops it.",
        flush=True,
    )
    raise_keyboard_interrupt_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            run_grpc_proxy_server(storage, host=args.host, port=args.port)
        except RuntimeError as exc:  # gRPC's "Failed to bind to address ..."
            if "bind" not in str(exc).lower():
                raise
            raise bind_error(args.host, args.port, exc) from exc
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m hpo.search.proxy`; returns the exit code."""
    from hpo.cli import run_module

    return run_module("storage-proxy", argv)


if __name__ == "__main__":
    sys.exit(main())
