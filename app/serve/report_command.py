"""``event-postback report``: a report read from the database, for cron jobs and invoices.

A served SQLite file is locked to its server: this works on a file no server is serving
(use ``GET /api/reports`` on a served one). A PostgreSQL database may be served meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from app.config.schema import Config
from app.edge.errors import ApiError
from app.factory import build_store
from app.reports.export import to_csv, to_table
from app.reports.figures import Report
from app.reports.params import ReportParams, checked
from app.reports.report import report
from app.serve import exits
from app.serve.exits import check_database, claim


def report_from_file(config: Config, raw: dict[str, Any], *, as_csv: bool) -> int:
    """Print the report of ``raw`` (the API's parameters); 2 on a bad one.

    Raises Refusal for a database that does not exist, cannot be reached, or is an
    SQLite file a server holds.
    """
    try:
        params = checked({name: value for name, value in raw.items() if value is not None})
    except ApiError as exc:
        problems = exc.invalid or dict.fromkeys(exc.missing or [], "required")
        for name, problem in problems.items():
            sys.stderr.write(f"--{name.replace('_', '-')}: {problem}\n")
        return exits.USAGE
    check_database(config.server.db, existing=True)
    found = asyncio.run(_report(config, params))
    sys.stdout.write(to_csv(found) if as_csv else to_table(found))
    return exits.OK


async def _report(config: Config, params: ReportParams) -> Report:
    store = build_store(config)
    # Before anything else: a served file is refused, not waited on.
    claim(store, when_served=": use GET /api/reports while it is served")
    await store.open()
    try:
        return await report(store, params)
    finally:
        await store.close()
