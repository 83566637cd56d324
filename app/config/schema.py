"""The TOML configuration: its schema, its cross-field rules, and loading it.

Any mistake stops start-up with one line naming the file, the place and the problem.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.config.diagnosis import explain
from app.config.endpoints import endpoint_names_problem
from app.config.money_rules import (
    CapConfig,
    DedupeConfig,
    Payout,
    PayoutRule,
    money_rules_problem,
    payout_problem,
)
from app.config.rates import RateConfig, rates_problem
from app.config.reports import ReportsConfig as ReportsConfig
from app.config.tokens import TokenConfig, tokens_problem
from app.config.urls import known_macros, landing_url_problem, postback_url_problem
from app.postbacks.signing import signing_secrets_problem
from storage.backend import is_postgres_url
from storage.money import MAX_MONEY

Id = Annotated[str, Meta(min_length=1, max_length=255)]
Durability = Literal["commit", "write-behind"]
PostbackTrigger = Literal["conversion", "approved", "rejected", "reversed"]

ORGANIC = "organic"
# The event route /api/event/{cid} could never reach a campaign with this id.
_RESERVED_CIDS = frozenset({"trigger", "global"})
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?")
# Sent in a header or a query string as is, and too long to guess.
_TOKEN = re.compile(r"[\x21-\x7e]{16,255}")


class ConfigError(Exception):
    """A configuration that cannot be served; the message is the whole diagnosis."""


class SourceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pid: Id
    name: str = ""
    active: bool = True
    payout: Payout | None = None
    # GET sent when this source's conversion is approved (at once, unless held for approval).
    postback_url: str | None = None
    # GET sent when such a conversion is reversed after its approval was sent.
    retraction_url: str | None = None
    # Standard Webhooks secrets (whsec_...) that sign both; several while rotating.
    signing_secrets: list[str] | None = None


class PostbackConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A buyer postback of a campaign."""

    url: str
    # None: every conversion event of the campaign.
    events: list[Id] | None = None
    method: Literal["GET", "POST"] = "GET"
    secret: str | None = None
    # Standard Webhooks secrets (whsec_...); each signs every request, so one can be rotated.
    signing_secrets: list[str] | None = None
    # When it is sent: as the conversion fires, and/or as its status changes.
    on: list[PostbackTrigger] = msgspec.field(default_factory=lambda: ["conversion"])
    # The endpoint's name in the API and metrics (default: its host and path).
    name: Id | None = None


class EventConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_id: Id
    conversion: bool = False
    allow_duplicates: bool = False
    # A conversion is approved as it fires ("auto"), or pending until decided ("manual").
    approval: Literal["auto", "manual"] = "auto"
    # The largest revenue this event takes, below [server] max_revenue; None: that one.
    max_revenue: Decimal | None = None
    # A conversion with revenue above this is stored pending ("revenue_above_hold") for an
    # operator to decide, whoever sent it; None: no such hold.
    hold_revenue_above: Decimal | None = None
    # Conversions sooner than this after their lead's click are rejected ("too_fast"),
    # later than this many days after it rejected ("expired").
    min_seconds_after_click: Annotated[float, Meta(ge=0, le=31_536_000)] | None = None
    max_days_after_click: Annotated[float, Meta(gt=0, le=3650)] | None = None


class CampaignConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cid: Id
    name: str = ""
    landing_url: str | None = None
    # Web origins whose pages may call the API for this campaign; "*" is any.
    allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    events: list[EventConfig] = []
    postbacks: list[PostbackConfig] = []
    # False: an invalid optional field is left out and reported, and the event fires.
    strict_fields: bool = False
    # Who an event sent without pid is credited to: organic, or the source of its lead.
    pid_fallback: Literal["organic", "lead"] = "organic"
    # "create": an event for a transaction never seen creates its lead on the spot.
    unknown_transactions: Literal["reject", "create"] = "reject"
    # Tokens a sender proves itself with (Authorization: Bearer, or ?token= on the GET
    # forms); several, so one can be replaced without downtime.
    event_tokens: list[str] = []
    # Networks a request with a token is taken from; empty: any address.
    server_ips: list[str] = []
    # A request without a token: fired, its conversion held, only its non-conversion
    # events fired, or refused (app/events/senders.py).
    anonymous: Literal["accept", "hold", "events_only", "refuse"] = "accept"
    # What each source is paid per offer, before the source's own payout (most specific
    # first), the caps on conversions, and duplicate leads (app/config/money_rules.py).
    payouts: list[PayoutRule] = []
    caps: list[CapConfig] = []
    dedupe: DedupeConfig | None = None


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    db: str = "event-postback.db"
    durability: Durability = "commit"
    flush_ms: Annotated[int, Meta(ge=1, le=60_000)] = 5
    lock_seconds: Annotated[float, Meta(ge=0, le=3600)] = 2.0
    admin_token: str | None = None
    # /metrics without the admin token (for a scraper on a trusted network).
    metrics_public: bool = False
    # How many backups stay in backups/ after each new one (the oldest go); left out: all.
    backup_keep: Annotated[int, Meta(ge=1)] | None = None
    max_actors: Annotated[int, Meta(ge=1)] = 100_000
    max_pending_writes: Annotated[int, Meta(ge=1)] = 10_000
    max_in_flight: Annotated[int, Meta(ge=1)] = 1024
    # A body must arrive within this; slower clients get 408.
    body_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    # Commit mode: a write not committed within this answers 503 "Store unavailable".
    write_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    # How long the answer to a request with an Idempotency-Key is kept for its retries.
    idempotency_hours: Annotated[float, Meta(gt=0, le=8760)] = 24.0
    # The largest amount any money field of an event takes (revenue, cost, ...): a sale
    # of any size would otherwise be paid out as sent. At most 10^12.
    max_revenue: Decimal = Decimal(1_000_000_000)
    # Reports answered at once; more get 503 "Server busy" with Retry-After.
    max_concurrent_reports: Annotated[int, Meta(ge=1, le=64)] = 2
    # Proxies whose X-Forwarded-For names the client; None: uvicorn's FORWARDED_ALLOW_IPS
    # environment variable, else 127.0.0.1 and ::1.
    forwarded_allow_ips: list[str] | None = None
    # The key of the hashes a campaign's dedupe keeps of lead field values (HMAC-SHA256):
    # required once a campaign has dedupe, so a copied database lists no emails.
    dedupe_secret: str | None = None
    catalog: Literal["file", "database"] = "file"  # "database": managed through the API


Seconds = Annotated[float, Meta(gt=0, le=86_400)]


class DeliveryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How postbacks are sent and retried."""

    timeout_seconds: Seconds = 10.0
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    first_retry_seconds: Seconds = 1.0
    max_retry_seconds: Seconds = 3600.0
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 64
    per_host: Annotated[int, Meta(ge=1, le=1000)] = 8
    # An endpoint pauses after this many failed attempts in a row (0: never), once they
    # span at least pause_min_hours; its postbacks wait until an operator resumes it.
    pause_after: Annotated[int, Meta(ge=0, le=1_000_000)] = 10
    pause_min_hours: Annotated[float, Meta(ge=0, le=8760)] = 1.0
    # At most this many postbacks a second to one host, across every process (none: no
    # limit beyond per_host at once).
    per_host_per_second: Annotated[float, Meta(ge=0.01, le=10_000)] | None = None


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    reports: ReportsConfig = msgspec.field(default_factory=ReportsConfig)
    # Extra lead fields (beyond the standard ones) that postback URLs may name as macros.
    lead_fields: list[Id] = []
    sources: list[SourceConfig] = []
    campaigns: list[CampaignConfig] = []
    # Rates into the report currency for amounts sent in another (app/config/rates.py).
    rates: list[RateConfig] = []
    # API tokens with roles (app/config/tokens.py); admin_token stays an admin token.
    tokens: list[TokenConfig] = []


def load_config(path: str | Path) -> Config:
    """Read and check a config file; raises ConfigError with a one-line diagnosis."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_config(data, origin=str(path))


def parse_config(data: bytes | str, *, origin: str) -> Config:
    try:
        config = msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        place, problem = explain(exc, Config)
        raise ConfigError(f"{origin}: {place}: {problem}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{origin}: TOML syntax: {exc}") from None
    found = first_problem(config)
    if found is not None:
        raise ConfigError(f"{origin}: {found[0]}: {found[1]}")
    return config


