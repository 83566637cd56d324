"""The retry policy, as pure functions: what an answer means and how long to wait."""

from __future__ import annotations

from typing import Literal

from storage.records import PostbackChange, PostbackView

Outcome = Literal["delivered", "retry", "failed"]

# Each wait is this many times the last: 1 s, 4 s, 16 s, ... up to the cap (an hour).
GROWTH = 4.0


def outcome_of_status(status_code: int) -> Outcome:
    """2xx delivered; 408, 429 and 5xx may pass; any other answer will not change."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "failed"


def next_delay(attempt: int, *, first: float, cap: float, jitter: float) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (counting from 1).

    ``jitter`` in [0, 1) spreads the wait over 75-125 % of its nominal value, so postbacks
    that failed together do not all come back at the same instant.
    """
    nominal = min(cap, first * GROWTH ** (attempt - 1))
    return min(cap, nominal * (0.75 + 0.5 * jitter))


def retry_after_seconds(header: str | None, cap: float) -> float | None:
    """A Retry-After given in seconds, within the cap; dates and junk are ignored."""
    if header is None or not header.strip().isdigit():
        return None
    return min(cap, float(header.strip()))


def manual_retry(postback: PostbackView, now: str) -> PostbackChange:
    """An operator's resend: due now, with one more attempt if it had used them all."""
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
    )
