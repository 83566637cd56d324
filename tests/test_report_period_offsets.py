"""A report's period is checked hour by hour for its zone's offsets once, not per request.

The check walks every hour of the period (744 for a month) in the event loop; a dashboard
asks for the same period again and again, so a repeat reuses what was worked out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.reports import period
from app.reports.params import params_from_query
from app.reports.period import HOUR, MINUTE, bucket_width, span_of
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUERY = {"from": "2026-03-01", "to": "2026-03-31", "group_by": "day",
         "tz": "America/New_York"}


def test_a_repeated_period_is_worked_out_once() -> None:
    params = params_from_query("from=2026-03-01&to=2026-03-31&group_by=day&tz=Europe/Paris")
    first = span_of(params)
    before = period._offsets.cache_info()
    assert span_of(params) == first
    after = period._offsets.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def test_the_width_still_follows_each_zone_through_its_clock_changes() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert bucket_width(start, end, ZoneInfo("America/New_York")) == HOUR
    assert bucket_width(start, end, ZoneInfo("Asia/Kolkata")) == MINUTE
    # Lord Howe moves its clocks by half an hour, in April: only a period across it
    # needs minutes.
    assert bucket_width(start, dt.datetime(2026, 3, 31, tzinfo=dt.UTC),
                        ZoneInfo("Australia/Lord_Howe")) == HOUR
    assert bucket_width(start, end, ZoneInfo("Australia/Lord_Howe")) == MINUTE


@pytest.mark.both_stores
async def test_the_same_report_asked_twice_reads_its_period_once(api: Any) -> None:
    first = await api.client.get("/api/reports", params=QUERY, headers=AUTH)
    before = period._offsets.cache_info()
    again = await api.client.get("/api/reports", params=QUERY, headers=AUTH)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    # The report processes keep caches of their own: only the serving process counts here.
    assert period._offsets.cache_info().misses == before.misses
