"""The ``report`` subcommand's flags: the API's query parameters, spelled as flags."""

from __future__ import annotations

import argparse
from typing import Any

from app.reports.params import GROUP_KEYS


def add_report_parser(commands: Any, default_db: str) -> None:
    report = commands.add_parser(
        "report", help="print a report of a database no server is serving",
        description="Print clicks, conversions and money over a period, as GET "
                    "/api/reports computes them, from a database file no server is "
                    "serving (a served one exits 3: use the API there) or from a "
                    "PostgreSQL database, served or not.")
    report.add_argument("--from", dest="from_day", metavar="DAY", required=True,
                        help="first day, YYYY-MM-DD, in --tz")
    report.add_argument("--to", dest="to_day", metavar="DAY", required=True,
                        help="last day, YYYY-MM-DD, inclusive")
    report.add_argument("--tz", default="UTC", help="IANA time zone (default: %(default)s)")
    report.add_argument("--group-by", default="day",
                        help=f"comma list of {', '.join(GROUP_KEYS)} (default: %(default)s)")
    for name in ("cid", "pid", "event-id"):
        report.add_argument(f"--{name}", action="append", metavar=name.upper(),
                            help=f"only this {name} (repeatable)")
    report.add_argument("--csv", action="store_true", help="CSV instead of a table")
    report.add_argument("--config", metavar="FILE",
                        help="TOML configuration file (default: the built-in demo config)")
    report.add_argument("--db", metavar="DB",
                        help="existing SQLite database file or postgresql:// URL "
                             f"(default: {default_db})")


def report_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as the API's parameters."""
    return {"from": args.from_day, "to": args.to_day, "tz": args.tz,
            "group_by": args.group_by, "cid": args.cid, "pid": args.pid,
            "event_id": args.event_id}
