"""What a configuration holds, counted the way the service will serve it."""

from __future__ import annotations

from app.config.schema import ORGANIC, Config


def summary(config: Config) -> str:
    """``2 campaigns, 3 sources, 5 events, 2 postbacks``; ``organic`` is always a source."""
    sources = len({source.pid for source in config.sources} | {ORGANIC})
    events = sum(len(campaign.events) for campaign in config.campaigns)
    postbacks = (sum(len(campaign.postbacks) for campaign in config.campaigns)
                 + sum(1 for source in config.sources if source.postback_url))
    return ", ".join(_count(n, noun) for n, noun in (
        (len(config.campaigns), "campaign"), (sources, "source"), (events, "event"),
        (postbacks, "postback")))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
