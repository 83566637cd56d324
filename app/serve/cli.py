"""The ``event-postback`` command: ``serve``, ``check-config``, ``conversions``, ``report``,
``endpoints``, ``postbacks``, ``rates`` and ``--version``; its exit codes are those of
app/serve/exits.py."""

from __future__ import annotations

import argparse
import functools
import gc
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import get_args

import uvicorn
from starlette.applications import Starlette

from app.config.reload import ConfigFile
from app.config.schema import (
    Config,
    ConfigError,
    Durability,
    ServerConfig,
    demo_config,
    load_config,
    with_server_overrides,
)
from app.config.summary import summary
from app.config.tokens import hash_token, token_problem
from app.conversions.rules import Action
from app.events.senders import exposure_warnings
from app.factory import build_store, create_app
from app.observe.logs import configure_logging
from app.serve import exits, supervisor, workers
from app.serve.conversion_command import change_from_file
from app.serve.endpoint_args import add_endpoint_parsers, run_endpoint_command
from app.serve.exits import Refusal, check_database
from app.serve.rates_command import add_rates_parser, run_rates_command
from app.serve.report_args import add_report_parser, report_params
from app.serve.report_command import report_from_file
from storage.backend import Unsupported, is_postgres_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.file)
        if args.command == "conversions":
            return _conversions(args)
        if args.command == "report":
            return _report(args)
        if args.command in ("endpoints", "postbacks"):
            return _endpoints(args)
        if args.command == "rates":
            return run_rates_command(args)
        if args.command == "hash-token":
            return _hash_token(args.token)
        return _serve(args)
    except (ConfigError, Unsupported) as exc:
        sys.stderr.write(f"{exc}\n")
        return exits.USAGE
    except Refusal as exc:
        return _refused(exc)


def _refused(refusal: Refusal) -> int:
    sys.stderr.write(f"{refusal.line}\n")
    return refusal.code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="event-postback",
        description="Self-hosted Event Postback API, on an SQLite file or PostgreSQL.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {version('event-postback')}")
    commands = parser.add_subparsers(dest="command", required=True)

    # The server flags default to None so that they only override the config file when
    # given; the help states the value that applies when neither sets it.
    server = ServerConfig()
    serve = commands.add_parser(
        "serve", help="serve the API",
        description="Serve the API. A flag overrides the same key of the config file's "
                    "[server] table; the defaults apply when neither sets it.")
    serve.add_argument("--config", metavar="FILE",
                       help="TOML configuration file (default: the built-in demo config)")
    serve.add_argument("--db", metavar="DB",
                       help=f"SQLite database file, created on first start, or a "
                            f"postgresql://user@host:port/dbname URL (default: {server.db})")
    serve.add_argument("--host", metavar="HOST",
                       help=f"address to listen on (default: {server.host})")
    serve.add_argument("--port", metavar="PORT", type=int,
                       help=f"TCP port to listen on (default: {server.port})")
    serve.add_argument("--durability", choices=get_args(Durability),
                       help="answer after the commit, or before it with the commit "
                            f"following within flush_ms (default: {server.durability})")
    serve.add_argument("--workers", metavar="N", type=int, default=1,
                       help="processes serving the port, PostgreSQL only "
                            "(default: %(default)s)")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"],
                       help="least severe log lines written (default: %(default)s)")

    check = commands.add_parser(
        "check-config", help="check a configuration file and exit",
        description="Check a configuration file as start-up does, print what it holds "
                    "and exit (2 on an error).")
    check.add_argument("file", metavar="FILE", help="TOML configuration file")

    conversions = commands.add_parser(
        "conversions", help="approve, reject or reverse conversions listed in a CSV file",
        description="Change the status of every conversion listed in a CSV file (its "
                    "conversion_id column, or else its first column), on a database no "
                    "server is serving, in one transaction. The postbacks the changes "
                    "owe are sent by the next serve.")
    conversions.add_argument("action", choices=get_args(Action))
    conversions.add_argument("--file", metavar="CSV", required=True, type=Path,
                             help="CSV file of conversion ids")
    conversions.add_argument("--reason", help="reason recorded with every change")
    conversions.add_argument("--config", metavar="FILE",
                             help="TOML configuration file (default: the built-in demo "
                                  "config)")
    conversions.add_argument("--db", metavar="DB",
                             help="existing SQLite database file or postgresql:// URL "
                                  f"(default: {server.db})")
    add_report_parser(commands, server.db)
    add_endpoint_parsers(commands, server.db)
    add_rates_parser(commands)
    hashing = commands.add_parser(
        "hash-token", help="print the hash of an API token, for [[tokens]]",
        description="Print the line a [[tokens]] entry keeps for TOKEN (its SHA-256). "
                    "TOKEN - reads it from the standard input, so it stays out of the "
                    "process list and the shell history.")
    hashing.add_argument("token", metavar="TOKEN", help="the token, or - to read it")
    return parser


