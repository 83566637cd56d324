"""Which caps a conversion counts against, and what it adds to each in which period.

A cap is named by a key of its filters, metric, period and zone, so a reload that only
changes its limit or ``over`` keeps its use. Its periods start at local midnights of its
zone: a day cap in America/New_York resets at 05:00 UTC in winter. A conversion counts in
the period of the moment it fires (the server's clock, never a date the sender gives).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec

from app.config.money_rules import CapConfig
from app.config.schema import Config
from storage.backend import EventStore
from storage.money import from_micro, micro
from storage.records import CapCharge, ConversionView


class Cap(msgspec.Struct, frozen=True, kw_only=True):
    """A configured cap, with its key and its limit in the units it is kept in."""

    cid: str
    config: CapConfig
    key: str
    limit: int

    @property
    def over(self) -> str:
        return self.config.over

    def period(self, moment: datetime) -> str:
        """The period ``moment`` (aware) falls in: a local day, a local month, or total."""
        if self.config.period == "total":
            return "total"
        local = moment.astimezone(ZoneInfo(self.config.timezone))
        return local.strftime("%Y-%m-%d" if self.config.period == "day" else "%Y-%m")

    def amount(self, revenue: Decimal | None, payout: Decimal | None) -> int:
        """What one conversion adds: 1, or its revenue or payout in millionths."""
        metric = self.config.metric
        if metric == "conversions":
            return 1
        value = revenue if metric == "revenue" else payout
        return 0 if value is None else micro(value)

    def matches(self, pid: str, event_id: str) -> bool:
        wanted = self.config
        return (wanted.pid is None or wanted.pid == pid) and (
            wanted.event_id is None or wanted.event_id == event_id)


def cap_key(cid: str, cap: CapConfig) -> str:
    return "|".join((cid, cap.pid or "*", cap.event_id or "*", cap.metric, cap.period,
                     cap.timezone))


def _limit(cap: CapConfig) -> int:
    return int(cap.limit) if cap.metric == "conversions" else micro(cap.limit)


class CapRules:
    """Every campaign's caps, by campaign."""

    def __init__(self, config: Config) -> None:
        self.by_campaign: dict[str, tuple[Cap, ...]] = {
            campaign.cid: tuple(Cap(cid=campaign.cid, config=cap, key=cap_key(campaign.cid, cap),
                                    limit=_limit(cap)) for cap in campaign.caps)
            for campaign in config.campaigns if campaign.caps}

    def matching(self, cid: str, pid: str, event_id: str) -> tuple[Cap, ...]:
        caps = self.by_campaign.get(cid)
        if not caps:
            return ()
        return tuple(cap for cap in caps if cap.matches(pid, event_id))

    def charges(self, caps: tuple[Cap, ...], conversion_id: str, moment: datetime,
                revenue: Decimal | None, payout: Decimal | None) -> tuple[CapCharge, ...]:
        """What a conversion fired at ``moment`` adds to each of ``caps`` (nothing is
        charged for an amount of 0)."""
        found = []
        for cap in caps:
            amount = cap.amount(revenue, payout)
            if amount:
                found.append(CapCharge(conversion_id=conversion_id, cap=cap.key,
                                       period=cap.period(moment), amount=amount,
                                       limit=cap.limit))
        return tuple(found)

    def charges_for(self, view: ConversionView) -> tuple[CapCharge, ...]:
        """What a stored conversion adds to the caps it matches now, in the periods it
        fired in (its approval by an operator counts where it happened)."""
        caps = self.matching(view.cid, view.pid, view.event_id)
        moment = datetime.fromisoformat(view.fired_at)
        return self.charges(caps, view.conversion_id, moment, view.revenue, view.payout)

    def all(self) -> list[Cap]:
        return [cap for caps in self.by_campaign.values() for cap in caps]


class CapUse(msgspec.Struct, frozen=True, kw_only=True):
    """A cap and its use in the period now running (GET /api/caps, /metrics)."""

    cid: str
    pid: str | None
    event_id: str | None
    metric: str
    period: str
    timezone: str
    over: str
    # The period now running: a local day, a local month, or "total".
    current: str
    # Whole conversions, or money as exact decimals.
    limit: int | Decimal
    used: int | Decimal
    key: str


async def cap_uses(rules: CapRules, store: EventStore, now: datetime) -> list[CapUse]:
    """Every configured cap with what it has counted in its current period."""
    caps = rules.all()
    wanted = [(cap.key, cap.period(now)) for cap in caps]
    used = await store.cap_usage(wanted)
    uses = []
    for cap, (key, period) in zip(caps, wanted, strict=True):
        count = used.get((key, period), 0)
        money = cap.config.metric != "conversions"
        uses.append(CapUse(
            cid=cap.cid, pid=cap.config.pid, event_id=cap.config.event_id,
            metric=cap.config.metric, period=cap.config.period,
            timezone=cap.config.timezone, over=cap.config.over, current=period,
            limit=from_micro(cap.limit) if money else cap.limit,
            used=from_micro(count) if money else count, key=key))
    return uses


class Owed:
    """The caps one conversion counts against, as an actor asks for them
    (actors.messages.OwedCaps)."""

    __slots__ = ("_caps", "_payout", "_revenue", "_rules")

    def __init__(self, rules: CapRules, caps: tuple[Cap, ...], revenue: Decimal | None,
                 payout: Decimal | None) -> None:
        self._rules, self._caps = rules, caps
        self._revenue, self._payout = revenue, payout

    def charges(self, conversion_id: str, moment: datetime) -> tuple[CapCharge, ...]:
        return self._rules.charges(self._caps, conversion_id, moment, self._revenue,
                                   self._payout)

    def over(self, cap: str) -> str:
        return next(each.over for each in self._caps if each.key == cap)
