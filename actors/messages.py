"""What goes into an actor's mailbox, and what comes back."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import msgspec

from storage.records import AnswerRow, CapCharge

CostOperation = Literal["add", "subtract", "override"]


class OwedCaps(Protocol):
    """The caps a conversion counts against (app/events/caps.py)."""

    def charges(self, conversion_id: str, moment: datetime) -> tuple[CapCharge, ...]:
        """What the conversion, fired at ``moment``, adds to each cap."""
        ...

    def over(self, cap: str) -> str:
        """What a conversion past cap ``cap`` becomes: reject, pending or unpaid."""
        ...


class FireEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """An event request that passed every check that needs only the configuration."""

    transaction_id: str
    cid: str
    event_id: str
    pid: str
    conversion: bool
    once: bool
    revenue: Decimal | None = None
    payout: Decimal | None = None
    cost: Decimal | None = None
    cost_operation: CostOperation = "add"
    lead_fields: dict[str, Any] = {}
    event_fields: dict[str, Any] = {}
    converted_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    # The configuration asks for postbacks when this event fires.
    postbacks: bool = False
    # A conversion that waits for an operator's approval (the event's approval = "manual").
    pending: bool = False
    # The event's hold_revenue_above: a conversion with more revenue waits for an operator.
    hold_revenue_above: Decimal | None = None
    # Why the sender's request holds the conversion for an operator (a reason code such as
    # "anonymous"); any value makes the conversion pending with it.
    hold_reason: str | None = None
    # An unknown transaction gets its lead (this cid and pid, the event's lead fields)
    # in the same write as the event.
    create: bool = False
    # The keyed hashes of the lead fields it sends (app/events/dedupe.py), kept with the
    # lead in the same write.
    lead_keys: tuple[str, ...] = ()
    # The payout rule that priced ``payout`` (app/events/payouts.py).
    payout_rule: str | None = None
    # The event's conversion window (seconds and days after the lead's click): outside
    # it, the conversion is rejected as it fires (actors.rules.rejection_reason).
    min_seconds_after_click: float | None = None
    max_days_after_click: float | None = None
    # The lead repeats this earlier lead (the campaign's dedupe): the conversion is held
    # or rejected with reason duplicate_lead.
    duplicate_of: str | None = None
    duplicate_action: Literal["pending", "reject"] = "pending"
    # Why the conversion is rejected as it fires; set by the actor, which knows the lead.
    rejected_reason: str | None = None
    # The caps it counts against; the database adds it to them only where it fits.
    caps: OwedCaps | None = None
    # Past a cap: held pending ("cap_reached") or approved unpaid ("cap_reached_unpaid").
    cap_reason: str | None = None
    # With an Idempotency-Key: the stored answer, given the conversion id, its status and
    # reason, written with the event.
    answer: Callable[[str, str, str | None], AnswerRow] | None = None
    # Amounts sent in another currency (app/events/currency.py): revenue and cost above
    # are converted; the revenue as sent, its currency and the rate are kept beside them.
    original_revenue: Decimal | None = None
    currency: str | None = None
    rate: Decimal | None = None


class CreateLead(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A click: the lead the new transaction belongs to."""

    transaction_id: str
    cid: str
    pid: str
    fields: dict[str, Any] = {}
    ip: str | None = None
    user_agent: str | None = None
    # The keyed hashes of its fields (app/events/dedupe.py), kept with the lead.
    lead_keys: tuple[str, ...] = ()


class LeadOf(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Which campaign and source the transaction's lead belongs to."""

    transaction_id: str


Message = FireEvent | CreateLead | LeadOf


class Verdict(enum.Enum):
    CREATED = "created"
    FIRED = "fired"
    FOUND = "found"
    UNKNOWN_TRANSACTION = "unknown_transaction"
    REVENUE_REQUIRED = "revenue_required"
    LOCKED = "locked"
    DUPLICATE = "duplicate"
    CAP_REACHED = "cap_reached"


class Reply(msgspec.Struct, frozen=True):
    verdict: Verdict
    conversion_id: str = ""
    # A fired conversion's status and why it is not approved and paid, if it is not.
    status: str = ""
    reason: str | None = None
    # The lead's, answering LeadOf.
    cid: str = ""
    pid: str = ""
