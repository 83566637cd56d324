"""An operator's resend: due now, keeping what the last attempt said."""

from __future__ import annotations

from typing import Any

import pytest

from app.postbacks.retry import manual_retry
from storage.records import PostbackView

NOW = "2026-01-02T00:00:00.000000Z"


def view(**fields: Any) -> PostbackView:
    base: dict[str, Any] = dict(
        id=7, transaction_id="t", cid="c", pid="p", event_id="e", conversion_id="",
        kind="buyer", method="GET", url="http://x/", status="failed", attempts=3,
        max_attempts=8, next_attempt_at=None, last_status_code=400, last_error="HTTP 400",
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z")
    return PostbackView(**(base | fields))


def test_a_resend_is_due_now_and_keeps_the_last_answer() -> None:
    change = manual_retry(view(), NOW)
    assert (change.postback_id, change.status, change.attempts, change.max_attempts,
            change.next_attempt_at, change.updated_at) == (7, "pending", 3, 8, NOW, NOW)
    assert (change.last_status_code, change.last_error) == (400, "HTTP 400")


@pytest.mark.parametrize(("attempts", "max_attempts", "allowed"), [
    (8, 8, 9), (3, 3, 4), (2, 8, 8), (0, 1, 1)])
def test_a_resend_of_a_postback_out_of_attempts_gets_exactly_one_more(
    attempts: int, max_attempts: int, allowed: int
) -> None:
    change = manual_retry(view(attempts=attempts, max_attempts=max_attempts), NOW)
    assert change.max_attempts == allowed
