"""Lookups over the configuration: the checks an event or click passes before any actor.

Each configured (campaign, event) pair has its check plan, built with the catalog when
the config is loaded or reloaded: what checks 4-10 need of the config, worked out once
instead of on every request.
"""

from __future__ import annotations

from app.config.money_rules import Payout
from app.config.rates import RateTable
from app.config.schema import ORGANIC, CampaignConfig, Config, EventConfig, SourceConfig
from app.edge import errors
from app.events.caps import Cap, CapRules
from app.events.limits import Bound, bounds
from app.events.payouts import PayoutRules


class Priced:
    """What a conversion of one plan owes by its source: the payout that prices it, the
    name of that rule, and the caps it counts against."""

    __slots__ = ("caps", "payout", "rule", "source")

    def __init__(self, source: SourceConfig, payout: Payout | None, rule: str | None,
                 caps: tuple[Cap, ...]) -> None:
        self.source = source
        self.payout = payout
        self.rule = rule
        self.caps = caps


class EventPlan:
    """One configured event of one campaign, as checks 4-10 read it."""

    __slots__ = ("_by_source", "_catalog", "bounds", "campaign", "create", "event", "pending")

    def __init__(self, catalog: Catalog, campaign: CampaignConfig, event: EventConfig,
                 limits: tuple[Bound, ...]) -> None:
        self._catalog = catalog
        self.campaign = campaign
        self.event = event
        self.bounds = limits
        self.create = campaign.unknown_transactions == "create"
        self.pending = event.conversion and event.approval == "manual"
        # Filled as sources fire, only with sources the config has and keeps active: at
        # most one entry per configured source.
        self._by_source: dict[str, Priced] = {}

    def priced(self, pid: str) -> Priced:
        """Check 6 (the source exists and is active), and what the source is owed."""
        found = self._by_source.get(pid)
        if found is None:
            catalog = self._catalog
            source = catalog.source(pid)
            cid, event_id = self.campaign.cid, self.event.event_id
            payout, rule = (catalog.payouts.payout(cid, source, event_id)
                            if self.event.conversion else (None, None))
            caps = catalog.caps.matching(cid, pid, event_id) if self.event.conversion else ()
            found = self._by_source[pid] = Priced(source, payout, rule, caps)
        return found


class Catalog:
    def __init__(self, config: Config) -> None:
        self._campaigns = {campaign.cid: campaign for campaign in config.campaigns}
        self._events = {
            (campaign.cid, event.event_id): event
            for campaign in config.campaigns
            for event in campaign.events
        }
        self._sources = {ORGANIC: SourceConfig(pid=ORGANIC)}
        self._sources.update((source.pid, source) for source in config.sources)
        self.payouts = PayoutRules(config)
        self.caps = CapRules(config)
        self.rates = RateTable(config.reports.currency, config.rates)
        self._plans = {
            (campaign.cid, event.event_id): EventPlan(self, campaign, event,
                                                      bounds(event, config.server))
            for campaign in config.campaigns
            for event in campaign.events
        }

    def plan(self, cid: str, event_id: str, origin: str | None) -> EventPlan:
        """Checks 4, 4b and 5, in that order: the campaign, the page the request comes
        from, the event; then the plan of that event."""
        plan = self._plans.get((cid, event_id))
        if plan is None:
            self.check_origin(self.campaign(cid), origin)
            raise errors.invalid_event_id()
        self.check_origin(plan.campaign, origin)
        return plan

    def campaign(self, cid: str) -> CampaignConfig:
        campaign = self._campaigns.get(cid)
        if campaign is None:
            raise errors.invalid_cid()
        return campaign

    def find_campaign(self, cid: str) -> CampaignConfig | None:
        return self._campaigns.get(cid)

    def find_event(self, cid: str, event_id: str) -> EventConfig | None:
        return self._events.get((cid, event_id))

    def check_origin(self, campaign: CampaignConfig, origin: str | None) -> None:
        """Refuse a browser on a page the campaign does not allow.

        CORS alone only stops the page reading the answer; a request a browser sends
        without a preflight (a beacon, a form) would still be acted on.
        """
        if not self.origin_allowed(campaign, origin):
            raise errors.origin_not_allowed()

    @staticmethod
    def origin_allowed(campaign: CampaignConfig, origin: str | None) -> bool:
        """Whether a request from ``origin`` (None: not a browser's) may act for it."""
        allowed = campaign.allowed_origins
        return origin is None or "*" in allowed or origin.lower() in allowed

    def event(self, cid: str, event_id: str) -> EventConfig:
        event = self._events.get((cid, event_id))
        if event is None:
            raise errors.invalid_event_id()
        return event

    def source(self, pid: str) -> SourceConfig:
        source = self._sources.get(pid)
        if source is None:
            raise errors.invalid_pid()
        if not source.active:
            raise errors.source_inactive()
        return source
