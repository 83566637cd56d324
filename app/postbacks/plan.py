"""Which postbacks an event owes, from the configuration: the planner actors are given."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from actors.messages import FireEvent
from actors.rules import fire_status
from app.config.schema import Config
from app.postbacks.macros import macro_values, render_body, render_url
from storage.endpoints import endpoint_of
from storage.records import ConversionView, PostbackRow


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["buyer", "source"]
    url: str
    method: Literal["GET", "POST"]
    secret: str | None
    on: frozenset[str]
    # Its endpoint's key (app.config.endpoints): the template's host and path.
    endpoint: str
    # Standard Webhooks secrets, each signing every request (app.postbacks.signing).
    signing_secrets: tuple[str, ...] = ()


# When a status change sends a source its postback: approval pays, reversal claws back.
_SOURCE_KEYS = {"approved": "postback_url", "reversed": "retraction_url"}


class Planner:
    """Which postbacks an event owes when it fires, and a conversion when its status changes.

    A buyer postback says when it is sent (``on``): ``conversion`` as the event fires, or
    as a conversion is ``approved``, ``rejected`` or ``reversed``. An auto-approved
    conversion is approved as it fires. A source gets its ``postback_url`` on approval and
    its ``retraction_url`` on reversal.
    """

    def __init__(self, config: Config) -> None:
        self._max_attempts = config.delivery.max_attempts
        self._buyers: dict[tuple[str, str], list[Target]] = defaultdict(list)
        for campaign in config.campaigns:
            conversions = [event.event_id for event in campaign.events if event.conversion]
            for postback in campaign.postbacks:
                target = Target("buyer", postback.url, postback.method, postback.secret,
                                frozenset(postback.on), endpoint_of(postback.url),
                                tuple(postback.signing_secrets or ()))
                for event_id in postback.events if postback.events is not None else conversions:
                    self._buyers[(campaign.cid, event_id)].append(target)
        self._sources: dict[tuple[str, str], Target] = {
            (source.pid, status): Target("source", url, "GET", None, frozenset({status}),
                                         endpoint_of(url), tuple(source.signing_secrets or ()))
            for source in config.sources
            for status, key in _SOURCE_KEYS.items()
            if (url := getattr(source, key)) is not None
        }

    def _targets(self, cid: str, event_id: str, pid: str,
                 moments: frozenset[str]) -> list[Target]:
        targets = [target for target in self._buyers.get((cid, event_id), ())
                   if target.on & moments]
        targets += [self._sources[(pid, moment)] for moment in sorted(moments)
                    if (pid, moment) in self._sources]
        return targets

    @staticmethod
    def _fire_moments(status: str | None) -> frozenset[str]:
        return _FIRE_MOMENTS.get(status or "", _FIRED)

    def wants(self, cid: str, event_id: str, pid: str, conversion: bool, *,
              pending: bool) -> bool:
        """Whether the event may owe postbacks as it fires. With ``pending`` False it may
        answer yes for a conversion a hold then keeps pending, which owes fewer; a
        conversion the actor rejects as it fires owes those sent on ``rejected``."""
        if not conversion:
            return bool(self._targets(cid, event_id, pid, _FIRED))
        status = "pending" if pending else "approved"
        return bool(self._targets(cid, event_id, pid,
                                  self._fire_moments(status) | _REJECTED_AT_FIRE))

    def __call__(
        self,
        event: FireEvent,
        lead_fields: Mapping[str, Any],
        conversion_id: str,
        fired_at: str,
    ) -> tuple[PostbackRow, ...]:
        """The postbacks an event owes as it fires."""
        status, why = fire_status(event)
        moments = self._fire_moments(status)
        # A conversion's first postbacks carry why it is held; a change's carry its reason.
        values = macro_values(event, lead_fields, conversion_id, fired_at, status=status or "",
                              reason=why or "")
        targets = self._targets(event.cid, event.event_id, event.pid, moments)
        return self._rows(targets, event, conversion_id, values, fired_at)

    def wants_change(self, conversion: ConversionView, status: str) -> bool:
        return bool(self._targets(conversion.cid, conversion.event_id, conversion.pid,
                                  frozenset({status})))

    def for_change(
        self,
        conversion: ConversionView,
        status: str,
        reason: str | None,
        lead_fields: Mapping[str, Any],
        changed_at: str,
    ) -> tuple[PostbackRow, ...]:
        """The postbacks a conversion owes as it moves to ``status``."""
        event = FireEvent(transaction_id=conversion.transaction_id, cid=conversion.cid,
                          event_id=conversion.event_id, pid=conversion.pid, conversion=True,
                          once=True, revenue=conversion.revenue, payout=conversion.payout)
        values = macro_values(event, lead_fields, conversion.conversion_id,
                              conversion.fired_at, status=status, reason=reason or "")
        targets = self._targets(event.cid, event.event_id, event.pid, frozenset({status}))
        return self._rows(targets, event, conversion.conversion_id, values, changed_at)

    def _rows(self, targets: list[Target], event: FireEvent, conversion_id: str,
              values: Mapping[str, str], now: str) -> tuple[PostbackRow, ...]:
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
                # Only groups deliveries per host: any one case groups the same.
                host=urlsplit(url).netloc.lower(),  # pragma: no mutate
                body=render_body(values) if target.method == "POST" else None,
                secret=target.secret,
                status="pending",
                max_attempts=self._max_attempts,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                endpoint=target.endpoint,
                signing_secrets=" ".join(target.signing_secrets) or None,
            ))
        return tuple(rows)


_FIRED = frozenset({"conversion"})
_REJECTED_AT_FIRE = frozenset({"rejected"})
# What a conversion owes as it fires, by the status it fires with: a rejected one owes
# only the postbacks sent on rejection.
_FIRE_MOMENTS = {"approved": frozenset({"conversion", "approved"}), "pending": _FIRED,
                 "rejected": _REJECTED_AT_FIRE}
