"""Reports read the roll-ups where they are exact: built by the migration, equal to a recount."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.reports.figures import build
from app.reports.params import ReportParams
from app.reports.period import span_of
from storage.sqlite import schema
from storage.sqlite.connection import prepare
from storage.sqlite.reports import read_report_figures
from tests.test_report_properties import EPOCH, KEYS, ZONES, brute_force, events, leads, store
from tests.test_rollups import assert_rollups_match

BEFORE_ROLLUPS = schema.MIGRATIONS.index(schema._add_rollups)


def store_without_rollups(path: Path, lead_rows: list[Any], event_rows: list[Any]) -> None:
    """Rows stored by a version that had no roll-ups; the next prepare() migrates them."""
    with mock.patch.object(schema, "MIGRATIONS", schema.MIGRATIONS[:BEFORE_ROLLUPS]):
        store(path, lead_rows, event_rows)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'stats'"
                            ).fetchone() == (0,)


def params(zone: str, group_by: tuple[str, ...], first: int = 0, days: int = 35,
           **filters: tuple[str, ...]) -> ReportParams:
    start = EPOCH.date() + dt.timedelta(days=first)
    return ReportParams(first=start, last=start + dt.timedelta(days=days - 1), tz=zone,
                        group_by=group_by, **filters)  # type: ignore[arg-type]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(lead_rows=leads, event_rows=events, zone=st.sampled_from(ZONES),
       group_by=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
       first=st.integers(0, 10), days=st.integers(1, 30),
       cids=st.sampled_from([(), ("c1",)]), event_ids=st.sampled_from([(), ("e2",)]))
def test_the_migration_builds_rollups_that_answer_like_a_recount(
    lead_rows: list[Any], event_rows: list[Any], zone: str, group_by: list[str], first: int,
    days: int, cids: tuple[str, ...], event_ids: tuple[str, ...],
) -> None:
    asked = params(zone, tuple(group_by), first, days, cids=cids, event_ids=event_ids)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store_without_rollups(path, lead_rows, event_rows)
        prepare(path)
        assert_rollups_match(path)
        found = build(asked, read_report_figures(path, span_of(asked)))
        rows, totals = brute_force(path, asked)
    assert (found.rows, found.totals) == (rows, totals)


@pytest.mark.parametrize(("zone", "hourly"), [
    ("UTC", True), ("America/New_York", True), ("Europe/Berlin", True),
    ("Asia/Kolkata", False), ("Asia/Kathmandu", False), ("Australia/Lord_Howe", False),
])
def test_only_whole_hour_zones_read_the_rollups(zone: str, hourly: bool) -> None:
    # The period spans New York's DST end and Lord Howe's half-hour DST start.
    assert span_of(params(zone, ("day",))).hourly is hourly
    assert span_of(params(zone, ("cid",))).hourly is hourly


def test_a_half_hour_zone_counts_from_the_rows_and_a_whole_hour_one_from_the_rollups(
        tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    moment = EPOCH + dt.timedelta(days=2, hours=18, minutes=45)
    store_without_rollups(path, [("c1", "p1", moment, None)], [(0, "p1", "e1", moment, None)])
    prepare(path)
    assert_rollups_match(path)
    # 18:45 UTC is 00:15 the next day in Kolkata (+05:30): not an hour a roll-up can split.
    kolkata = params("Asia/Kolkata", ("day", "hour"), days=5)
    utc = params("UTC", ("day",), days=5)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE stats SET clicks = 101 WHERE clicks = 1")  # only in the roll-ups
    found = build(kolkata, read_report_figures(path, span_of(kolkata)))
    assert (found.rows, found.totals) == brute_force(path, kolkata)
    assert [(row["day"], row["hour"], row["clicks"]) for row in found.rows] == [
        ("2026-10-03", "2026-10-03T00:00+05:30", 1)]
    assert build(utc, read_report_figures(path, span_of(utc))).totals["clicks"] == 101


def test_roll_ups_that_overflowed_into_a_float_are_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    moment = EPOCH + dt.timedelta(days=2, hours=3)
    sale = (moment, Decimal("1000000000000"), Decimal("10"), "approved", None)
    store_without_rollups(path, [("c1", "p1", moment, None)],
                          [(0, "p1", "e1", moment, sale), (0, "p1", "e1", moment, sale)])
    prepare(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        # As an older version left an hour whose revenue summed past 2^63 millionths:
        # SQLite made it a float.
        conn.execute("UPDATE stats SET revenue = revenue + 9.3e18 WHERE event_id = 'e1'")
        assert conn.execute("SELECT typeof(revenue) FROM stats WHERE event_id = 'e1'"
                            ).fetchone() == ("real",)
    asked = params("UTC", ("day",), days=5)
    found = build(asked, read_report_figures(path, span_of(asked)))
    assert (found.rows, found.totals) == brute_force(path, asked)
    assert found.totals["revenue"] == "2000000000000.00"


def test_the_recount_repairs_a_float_an_older_version_left(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    moment = EPOCH + dt.timedelta(days=2, hours=3)
    sale = (moment, Decimal("1000000000000"), Decimal("10"), "approved", None)
    exact = schema.MIGRATIONS.index(schema._exact_rollups)
    with mock.patch.object(schema, "MIGRATIONS", schema.MIGRATIONS[:exact]):
        store(path, [("c1", "p1", moment, None)], [(0, "p1", "e1", moment, sale)] * 10)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO stats (hour, cid, pid, event_id, revenue) VALUES"
                     " (?, 'c1', 'p1', 'e1', 1.0e19)", (f"{moment:%Y-%m-%dT%H}",))
    prepare(path)  # migration 7: the money columns in two parts, recounted
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT typeof(revenue), revenue, revenue_high FROM stats"
                            " WHERE event_id = 'e1'").fetchone() == ("integer", 0, 10)
    assert_rollups_match(path)
    asked = params("UTC", ("day",), days=5)
    found = build(asked, read_report_figures(path, span_of(asked)))
    assert found.totals["revenue"] == "10000000000000.00"
    assert (found.rows, found.totals) == brute_force(path, asked)
