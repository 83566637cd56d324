"""Rows the writer stores and records the reader returns.

Money travels as ``Decimal`` and is stored as its exact decimal text; times are UTC ISO-8601.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from storage.catalog import CatalogVersionRow
from storage.currency import Sent
from storage.due import DUE_SCAN as DUE_SCAN
from storage.due import DuePostback as DuePostback
from storage.due import HostLoad as HostLoad
from storage.endpoints import EndpointOutcome, Requeue

# Lead and event fields are stored as JSON. Numbers keep their exact text both ways.
_fields_encoder = msgspec.json.Encoder(decimal_format="number")
_fields_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def encode_fields(fields: dict[str, Any]) -> str:
    return _fields_encoder.encode(fields).decode()


def decode_fields(text: str) -> dict[str, Any]:
    return _fields_decoder.decode(text)


def conversion_id_text(stored: str | None) -> str:
    """``""`` for no conversion, as the event answers give it.

    The column keeps NULL, so the unique index on conversion ids skips non-conversions;
    every answer shows the one form.
    """
    return stored or ""


# Rows are array_like: the writer sends a whole batch of them to SQLite as one JSON array
# of arrays, with the fields in column order.


class LeadRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    transaction_id: str
    cid: str
    pid: str
    fields: str
    cost: str | None
    ip: str | None
    user_agent: str | None
    created_at: str
    # Millionths of ``cost`` (storage.money.micro), for exact sums in SQL.
    cost_micro: int | None = None


class EventRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    transaction_id: str
    cid: str
    event_id: str
    pid: str
    once: bool
    conversion: bool
    conversion_id: str | None
    revenue: str | None
    payout: str | None
    converted_at: str | None
    fields: str
    ip: str | None
    user_agent: str | None
    fired_at: str
    # Conversions only: approved or pending when fired; decided_at once approved.
    status: ConversionStatus | None = None
    decided_at: str | None = None
    # Millionths of revenue and payout (storage.money.micro), for exact sums in SQL.
    revenue_micro: int | None = None
    payout_micro: int | None = None
    # Why a conversion was not approved as it fired (a HoldReason, or a rejection's
    # reason), or why it is approved unpaid; kept after any later decision.
    hold_reason: str | None = None
    # The payout rule that priced the conversion (app/events/payouts.py).
    payout_rule: str | None = None
    # A duplicate lead's conversion: the earlier lead it repeats (its transaction id).
    duplicate_of: str | None = None
    # Sent in another currency (storage/currency.py): the revenue as sent, its currency
    # and the rate; last, so a row's first places stay what they were.
    original_revenue: str | None = None
    currency: str | None = None
    rate: str | None = None


class LeadKeyRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A keyed hash of one of a lead's de-duplicated field values (app/events/dedupe.py),
    with when the lead was created: never the value itself."""

    cid: str
    digest: str
    created_at: str
    transaction_id: str


