"""The transaction rules (checks 7 to 10 of an event), as plain functions without I/O."""

from __future__ import annotations

from decimal import Decimal

from actors.messages import CostOperation, FireEvent, Verdict
from actors.state import TransactionState


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
    revenue above the event's ``hold_revenue_above`` (``revenue_above_hold``), the event's
    manual approval (``manual_approval``). Who sent a conversion says most about it; an
    amount over the limit says more than a rule every conversion of the event follows.
    """
    if not event.conversion:
        return None
    if event.hold_reason is not None:
        return event.hold_reason
    limit = event.hold_revenue_above
    if limit is not None and event.revenue is not None and event.revenue > limit:
        return "revenue_above_hold"
    if event.pending:
        return "manual_approval"
    return None


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
