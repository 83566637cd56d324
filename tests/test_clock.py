"""The service's clock tells UTC, whatever the host's time zone."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from actors.clock import SystemClock, utc_text


def test_the_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert utc_text(now).endswith("Z")


def test_a_moment_in_another_zone_is_written_in_utc_whatever_the_hosts_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the host's own zone is neither UTC nor the moment's
    time.tzset()
    try:
        new_york_morning = datetime(2026, 1, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
        assert utc_text(new_york_morning) == "2026-01-01T12:00:00.000000Z"
    finally:
        monkeypatch.undo()
        time.tzset()
