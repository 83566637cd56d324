"""The bodies and query strings of the conversions API."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from app.conversions.rules import Action
from storage.records import ConversionStatus, HoldReason

Reason = Annotated[str, Meta(max_length=255)]
Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
MAX_BULK = 1000


class ChangeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class BulkBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    action: Action
    conversion_ids: Annotated[list[Annotated[str, Meta(min_length=1, max_length=255)]],
                              Meta(min_length=1, max_length=MAX_BULK)]
    reason: Reason | None = None


class ConversionQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The filters of GET /api/conversions; ``from``/``to`` are UTC days, inclusive."""

    status: ConversionStatus | None = None
    # Why conversions were held (whatever their status now).
    reason: HoldReason | None = None
    cid: str | None = None
    pid: str | None = None
    from_day: Day | None = msgspec.field(default=None, name="from")
    to_day: Day | None = msgspec.field(default=None, name="to")
    limit: Annotated[int, Meta(ge=1, le=500)] = 50
    # A conversion's row id, which both stores keep in a signed 64-bit integer.
    cursor: Annotated[int, Meta(ge=1, le=2**63 - 1)] | None = None
