"""The retry policy, as pure functions: what an answer means and how long to wait."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from storage.records import PostbackChange, PostbackView

Outcome = Literal["delivered", "retry", "failed"]

# Each wait is this many times the last: 1 s, 4 s, 16 s, ... up to the cap (an hour).
GROWTH = 4.0
# Each wait is spread over ±20 % of its nominal value.
JITTER = 0.2
# The answers that say "slow down": their Retry-After is a wait the receiver asks for.
SLOW_DOWN = frozenset({429, 503})
# The answer that says the endpoint is gone for good: it pauses at once.
GONE = 410


def outcome_of_status(status_code: int) -> Outcome:
    """2xx delivered; 408, 429 and 5xx may pass; any other answer (3xx included, as
    redirects are never followed) will not change."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "failed"


def next_delay(attempt: int, *, first: float, cap: float, jitter: float) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (counting from 1).

    ``jitter`` in [0, 1] spreads the wait over 80-120 % of its nominal value, so postbacks
    that failed together do not all come back at the same instant. The wait stays within
    0 and ``cap`` whatever the random source gives.
    """
    nominal = min(cap, first * GROWTH ** (attempt - 1))
    spread = min(1.0, max(0.0, jitter))
    return min(cap, nominal * (1 + JITTER * (2 * spread - 1)))


def retry_after_seconds(header: str | None, cap: float, *, now: datetime) -> float | None:
    """A Retry-After's wait from ``now``, within the cap: delta-seconds or an HTTP-date
    (one already past asks for no wait); junk is ignored."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return min(cap, float(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": a time in UTC from a sender that did not say so
        moment = moment.replace(tzinfo=now.tzinfo)
    return min(cap, max(0.0, (moment - now).total_seconds()))


def asked_wait(status_code: int | None, retry_after: str | None, *, now: datetime,
               cap: float) -> float | None:
    """The wait a 429 or 503 asked for with a usable Retry-After (within the cap); it
    holds for every postback to the endpoint that answered."""
    if status_code not in SLOW_DOWN:
        return None
    return retry_after_seconds(retry_after, cap, now=now)


def retry_delay(attempt: int, *, status_code: int | None, retry_after: str | None,
                now: datetime, first: float, cap: float, jitter: float) -> float:
    """Seconds until the next attempt: the backoff, or longer when a 429 or 503 asked for
    more with its Retry-After (never past the cap)."""
    delay = next_delay(attempt, first=first, cap=cap, jitter=jitter)
    asked = asked_wait(status_code, retry_after, now=now, cap=cap)
    return delay if asked is None else max(delay, asked)


def manual_retry(postback: PostbackView, now: str, *,
                 token: str | None = None) -> PostbackChange:
    """An operator's resend: due now, with one more attempt if it had used them all,
    kept with the name of the token that asked for it."""
    return PostbackChange(
        postback_id=postback.id,
        status="pending",
        attempts=postback.attempts,
        max_attempts=max(postback.max_attempts, postback.attempts + 1),
        next_attempt_at=now,
        last_status_code=postback.last_status_code,
        last_error=postback.last_error,
        updated_at=now,
        resend=True,
        token=token,
    )
