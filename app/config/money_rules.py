"""The config of the money rules: payouts, payout rules per offer, caps, duplicate leads.

Their checks live here too (``money_rules_problem``): the schema module calls them with
each campaign, so a mistake stops start-up (or a reload) with one line like any other.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from storage.money import MAX_MONEY, percent_of, round_money

Id = Annotated[str, Meta(min_length=1, max_length=255)]


class PercentPayout(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                    tag="percent", tag_field="type"):
    value: Decimal

    def amount(self, revenue: Decimal) -> Decimal:
        return percent_of(revenue, self.value)


class FixedPayout(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                  tag="fixed", tag_field="type"):
    value: Decimal

    def amount(self, revenue: Decimal) -> Decimal:
        return round_money(self.value)


Payout = PercentPayout | FixedPayout


class PayoutRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a campaign pays a source for a conversion, for the sources and events named.

    Left out, ``pid`` or ``event_id`` matches any; the most specific match wins
    (app/events/payouts.py). ``name`` is what a conversion priced by it stores; left out,
    the filters name it (``pid=src_1 event_id=sale``, or ``campaign``).
    """

    payout: Payout
    pid: Id | None = None
    event_id: Id | None = None
    name: Annotated[str, Meta(min_length=1, max_length=100)] | None = None

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        parts = [f"{key}={value}" for key, value in (("pid", self.pid),
                                                     ("event_id", self.event_id)) if value]
        return " ".join(parts) or "campaign"


CapMetric = Literal["conversions", "revenue", "payout"]
CapPeriod = Literal["day", "month", "total"]
OverCap = Literal["reject", "pending", "unpaid"]


class CapConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``limit`` conversions (or revenue, or payout) per period for the
    conversions it matches; past it, ``over`` says what happens (app/events/caps.py)."""

    metric: CapMetric
    period: CapPeriod
    limit: Decimal
    over: OverCap = "reject"
    pid: Id | None = None
    event_id: Id | None = None
    # The zone whose midnights start a day or a month.
    timezone: str = "UTC"


class DedupeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A lead repeating a value of ``fields`` seen on another lead of the campaign within
    ``days`` is a duplicate: its conversions are held (``pending``) or rejected."""

    fields: Annotated[list[Id], Meta(min_length=1)]
    days: Annotated[int, Meta(ge=1, le=3650)] = 30
    action: Literal["pending", "reject"] = "pending"


def payout_problem(payout: Payout) -> tuple[str, str] | None:
    """Why a payout cannot be used (the place under it, the problem), or None."""
    if not payout.value.is_finite() or payout.value < 0:
        return "payout.value", "must be a finite number >= 0"
    if payout.value > MAX_MONEY:
        return "payout.value", f"must not be more than {MAX_MONEY:f}"
    if isinstance(payout, PercentPayout) and payout.value > 100:
        return "payout.value", "a percent payout must be between 0 and 100"
    return None


def money_rules_problem(*, cid: str, payouts: list[PayoutRule], caps: list[CapConfig],
                        conversions: set[str], events: set[str],
                        pids: set[str]) -> tuple[str, str] | None:
    """The first rule a campaign's payout rules and caps break, or None.

    ``conversions``: the campaign's conversion events; ``events``: all its events;
    ``pids``: every source's pid.
    """
    seen: dict[tuple[str | None, str | None], int] = {}
    for i, rule in enumerate(payouts):
        place = f"payouts[{i}]"
        found = _filters_problem(rule.pid, rule.event_id, cid, conversions, events, pids)
        if found is None:
            found = payout_problem(rule.payout)
        if found is not None:
            return f"{place}.{found[0]}", found[1]
        key = (rule.pid, rule.event_id)
        if key in seen:
            return (f"{place}", f"the same pid and event_id as payouts[{seen[key]}]: "
                                "which one pays would be a matter of order")
        seen[key] = i
    for i, cap in enumerate(caps):
        place = f"caps[{i}]"
        found = _filters_problem(cap.pid, cap.event_id, cid, conversions, events, pids)
        if found is not None:
            return f"{place}.{found[0]}", found[1]
        limit = cap.limit
        if not limit.is_finite() or limit <= 0 or limit > MAX_MONEY:
            return f"{place}.limit", f"must be more than 0 and at most {MAX_MONEY:f}"
        if cap.metric == "conversions" and limit != limit.to_integral_value():
            return f"{place}.limit", "a count of conversions is a whole number"
        if cap.metric != "conversions" and limit != round_money(limit):
            return f"{place}.limit", "at most 6 decimal places"
        try:
            ZoneInfo(cap.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return f"{place}.timezone", f"{cap.timezone!r} is not an IANA time zone name"
    return None


def _filters_problem(pid: str | None, event_id: str | None, cid: str, conversions: set[str],
                     events: set[str], pids: set[str]) -> tuple[str, str] | None:
    if event_id is not None and event_id not in conversions:
        return ("event_id", f"{event_id!r} is not a conversion event of campaign {cid!r}"
                if event_id in events else f"{event_id!r} is not an event of campaign {cid!r}")
    if pid is not None and pid not in pids:
        return "pid", f"{pid!r} is not a source (add it to [[sources]])"
    return None
