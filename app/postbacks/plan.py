"""Which postbacks an event owes, from the configuration: the planner actors are given."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from actors.messages import FireEvent
from app.config import Config
from app.postbacks.macros import macro_values, render_body, render_url
from storage.records import PostbackRow


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["buyer", "source"]
    url: str
    method: Literal["GET", "POST"]
    secret: str | None


class Planner:
    """Buyer postbacks by (campaign, event); source postbacks on the source's conversions."""

    def __init__(self, config: Config) -> None:
        self._max_attempts = config.delivery.max_attempts
        self._buyers: dict[tuple[str, str], list[Target]] = defaultdict(list)
        for campaign in config.campaigns:
            conversions = [event.event_id for event in campaign.events if event.conversion]
            for postback in campaign.postbacks:
                target = Target("buyer", postback.url, postback.method, postback.secret)
                for event_id in postback.events if postback.events is not None else conversions:
                    self._buyers[(campaign.cid, event_id)].append(target)
        self._sources = {
            source.pid: Target("source", source.postback_url, "GET", None)
            for source in config.sources
            if source.postback_url is not None
        }

    def wants(self, cid: str, event_id: str, pid: str, conversion: bool) -> bool:
        return (cid, event_id) in self._buyers or (conversion and pid in self._sources)

    def __call__(
        self,
        event: FireEvent,
        lead_fields: Mapping[str, Any],
        conversion_id: str,
        fired_at: str,
    ) -> tuple[PostbackRow, ...]:
        targets = list(self._buyers.get((event.cid, event.event_id), ()))
        source = self._sources.get(event.pid)
        if event.conversion and source is not None:
            targets.append(source)
        values = macro_values(event, lead_fields, conversion_id, fired_at)
        rows = []
        for target in targets:
            # In the form the HTTP client sends it, so what is signed and logged is exact.
            url = str(httpx.URL(render_url(target.url, values)))
            rows.append(PostbackRow(
                transaction_id=event.transaction_id,
                cid=event.cid,
                pid=event.pid,
                event_id=event.event_id,
                conversion_id=conversion_id or None,
                kind=target.kind,
                method=target.method,
                url=url,
                host=urlsplit(url).netloc.lower(),
                body=render_body(values) if target.method == "POST" else None,
                secret=target.secret,
                status="pending",
                max_attempts=self._max_attempts,
                next_attempt_at=fired_at,
                created_at=fired_at,
                updated_at=fired_at,
            ))
        return tuple(rows)