def with_server_overrides(config: Config, origin: str, **overrides: object) -> Config:
    """The config with ``[server]`` values replaced (None leaves a value as it is)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if not given:
        return config
    try:
        server = msgspec.convert(msgspec.to_builtins(config.server) | given, ServerConfig)
    except msgspec.ValidationError as exc:
        place, problem = explain(exc, ServerConfig)
        raise ConfigError(f"{origin}: server.{place}: {problem}") from None
    found = _server_problem(server)
    if found is not None:
        raise ConfigError(f"{origin}: {found[0]}: {found[1]}")
    return msgspec.structs.replace(config, server=server)


def demo_config() -> Config:
    """The built-in configuration holding the API documentation's examples."""
    text = resources.files("app").joinpath("demo.toml").read_bytes()
    return parse_config(text, origin="built-in demo config")


def _server_problem(server: ServerConfig) -> tuple[str, str] | None:
    if is_postgres_url(server.db) and server.durability == "write-behind":
        return ("server.durability",
                "write-behind is refused with PostgreSQL: the database decides the lock "
                "window and the duplicate rule, so the database must decide before the "
                "answer (use commit)")
    if server.dedupe_secret is not None and len(server.dedupe_secret) < 16:
        return ("server.dedupe_secret", "at least 16 characters (e.g. from: openssl rand "
                                        "-hex 24)")
    for value in server.forwarded_allow_ips or ():
        problem = _network_problem(value)
        if problem:
            return "server.forwarded_allow_ips", problem
    return None


def _network_problem(value: str) -> str | None:
    """Why ``value`` is not an IP address or a network like 203.0.113.0/24, or None."""
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        return f"{value!r} is not an IP address or network ({exc})"
    return None


def _sender_problem(campaign: CampaignConfig) -> tuple[str, str] | None:
    """The first rule the campaign's event_tokens, server_ips or anonymous breaks."""
    for token in campaign.event_tokens:
        if not _TOKEN.fullmatch(token):
            return ("event_tokens", "a token is 16-255 printable ASCII characters without "
                                    "spaces (e.g. from: openssl rand -hex 24)")
    if len(set(campaign.event_tokens)) != len(campaign.event_tokens):
        return "event_tokens", "a token is listed twice"
    for value in campaign.server_ips:
        problem = _network_problem(value)
        if problem:
            return "server_ips", problem
    if not campaign.event_tokens:
        if campaign.server_ips:
            return "server_ips", "needs event_tokens: the list says where a token is taken from"
        if campaign.anonymous != "accept":
            return ("anonymous", f"{campaign.anonymous!r} needs event_tokens: without one "
                                 "every event would be sent without a token")
    return None


