"""What both stores share about postback endpoints: the key that names one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from actors.clock import utc_text
from storage.records import EndpointHealth

# Hourly attempt counts older than this are of no use to the last day's success rate.
KEEP_HOURS = timedelta(days=2)


def endpoint_of(url: str) -> str:
    """An endpoint's key: the host (lower case) and path a postback URL goes to, without
    its scheme and query string; a URL too broken to split is its own key."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return parts.netloc.lower() + parts.path


def hour_of(moment: str) -> str:
    """The hour bucket of a stored UTC time text (``2026-12-02T15``)."""
    return moment[:13]


def forget_before(moment: str) -> str:
    """The oldest hour bucket still kept at ``moment``."""
    return hour_of(utc_text(datetime.fromisoformat(moment) - KEEP_HOURS))


def health_of(key: str, row: Sequence[Any] | None, counts: dict[str, int],
              day: tuple[int, int]) -> EndpointHealth:
    """An endpoint's health from its stored row (None: never attempted, so active)."""
    if row is None:
        row = (key, "active", 0, None, None, None, None, None, None)
    (_, state, failures, success_at, failure_at, status_code, error, paused_at,
     paused_reason) = row
    return EndpointHealth(
        endpoint=key, state="paused" if state == "paused" else "active",
        consecutive_failures=failures,
        last_success_at=success_at, last_failure_at=failure_at,
        last_status_code=status_code, last_error=error, paused_at=paused_at,
        paused_reason=paused_reason, postbacks=counts, attempts_24h=day[0],
        delivered_24h=day[1])
