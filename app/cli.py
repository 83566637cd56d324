"""The ``event-postback`` command: ``serve`` and ``check-config``."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from collections.abc import Sequence

import uvicorn

from app.config import ConfigError, demo_config, load_config, with_server_overrides
from app.factory import build_store, create_app
from app.logs import configure_logging
from storage.claim import DatabaseInUse


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    return _serve(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="event-postback",
        description="Self-hosted Event Postback API on SQLite.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API (the built-in demo config "
                                              "when --config is not given)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--db", metavar="FILE", help="SQLite database file")
    serve.add_argument("--host", metavar="H")
    serve.add_argument("--port", metavar="P", type=int)
    serve.add_argument("--durability", choices=["commit", "write-behind"])
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])

    check = commands.add_parser("check-config", help="check a configuration file and exit")
    check.add_argument("file", metavar="FILE")
    return parser


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(
        f"{path}: ok ({len(config.campaigns)} campaigns, {len(config.sources)} sources)\n")
    return 0


def _tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic collections for a server that allocates per request.

    Measured with wrk at 64 connections: the default thresholds (700, 10, 10) spent a
    third of the time collecting and made p99 latency 5x the median; (50000, 50, 100)
    gave +45 % requests/s and a tight latency spread. Freezing moves everything loaded so
    far (modules, config) out of the collector's sight for good.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else demo_config()
        config = with_server_overrides(config, "command line", db=args.db, host=args.host,
                                       port=args.port, durability=args.durability)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    store = build_store(config)
    try:
        store.claim()
    except DatabaseInUse as exc:
        sys.stderr.write(f"{exc}\n")
        return 3
    configure_logging(args.log_level)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config, store=store, demo=not args.config),
        host=config.server.host,
        port=config.server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # Requests in flight wait on the store at most write_timeout_seconds each.
        timeout_graceful_shutdown=10,
    ))
    _tune_garbage_collector()
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done;
    # by then everything is flushed and closed, so the re-raised signal ends us with 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    server.run()
    return 0 if server.started else 1