def first_problem(config: Config) -> tuple[str, str] | None:
    """The first rule the config breaks that its schema alone cannot express."""
    server = config.server
    found = _server_problem(server)
    if found is not None:
        return found
    if server.admin_token is not None and not server.admin_token.strip():
        return "server.admin_token", "must not be empty (leave it out to disable the read API)"
    if not server.max_revenue.is_finite() or not 0 < server.max_revenue <= MAX_MONEY:
        return "server.max_revenue", f"must be more than 0 and at most {MAX_MONEY:f}"

    delivery = config.delivery
    if delivery.max_retry_seconds < delivery.first_retry_seconds:
        return "delivery.max_retry_seconds", "must not be less than first_retry_seconds"
    if delivery.per_host > delivery.concurrency:
        return "delivery.per_host", "must not be more than concurrency"
    if (found := rates_problem(config.reports.currency, config.rates)) is not None:
        return found

    macros = known_macros(config.lead_fields)
    seen_pids: dict[str, int] = {}
    for i, source in enumerate(config.sources):
        place = f"sources[{i}]"
        if source.pid in seen_pids:
            return (f"{place}.pid",
                    f"duplicate pid {source.pid!r} (also sources[{seen_pids[source.pid]}])")
        seen_pids[source.pid] = i
        if source.pid == ORGANIC and not source.active:
            return f"{place}.active", "the organic source is always active"
        found = None if source.payout is None else payout_problem(source.payout)
        if found is not None:
            return f"{place}.{found[0]}", found[1]
        for key in ("postback_url", "retraction_url"):
            url = getattr(source, key)
            if url is not None and (problem := postback_url_problem(url, macros)):
                return f"{place}.{key}", problem
        if (found := signing_secrets_problem(source.signing_secrets)) is not None:
            return f"{place}.{found[0]}", found[1]

    seen_cids: dict[str, int] = {}
    for i, campaign in enumerate(config.campaigns):
        place = f"campaigns[{i}]"
        if campaign.cid in seen_cids:
            return (f"{place}.cid",
                    f"duplicate cid {campaign.cid!r} (also campaigns[{seen_cids[campaign.cid]}])")
        seen_cids[campaign.cid] = i
        if campaign.cid in _RESERVED_CIDS:
            return f"{place}.cid", f"{campaign.cid!r} is reserved by the API's routes"
        found = _sender_problem(campaign)
        if found is not None:
            return f"{place}.{found[0]}", found[1]
        if campaign.landing_url is not None:
            problem = landing_url_problem(campaign.landing_url)
            if problem:
                return f"{place}.landing_url", problem
        for origin in campaign.allowed_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                return (f"{place}.allowed_origins",
                        f"{origin!r} is not an origin like https://quotes.example.com "
                        "(scheme, host and port only) or \"*\"")
        seen_events: dict[str, int] = {}
        for j, event in enumerate(campaign.events):
            if event.event_id in seen_events:
                return (f"{place}.events[{j}].event_id",
                        f"duplicate event_id {event.event_id!r} in campaign {campaign.cid!r}"
                        f" (also events[{seen_events[event.event_id]}])")
            seen_events[event.event_id] = j
            if event.approval == "manual" and not event.conversion:
                return (f"{place}.events[{j}].approval",
                        "only a conversion event can wait for approval")
            limit = event.max_revenue
            if limit is not None and (not limit.is_finite() or limit <= 0
                                      or limit > server.max_revenue):
                return (f"{place}.events[{j}].max_revenue",
                        f"must be more than 0 and at most [server] max_revenue"
                        f" ({server.max_revenue:f})")
            hold = event.hold_revenue_above
            ceiling = limit if limit is not None else server.max_revenue
            if hold is not None and (not event.conversion or not hold.is_finite()
                                     or hold <= 0 or hold > ceiling):
                return (f"{place}.events[{j}].hold_revenue_above",
                        "only a conversion event holds revenue" if not event.conversion else
                        f"must be more than 0 and at most the event's max_revenue"
                        f" ({ceiling:f})")
            if not event.conversion and (event.min_seconds_after_click is not None
                                         or event.max_days_after_click is not None):
                return (f"{place}.events[{j}].min_seconds_after_click"
                        if event.min_seconds_after_click is not None
                        else f"{place}.events[{j}].max_days_after_click",
                        "only a conversion event has a conversion window")
        found = money_rules_problem(
            cid=campaign.cid, payouts=campaign.payouts, caps=campaign.caps,
            conversions={event.event_id for event in campaign.events if event.conversion},
            events=set(seen_events), pids={ORGANIC, *seen_pids})
        if found is not None:
            return f"{place}.{found[0]}", found[1]
        if campaign.dedupe is not None and server.dedupe_secret is None:
            return (f"{place}.dedupe", "needs [server] dedupe_secret: the key of the hashes "
                                       "kept of lead field values")
        for j, postback in enumerate(campaign.postbacks):
            problem = postback_url_problem(postback.url, macros)
            if problem:
                return f"{place}.postbacks[{j}].url", problem
            for event_id in postback.events or ():
                if event_id not in seen_events:
                    return (f"{place}.postbacks[{j}].events",
                            f"{event_id!r} is not an event of campaign {campaign.cid!r}")
            if postback.secret is not None and not postback.secret.strip():
                return f"{place}.postbacks[{j}].secret", "must not be empty"
            if (found := signing_secrets_problem(postback.signing_secrets)) is not None:
                return f"{place}.postbacks[{j}].{found[0]}", found[1]
    return endpoint_names_problem(config) or tokens_problem(config, {ORGANIC, *seen_pids})
