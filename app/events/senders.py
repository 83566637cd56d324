"""Who may fire a campaign's events: its event tokens, the networks a token is taken from,
and what a request without a token gets (the campaign's ``anonymous`` policy).

The seed API asks no token of an event, so a campaign without ``event_tokens`` takes
events from anyone, as before; an operator closes the door per campaign.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.config.schema import CampaignConfig, Config, EventConfig
from app.edge import errors
from app.edge.errors import ApiError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SenderVerdict:
    """Accept (neither set), refuse with ``refusal``, or fire with the conversion held."""

    refusal: Callable[[], ApiError] | None = None
    hold_reason: str | None = None


ACCEPT = SenderVerdict()
_BAD_TOKEN = SenderVerdict(refusal=errors.invalid_token)
_OUTSIDE = SenderVerdict(refusal=errors.ip_not_allowed)
_HELD = SenderVerdict(hold_reason="anonymous")


def token_of(authorization: str | None, query_token: object = None) -> str | None:
    """The event token a request carries, or None for an anonymous request.

    ``Authorization: Bearer <token>`` first; ``query_token`` is the ``token`` query
    parameter of the GET forms. Another scheme (a page behind HTTP basic auth) carries no
    event token. A token of the wrong type is kept as one that matches nothing.
    """
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if query_token is None or query_token == "":
        return None
    return query_token if isinstance(query_token, str) else ""


def sender_verdict(campaign: CampaignConfig, event: EventConfig | None, token: str | None,
                   client_ip: str | None) -> SenderVerdict:
    """What ``campaign`` does with a request carrying ``token`` from ``client_ip``.

    ``event`` is the configured event, or None when the campaign has no such event (its
    own check answers that). A campaign without tokens reads every request as anonymous.
    """
    tokens = campaign.event_tokens
    if token is not None and tokens:
        if not _matches(token, tokens):
            return _BAD_TOKEN
        if campaign.server_ips and not _inside(client_ip, _networks(tuple(campaign.server_ips))):
            return _OUTSIDE
        return ACCEPT
    policy = campaign.anonymous
    if policy == "accept":
        return ACCEPT
    if policy == "refuse":
        return _BAD_TOKEN
    conversion = event is not None and event.conversion
    if not conversion:
        return ACCEPT
    return _BAD_TOKEN if policy == "events_only" else _HELD


def open_to_anyone(config: Config) -> list[str]:
    """The cids of campaigns whose conversions any page or server can fire and have paid."""
    return [campaign.cid for campaign in config.campaigns
            if campaign.anonymous == "accept" and "*" in campaign.allowed_origins
            and any(event.conversion for event in campaign.events)]


def exposure_warnings(config: Config) -> list[str]:
    """One line per campaign open to anyone, as ``check-config`` prints them."""
    return [f"warning: campaign {cid} accepts conversions from anyone"
            for cid in open_to_anyone(config)]


def _matches(token: str, tokens: Sequence[str]) -> bool:
    # Every configured token is compared, so the time taken says nothing of which matched.
    sent = token.encode("utf-8", "replace")
    found = False
    for candidate in tokens:
        found |= hmac.compare_digest(sent, candidate.encode())
    return found


@functools.lru_cache(maxsize=1024)
def _networks(server_ips: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value) for value in server_ips)


def _inside(client_ip: str | None, networks: tuple[Network, ...]) -> bool:
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    # A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
