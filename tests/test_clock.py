"""The service's clock tells UTC, whatever the host's time zone."""

from __future__ import annotations

from datetime import timedelta

from actors.clock import SystemClock, utc_text


def test_the_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert utc_text(now).endswith("Z")
