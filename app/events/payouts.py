"""Which payout a conversion earns its source: the most specific rule that matches.

A campaign's ``[[campaigns.payouts]]`` entries name a source (``pid``), an event
(``event_id``), both or neither; a conversion is priced by the first of campaign + source
+ event, campaign + source, campaign + event, campaign alone, then the source's own
``payout``, then none.
"""

from __future__ import annotations

from app.config.money_rules import Payout
from app.config.schema import Config, SourceConfig

# What a conversion priced by its source's own payout stores as its payout rule.
SOURCE_RULE = "source"


class PayoutRules:
    """Every campaign's payout rules, looked up in at most four dict reads."""

    def __init__(self, config: Config) -> None:
        self._rules = {(campaign.cid, rule.pid, rule.event_id): (rule.payout, rule.label)
                       for campaign in config.campaigns for rule in campaign.payouts}

    def payout(self, cid: str, source: SourceConfig,
               event_id: str) -> tuple[Payout, str] | tuple[None, None]:
        """The payout that prices a conversion of ``event_id`` from ``source`` in ``cid``,
        and the name of the rule it comes from; (None, None) when none pays."""
        if self._rules:
            for key in ((cid, source.pid, event_id), (cid, source.pid, None),
                        (cid, None, event_id), (cid, None, None)):
                found = self._rules.get(key)
                if found is not None:
                    return found
        if source.payout is not None:
            return source.payout, SOURCE_RULE
        return None, None
