"""The ``endpoints`` and ``postbacks`` subcommands' flags, and which command they run."""

from __future__ import annotations

import argparse
from typing import Any

from app.config.schema import Config
from app.serve.endpoint_command import (
    list_endpoints,
    probe_endpoint,
    recover_postbacks,
    resume_endpoint,
)

_CONFIG_HELP = "TOML configuration file (default: the built-in demo config)"


def _store_flags(parser: argparse.ArgumentParser, default_db: str) -> None:
    parser.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    parser.add_argument("--db", metavar="DB",
                        help="existing SQLite database file or postgresql:// URL "
                             f"(default: {default_db})")


def add_endpoint_parsers(commands: Any, default_db: str) -> None:
    endpoints = commands.add_parser(
        "endpoints", help="list, resume or test postback endpoints",
        description="Postback endpoints as GET /api/endpoints shows them. list and resume "
                    "work on a database file no server is serving (a served one exits "
                    "3: use the API there) or on a PostgreSQL database, served or not; "
                    "test only sends.")
    actions = endpoints.add_subparsers(dest="action", metavar="{list,resume,test}")
    _store_flags(actions.add_parser(
        "list", help="each endpoint's health (the default)",
        description="Each endpoint's state, failures in a row, last status code, "
                    "postbacks by status and the last 24 hours' success rate."), default_db)
    endpoints.set_defaults(action="list", config=None, db=None)
    resume = actions.add_parser(
        "resume", help="make a paused endpoint active, its paused postbacks due now",
        description="Make an endpoint active again; its paused postbacks are due at once.")
    resume.add_argument("name", metavar="NAME", help="a name GET /api/endpoints shows")
    _store_flags(resume, default_db)
    test = actions.add_parser(
        "test", help="send an endpoint a sample conversion once",
        description="Send a sample conversion (ids starting test-) through the endpoint's "
                    "first configured entry, signed as a delivery, once; print what was "
                    "sent and the answer. Nothing is stored. Exits 1 unless it answers "
                    "2xx.")
    test.add_argument("name", metavar="NAME", help="a name GET /api/endpoints shows")
    test.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)

    postbacks = commands.add_parser(
        "postbacks", help="recover dead-letter postbacks of a time range",
        description="Postbacks on the database, as the postbacks API changes them.")
    postback_actions = postbacks.add_subparsers(dest="action", required=True)
    recover = postback_actions.add_parser(
        "recover", help="make the dead letters created in a time range due now",
        description="Make the failed postbacks created from --from (included) to --to "
                    "(excluded) due at once, with at least one attempt left, on a "
                    "database file no server is serving (a served one exits 3: use POST "
                    "/api/postbacks/recover there) or a PostgreSQL database, served or "
                    "not.")
    recover.add_argument("--from", dest="from_time", metavar="TIME", required=True,
                         help="ISO 8601 time with its offset, such as 2026-12-02T15:00:00Z")
    recover.add_argument("--to", dest="to_time", metavar="TIME", required=True,
                         help="ISO 8601 time with its offset, later than --from")
    recover.add_argument("--endpoint", metavar="NAME", help="only this endpoint's")
    _store_flags(recover, default_db)


def run_endpoint_command(config: Config, args: argparse.Namespace) -> int:
    if args.command == "postbacks":
        return recover_postbacks(config, args.from_time, args.to_time, args.endpoint)
    if args.action == "resume":
        return resume_endpoint(config, args.name)
    if args.action == "test":
        return probe_endpoint(config, args.name)
    return list_endpoints(config)
