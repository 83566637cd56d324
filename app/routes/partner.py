"""What a partner token sees: its own source's conversions and postbacks, its payout and
never the revenue, the buyers' postbacks or another source's anything."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from app.reports.figures import Report
from app.routes.access import Caller
from storage.records import ConversionStatus, ConversionView, PostbackView

# What a partner's report leaves empty: the buyer's money and what the network made.
HIDDEN_FIGURES = ("revenue", "reversed_revenue", "net_revenue", "pending_revenue", "cost",
                  "profit", "epc", "cpc", "roi")


class PartnerConversion(msgspec.Struct, frozen=True, kw_only=True):
    """A conversion as its source sees it: what it earns, not what the buyer paid."""

    conversion_id: str
    transaction_id: str
    cid: str
    pid: str
    event_id: str
    payout: Decimal | None
    status: ConversionStatus
    reason: str | None
    converted_at: str
    decided_at: str | None
    fired_at: str


def is_partner(caller: Caller) -> bool:
    return caller.role == "partner"


def sees_conversion(caller: Caller, view: ConversionView) -> bool:
    return not is_partner(caller) or view.pid == caller.pid


def sees_postback(caller: Caller, view: PostbackView) -> bool:
    return not is_partner(caller) or (view.kind == "source" and view.pid == caller.pid)


def conversion_for(caller: Caller, view: ConversionView) -> Any:
    """The view itself, or for a partner the part of it that is its own business."""
    if not is_partner(caller):
        return view
    return PartnerConversion(
        conversion_id=view.conversion_id, transaction_id=view.transaction_id, cid=view.cid,
        pid=view.pid, event_id=view.event_id, payout=view.payout, status=view.status,
        reason=view.reason, converted_at=view.converted_at, decided_at=view.decided_at,
        fired_at=view.fired_at)


def report_for(caller: Caller, report: Report) -> Report:
    """The report, or for a partner the same with the buyer's money left empty (null in
    JSON, an empty CSV cell); it was already limited to the partner's pid."""
    if not is_partner(caller):
        return report
    hidden = dict.fromkeys(HIDDEN_FIGURES)
    return msgspec.structs.replace(report, rows=[row | hidden for row in report.rows],
                                   totals=report.totals | hidden)
