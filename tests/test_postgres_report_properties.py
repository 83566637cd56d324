"""Reports on PostgreSQL equal a brute-force recount of the same rows, in any zone or grouping.

The rows are stored on SQLite (tests/test_report_properties.py), copied as they are into
PostgreSQL, and the roll-ups rebuilt there by migration 3's recount; whole-hour zones then
read the roll-ups and the others the exact queries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.reports.figures import build
from app.reports.period import span_of
from storage.postgres import rollups
from storage.postgres.reports import report_figures
from storage.reports import RawFigures, ReportSpan
from tests.test_report_properties import KEYS, ZONES, brute_force, events, leads, store
from tests.test_rollups_reports import params

_COPIED = {
    "leads": ("transaction_id", "cid", "pid", "fields", "cost", "created_at", "cost_micro"),
    "events": ("transaction_id", "cid", "event_id", "pid", "once", "conversion",
               "conversion_id", "revenue", "payout", "converted_at", "fields", "fired_at",
               "status", "revenue_micro", "payout_micro", "hold_reason"),
    "conversion_changes": ("conversion_id", "from_status", "to_status", "source",
                           "changed_at"),
}
_BOOLEAN = {"once", "conversion"}


async def _copy_and_report(url: str, path: Path, span: ReportSpan) -> RawFigures:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE leads, events, conversion_changes, stats")
        with closing(sqlite3.connect(path)) as lite:
            for table, columns in _COPIED.items():
                rows = [tuple(bool(value) if name in _BOOLEAN else value
                              for name, value in zip(columns, row, strict=True))
                        for row in lite.execute(f"SELECT {', '.join(columns)} FROM {table}")]
                await conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                    f" ({', '.join(f'${n}' for n in range(1, len(columns) + 1))})", rows)
        await conn.execute(rollups.REBUILD)
        return await report_figures(conn, span)
    finally:
        await conn.close()


@settings(derandomize=True, max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead_rows=leads, event_rows=events, zone=st.sampled_from(ZONES),
       group_by=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
       first=st.integers(0, 10), days=st.integers(1, 30),
       cids=st.sampled_from([(), ("c1",)]), event_ids=st.sampled_from([(), ("e2",)]))
def test_postgresql_reports_equal_a_recount_of_the_stored_rows(
    pg_url: str, lead_rows: list[Any], event_rows: list[Any], zone: str, group_by: list[str],
    first: int, days: int, cids: tuple[str, ...], event_ids: tuple[str, ...],
) -> None:
    # The database is the test's own and emptied for each example.
    asked = params(zone, tuple(group_by), first, days, cids=cids, event_ids=event_ids)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store(path, lead_rows, event_rows)
        figures = asyncio.run(_copy_and_report(pg_url, path, span_of(asked)))
        rows, totals = brute_force(path, asked)
    found = build(asked, figures)
    assert (found.rows, found.totals) == (rows, totals)
