"""Reports by tracking fields and local time on PostgreSQL equal a recount of the same rows.

The rows of tests/test_report_breakdowns.py, stored on SQLite, copied into PostgreSQL as
they are (tests/test_postgres_report_properties.py), and grouped there.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.reports.figures import build
from app.reports.period import span_of
from tests.test_postgres_report_properties import _copy_and_report
from tests.test_report_breakdowns import asked, groupings, recount, store_tagged, tags
from tests.test_report_properties import ZONES, events, leads


@settings(derandomize=True, max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead_rows=leads, event_rows=events, lead_tags=tags, zone=st.sampled_from(ZONES),
       group_by=groupings, first=st.integers(0, 10), days=st.integers(1, 30),
       cids=st.sampled_from([(), ("c1",)]), event_ids=st.sampled_from([(), ("e2",)]))
def test_postgresql_reports_by_tracking_fields_and_local_time_equal_a_recount(
    pg_url: str, lead_rows: list[Any], event_rows: list[Any], lead_tags: list[dict[str, str]],
    zone: str, group_by: list[str], first: int, days: int, cids: tuple[str, ...],
    event_ids: tuple[str, ...],
) -> None:
    params = asked(zone, group_by, first, days, cids=cids, event_ids=event_ids)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store_tagged(path, lead_rows, event_rows, lead_tags)
        figures = asyncio.run(_copy_and_report(pg_url, path, span_of(params)))
        rows, totals = recount(path, params)
    found = build(params, figures)
    assert (found.rows, found.totals) == (rows, totals)
