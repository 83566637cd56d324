"""Lookups over the configuration: the checks an event or click passes before any actor."""

from __future__ import annotations

from app.config.rates import RateTable
from app.config.schema import ORGANIC, CampaignConfig, Config, EventConfig, SourceConfig
from app.edge import errors
from app.events.caps import CapRules
from app.events.payouts import PayoutRules


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
