"""The transaction rules (checks 7 to 10 of an event), as plain functions without I/O."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from actors.messages import CostOperation, FireEvent, Verdict
from actors.state import TransactionState
from storage.records import ConversionStatus


def decide(state: TransactionState | None, event: FireEvent, now: float) -> Verdict:
    """What happens to ``event`` on a transaction in ``state`` at monotonic time ``now``."""
    if state is None or state.cid != event.cid:
        return Verdict.UNKNOWN_TRANSACTION
    if event.conversion and event.revenue is None:
        return Verdict.REVENUE_REQUIRED
    if state.window_open(event.event_id, now):
        return Verdict.LOCKED
    if event.once and event.event_id in state.fired:
        return Verdict.DUPLICATE
    return Verdict.FIRED


def hold_reason(event: FireEvent) -> str | None:
    """Why ``event``'s conversion is stored pending; None when it is approved as it fires.

    When several holds apply, the first of these is given: the sender's (``anonymous``),
    a duplicate lead's (``duplicate_lead``), a cap's (``cap_reached``), revenue above the event's
    ``hold_revenue_above`` (``revenue_above_hold``), the event's manual approval
    (``manual_approval``). Who sent a conversion says most about it; an amount over the
    limit says more than a rule every conversion of the event follows.
    """
    if not event.conversion:
        return None
    if event.hold_reason is not None:
        return event.hold_reason
    if event.duplicate_of is not None:
        return "duplicate_lead"
    if event.cap_reason == "cap_reached":
        return "cap_reached"
    limit = event.hold_revenue_above
    if limit is not None and event.revenue is not None and event.revenue > limit:
        return "revenue_above_hold"
    if event.pending:
        return "manual_approval"
    return None


def rejection_reason(event: FireEvent, clicked_at: str | None, now: datetime) -> str | None:
    """Why ``event``'s conversion is rejected as it fires, or None.

    Outside the event's window after the lead's click (``clicked_at``, stored UTC text):
    ``too_fast`` or ``expired``; the time compared is the conversion's own
    ``conversion_date`` when it has one, else ``now``. Then a duplicate lead whose
    campaign rejects them: ``duplicate_lead``.
    """
    if not event.conversion:
        return None
    low, high = event.min_seconds_after_click, event.max_days_after_click
    if clicked_at is not None and (low is not None or high is not None):
        elapsed = ((event.converted_at or now)
                   - datetime.fromisoformat(clicked_at)).total_seconds()
        if low is not None and elapsed < low:
            return "too_fast"
        if high is not None and elapsed > high * 86_400:
            return "expired"
    if event.duplicate_of is not None and event.duplicate_action == "reject":
        return "duplicate_lead"
    return None


def fire_status(event: FireEvent) -> tuple[ConversionStatus | None, str | None]:
    """A fired conversion's status and why it is not approved as it fired (None for an
    event that is no conversion)."""
    if not event.conversion:
        return None, None
    if event.rejected_reason is not None:
        return "rejected", event.rejected_reason
    held = hold_reason(event)
    if held is not None:
        return "pending", held
    return "approved", event.cap_reason


def opens_window(verdict: Verdict) -> bool:
    """A request that got as far as the lock check opens the window, whatever comes next."""
    return verdict in (Verdict.DUPLICATE, Verdict.FIRED)


def apply_cost(current: Decimal | None, amount: Decimal, operation: CostOperation) -> Decimal:
    """The lead's cost after an event reports ``amount`` with ``operation``."""
    base = current if current is not None else Decimal(0)
    if operation == "add":
        return base + amount
    if operation == "subtract":
        return base - amount
    return amount