class LeadChange(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Fields merged into a lead (JSON merge patch) and its new cost, if it changed.

    ``cost`` is the new cost as the process that decided it knew the old one. An add or a
    subtract also carries its signed amount, ``cost_delta``: where several processes
    change one lead, the store applies that to the cost it holds instead.
    """

    transaction_id: str
    fields_patch: str | None
    cost: str | None
    cost_micro: int | None = None
    cost_delta: str | None = None


# "paused": waiting for its endpoint to be resumed (see EndpointOutcome).
PostbackStatus = Literal["pending", "delivered", "failed", "paused"]
ConversionStatus = Literal["approved", "pending", "rejected", "reversed"]
# Why a conversion was not approved and paid as it fired: held pending (in the order that
# picks one when several apply, actors.rules.hold_reason), rejected as it fired
# (too_fast, expired, duplicate_lead), or approved unpaid (cap_reached_unpaid).
HoldReason = Literal["anonymous", "duplicate_lead", "cap_reached", "revenue_above_hold",
                     "manual_approval", "too_fast", "expired", "cap_reached_unpaid"]
HOLD_REASONS: tuple[HoldReason, ...] = (
    "anonymous", "duplicate_lead", "cap_reached", "revenue_above_hold", "manual_approval",
    "too_fast", "expired", "cap_reached_unpaid")
# Conversions counted per status and hold reason (None: approved as it fired).
ConversionCounts = dict[tuple[ConversionStatus, str | None], int]
ChangeSource = Literal["api", "bulk", "cli"]


class PostbackRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A postback as rendered when its event fired: sent as is, however often retried."""

    transaction_id: str
    cid: str
    pid: str
    event_id: str
    conversion_id: str | None
    kind: Literal["buyer", "source"]
    method: Literal["GET", "POST"]
    url: str
    host: str
    body: str | None
    secret: str | None
    status: PostbackStatus
    max_attempts: int
    next_attempt_at: str
    created_at: str
    updated_at: str
    endpoint: str = ""  # the configured host and path it goes to (storage.endpoints)
    signing_secrets: str | None = None  # Standard Webhooks secrets, space-separated


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    postback_id: int
    attempt: int
    started_at: str
    url: str
    status_code: int | None
    error: str | None
    latency_ms: float
    response: str | None


class PostbackChange(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A postback's new delivery state, after an attempt or an operator's retry."""

    postback_id: int
    status: PostbackStatus
    attempts: int
    max_attempts: int
    next_attempt_at: str
    last_status_code: int | None
    last_error: str | None
    updated_at: str
    # The state the change was decided from, so that it applies to nothing else: an
    # attempt's outcome (attempts one more than before) on a pending postback, under the
    # lease it was sent with (PostgreSQL); an operator's resend (attempts as they were)
    # on one not delivered and no longer leased.
    resend: bool = False
    lease: str | None = None
    # Not sent yet, only due later (its host's send rate was used up): attempts as they
    # were, under the lease it was read with.
    deferred: bool = False
    # A resend's token name, kept on the postback as ``requeued_by``.
    token: str | None = None


class ConversionChange(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A conversion's move to a new status, kept for ever as its audit trail."""

    conversion_id: str
    from_status: ConversionStatus
    to_status: ConversionStatus
    reason: str | None
    source: ChangeSource
    changed_at: str
    # The name of the token that made it ("cli" from the command line); last, as the
    # column was added after the others. Rows stored before it have none.
    token: str | None = None

# The status of an AnswerRow that only reserves its key for a request still in progress.
RESERVED = 0


class AnswerRow(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """The answer a request with an Idempotency-Key got; ``body`` is base64."""

    key: str
    fingerprint: str
    status: int
    content_type: str
    headers: str
    body: str
    created_at: str
    expires_at: str


class CapCharge(msgspec.Struct, frozen=True, kw_only=True):
    """What a conversion adds to a cap's use in one period, if it fits under the limit.

    ``cap`` is the cap's key (its filters, metric, period and zone), ``period`` the day
    (``2026-12-07``), month (``2026-12``) or ``total`` it falls in; ``amount`` and
    ``limit`` are whole conversions or millionths of money.
    """

    conversion_id: str
    cap: str
    period: str
    amount: int
    limit: int


class WriteOp(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work: every row in it commits together or not at all.

    An op with no rows is a barrier: it completes once everything queued before it has
    committed.
    """

    lead: LeadRow | None = None
    event: EventRow | None = None
    change: LeadChange | None = None
    postbacks: tuple[PostbackRow, ...] = ()
    attempt: AttemptRow | None = None
    postback_change: PostbackChange | None = None
    conversion_changes: tuple[ConversionChange, ...] = ()
    # Stored with the event it fired, so a retry finds it exactly when the event exists.
    answer: AnswerRow | None = None
    # An Idempotency-Key reserved in a shared database whose request stored nothing.
    released_key: str | None = None
    # The hashes a lead's de-duplicated field values add (kept when already there).
    lead_keys: tuple[LeadKeyRow, ...] = ()
    # What the op's conversion adds to each cap that counts it; any that does not fit
    # refuses the whole op (CapReached).
    cap_charges: tuple[CapCharge, ...] = ()
    # What a delivery attempt tells of its endpoint's health (with ``attempt``).
    endpoint_outcome: EndpointOutcome | None = None
    # An operator's resume of an endpoint or recovery of dead letters.
    requeue: Requeue | None = None
    # A new version of the catalog managed through the API.
    catalog: CatalogVersionRow | None = None


class StoredTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """What an actor needs to know about a transaction it loads from disk."""

    cid: str
    pid: str
    cost: Decimal | None
    fired: frozenset[str]
    # When the lead was created (its click), as stored UTC text.
    created_at: str | None = None


class EventView(Sent, frozen=True):
    event_id: str
    pid: str
    conversion: bool
    conversion_id: str  # "" for no conversion
    revenue: Decimal | None
    payout: Decimal | None
    converted_at: str | None
    fired_at: str
    fields: dict[str, Any]
    # Conversions only (None otherwise): see ConversionStatus.
    status: ConversionStatus | None
    decided_at: str | None
    # Why the conversion was not approved and paid as it fired (a HoldReason), kept after
    # any later decision; None for one approved as it fired, and for other events.
    reason: str | None = None
    # The payout rule that priced it, and the earlier lead a duplicate lead repeats.
    payout_rule: str | None = None
    duplicate_of: str | None = None


class MoneyByStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction's conversions summed per status: only approved ones are owed."""

    count: int
    revenue: Decimal
    payout: Decimal


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a conversion's life; the first is its firing (``from`` null)."""

    from_status: ConversionStatus | None = msgspec.field(name="from")
    to_status: ConversionStatus = msgspec.field(name="to")
    at: str
    reason: str | None
    source: str
    # Who made the change: its token's name, "cli", or null (the firing, or a change
    # stored before names were kept).
    token: str | None = None


class ConversionView(Sent, frozen=True, omit_defaults=True):
    conversion_id: str
    transaction_id: str
    cid: str
    pid: str
    event_id: str
    revenue: Decimal | None
    payout: Decimal | None
    status: ConversionStatus
    # Why it was not approved and paid as it fired (a HoldReason), kept after any later
    # decision; None for one approved as it fired.
    reason: str | None
    converted_at: str
    decided_at: str | None
    fired_at: str
    # The payout rule that priced it, and the earlier lead a duplicate lead repeats.
    payout_rule: str | None = None
    duplicate_of: str | None = None
    # Only when one conversion is shown on its own.
    history: list[HistoryEntry] | None = None


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    started_at: str
    url: str
    status_code: int | None
    error: str | None
    latency_ms: float
    response: str | None


class PostbackView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: int
    transaction_id: str
    cid: str
    pid: str
    event_id: str
    conversion_id: str  # "" for no conversion
    kind: str
    method: str
    url: str
    status: PostbackStatus
    attempts: int
    max_attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    # The name of the token that last resent or re-queued it (retry, recover, resume).
    requeued_by: str | None = None
    # Only when one postback is shown on its own.
    attempt_log: list[AttemptView] | None = None


class TransactionView(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    cid: str
    pid: str
    fields: dict[str, Any]
    cost: Decimal | None
    created_at: str
    events: list[EventView]
    # Conversions per status; payout is owed for "approved" only.
    conversions: dict[str, MoneyByStatus]
    postbacks: list[PostbackView]
