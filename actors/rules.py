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