def _hash_token(token: str) -> int:
    if token == "-":
        token = sys.stdin.readline().strip()
    problem = token_problem(token)
    if problem is not None:
        sys.stderr.write(f"TOKEN {problem}\n")
        return exits.USAGE
    sys.stdout.write(f"{hash_token(token)}\n")
    return exits.OK


def _endpoints(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else demo_config()
    config = with_server_overrides(config, "command line", db=args.db)
    return run_endpoint_command(config, args)


def _report(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else demo_config()
    config = with_server_overrides(config, "command line", db=args.db)
    return report_from_file(config, report_params(args), as_csv=args.csv)


def _conversions(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else demo_config()
    config = with_server_overrides(config, "command line", db=args.db)
    if args.reason is not None and len(args.reason) > 255:
        sys.stderr.write("--reason: at most 255 characters\n")
        return exits.USAGE
    return change_from_file(config, args.action, args.file, args.reason)


def _check_config(path: str) -> int:
    # The same reading and checks as start-up and a reload.
    config = ConfigFile(Path(path)).read()
    sys.stdout.write(f"{path}: ok ({summary(config)})\n")
    for line in exposure_warnings(config):
        sys.stdout.write(f"{line}\n")
    return exits.OK


# On SIGTERM, how long requests in flight may take to finish (each waits on the store at
# most write_timeout_seconds); the queued writes are committed after. The systemd unit in
# examples/ gives the whole stop more than both.
GRACEFUL_SHUTDOWN_SECONDS = 10


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
    overrides = {"db": args.db, "host": args.host, "port": args.port,
                 "durability": args.durability}
    # A reload reads the file again with the same flags over it.
    config_file = ConfigFile(Path(args.config), overrides) if args.config else None
    if config_file is not None:
        config = config_file.read()
    else:
        config = with_server_overrides(demo_config(), "command line", **overrides)
    if args.workers < 1:
        sys.stderr.write("--workers must be at least 1\n")
        return exits.USAGE
    if args.workers > 1 and not is_postgres_url(config.server.db):
        sys.stderr.write("--workers needs a postgresql:// database: an SQLite file is "
                         "served by one process\n")
        return exits.USAGE
    # Once, before any worker starts: one line and one exit code, not one per worker,
    # and none of the start-up's log lines around it.
    check_database(config.server.db, existing=False)
    if args.workers > 1:
        # Each worker sets up its own logging once started; these are the supervisor's.
        configure_logging(args.log_level, process={"process_id": os.getpid()})
        build = functools.partial(_worker_settings, demo=not args.config,
                                  config_file=config_file)
        return supervisor.serve(args.workers, config.server.host, config.server.port,
                             workers.Plan(config, config_file, args.log_level, build))
    configure_logging(args.log_level)
    return _run(args, config, config_file)


def _run(args: argparse.Namespace, config: Config, config_file: ConfigFile | None) -> int:
    """The one server process."""
    store = build_store(config)
    try:
        exits.claim(store)
        _ensure_free(config.server.host, config.server.port)
    except Refusal as exc:
        return _refused(exc)
    server = uvicorn.Server(_settings(
        config, create_app(config, store=store, demo=not args.config,
                           config_file=config_file, reload_on_sighup=True)))
    _tune_garbage_collector()
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done;
    # by then everything is flushed and closed, so the re-raised signal ends us with 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    try:
        server.run()
    except SystemExit:
        # uvicorn's exit on a start-up that failed after its log lines said why; its code
        # (3) means a served database here.
        return exits.FAILED
    return exits.OK if server.started else exits.FAILED


def _worker_settings(config: Config, *, demo: bool,
                     config_file: ConfigFile | None) -> uvicorn.Config:
    """A worker of ``serve --workers N``: its store and app on ``config`` (its
    supervisor's; reloads go through the supervisor, which owns SIGHUP)."""
    store = build_store(config)
    exits.claim(store)
    settings = _settings(config, create_app(config, store=store, demo=demo,
                                            config_file=config_file))
    _tune_garbage_collector()
    return settings


def _settings(config: Config, app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.server.host,
        port=config.server.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # Idle keep-alive connections hold a socket each: closed after 5 s (the manual's
        # docs/operations.md names this bound).
        timeout_keep_alive=5,
        # Whose X-Forwarded-For sets the client address that server_ips are checked
        # against; None leaves it to uvicorn's FORWARDED_ALLOW_IPS environment variable.
        proxy_headers=True,
        forwarded_allow_ips=config.server.forwarded_allow_ips,
    )


def _ensure_free(host: str, port: int) -> None:
    """Refuse a port in use with one line, as ``--workers`` does, before opening the store."""
    try:
        workers.ensure_free(host, port)
    except OSError as exc:
        raise Refusal(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                      exits.FAILED) from None
