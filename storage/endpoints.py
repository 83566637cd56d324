"""What both stores share about postback endpoints: the key that names one, what an
attempt tells of one's health, an operator's re-queue, and the health read back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from actors.clock import utc_text


class EndpointOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt's answer, as its endpoint's health counts it.

    The database decides a pause in the attempt's own write, so every process sees the
    same count: ``pause_after`` failures in a row (0: never), the first of them at or
    before ``pause_since`` (the attempt's time less the minimum span), or at once when
    ``gone`` (a 410).
    """

    endpoint: str
    at: str
    delivered: bool
    status_code: int | None
    error: str | None
    pause_after: int
    pause_since: str
    gone: bool = False
    # A 429/503's Retry-After: no postback to the endpoint is sent before this moment.
    not_before: str | None = None

    @property
    def failure(self) -> str | None:
        """What the endpoint's ``last_error`` becomes: None for a delivery."""
        if self.delivered:
            return None
        return self.error or f"HTTP {self.status_code}"


class Requeue(msgspec.Struct, frozen=True, kw_only=True):
    """Paused postbacks of an endpoint made pending again (``resume``), or dead letters
    created in [``created_from``, ``created_to``) (``recover``), due at ``now``.

    ``counted`` holds, once committed, how many postbacks it re-queued: the writer fills
    it in (an op's future carries no value).
    """

    action: Literal["resume", "recover"]
    now: str
    endpoint: str | None = None
    created_from: str | None = None
    created_to: str | None = None
    counted: list[int] = msgspec.field(default_factory=list)
    # The name of the token that asked for it, kept on each postback it re-queues (and,
    # for a resume, on the endpoint).
    token: str | None = None


class EndpointHealth(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint's row as a store reads it (no name: the config gives that)."""

    endpoint: str
    state: Literal["active", "paused"]
    consecutive_failures: int
    last_success_at: str | None
    last_failure_at: str | None
    last_status_code: int | None
    last_error: str | None
    paused_at: str | None
    paused_reason: str | None
    # Postbacks to it, by status.
    postbacks: dict[str, int]
    # Attempts and deliveries in the hourly buckets of the last 24 hours.
    attempts_24h: int
    delivered_24h: int
    # The name of the token that last resumed it.
    resumed_by: str | None = None


class EndpointView(EndpointHealth, frozen=True, kw_only=True):
    """An endpoint's health, as ``GET /api/endpoints`` shows it: named by the config."""

    name: str
    # delivered / attempts over the last 24 hours, as a decimal text; None with no attempt.
    success_rate_24h: str | None


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
        row = (key, "active", 0, None, None, None, None, None, None, None)
    (_, state, failures, success_at, failure_at, status_code, error, paused_at,
     paused_reason, resumed_by) = row
    return EndpointHealth(
        endpoint=key, state="paused" if state == "paused" else "active",
        consecutive_failures=failures,
        last_success_at=success_at, last_failure_at=failure_at,
        last_status_code=status_code, last_error=error, paused_at=paused_at,
        paused_reason=paused_reason, postbacks=counts, attempts_24h=day[0],
        delivered_24h=day[1], resumed_by=resumed_by)
