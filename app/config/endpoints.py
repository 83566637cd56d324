"""The postback endpoints a config names: buyer postback entries and sources' URLs.

An endpoint is a host and path (``storage.endpoints.endpoint_of`` of the URL template):
entries sharing them share one endpoint's health. Its name, in the API and the metrics,
is the entry's ``name`` or else the key itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from storage.endpoints import endpoint_of

if TYPE_CHECKING:
    from app.config.schema import Config


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    key: str
    kind: Literal["buyer", "source"]
    # The first entry naming it: what a test request is rendered from.
    url: str
    method: Literal["GET", "POST"]
    secret: str | None
    cid: str | None
    pid: str | None
    # Where it is configured, for a diagnosis.
    place: str
    # Standard Webhooks secrets (app.postbacks.signing), for a test request signed as sent.
    signing_secrets: tuple[str, ...] = ()


def _entries(config: Config) -> list[tuple[Endpoint, bool]]:
    """Every configured postback as an endpoint, and whether its name was given."""
    found = []
    for i, campaign in enumerate(config.campaigns):
        for j, postback in enumerate(campaign.postbacks):
            key = endpoint_of(postback.url)
            found.append((Endpoint(
                name=postback.name or key, key=key, kind="buyer", url=postback.url,
                method=postback.method, secret=postback.secret, cid=campaign.cid, pid=None,
                place=f"campaigns[{i}].postbacks[{j}]",
                signing_secrets=tuple(postback.signing_secrets or ())),
                postback.name is not None))
    for i, source in enumerate(config.sources):
        for attribute in ("postback_url", "retraction_url"):
            url = getattr(source, attribute)
            if url is not None:
                key = endpoint_of(url)
                found.append((Endpoint(
                    name=key, key=key, kind="source", url=url, method="GET", secret=None,
                    cid=None, pid=source.pid, place=f"sources[{i}].{attribute}",
                    signing_secrets=tuple(source.signing_secrets or ())), False))
    return found


def endpoints_of(config: Config) -> dict[str, Endpoint]:
    """The configured endpoints by name (a key named by a later entry too counts once)."""
    by_key: dict[str, Endpoint] = {}
    for endpoint, named in _entries(config):
        kept = by_key.get(endpoint.key)
        if kept is None or (named and kept.name == kept.key):
            by_key[endpoint.key] = endpoint
    return {endpoint.name: endpoint for endpoint in by_key.values()}


def endpoint_names_problem(config: Config) -> tuple[str, str] | None:
    """One name per endpoint and one endpoint per name, or the entry that breaks it."""
    names: dict[str, Endpoint] = {}
    for endpoint, named in _entries(config):
        if not named:
            continue
        other = names.get(endpoint.key)
        if other is not None and other.name != endpoint.name:
            return (f"{endpoint.place}.name",
                    f"{endpoint.key!r} is already named {other.name!r} ({other.place})")
        names[endpoint.key] = endpoint
    keys_by_name: dict[str, Endpoint] = {}
    for endpoint in list(names.values()) + [e for e, _ in _entries(config)]:
        other = keys_by_name.get(endpoint.name)
        if other is not None and other.key != endpoint.key:
            return (f"{endpoint.place}.name" if endpoint.name != endpoint.key
                    else f"{other.place}.name",
                    f"{endpoint.name!r} names two endpoints: {other.key!r} and "
                    f"{endpoint.key!r}")
        keys_by_name.setdefault(endpoint.name, endpoint)
    return None
