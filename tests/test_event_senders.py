"""Only trusted senders move money: event tokens, source networks, the anonymous policy."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from structlog.testing import capture_logs

from app.config.reload import restart_key
from app.config.schema import ConfigError, parse_config
from app.events.senders import exposure_warnings, sender_verdict, token_of
from app.routes.openapi import build
from app.serve.cli import main
from tests.conftest import (
    ADMIN_TOKEN,
    CID,
    PID,
    TEST_CONFIG,
    Harness,
    error,
    make_config,
    running,
    running_on,
    with_campaign,
)
from tests.served import Served
from tests.test_reload import reload, serving_on

TOKEN = "tok-5f1c2a9e8b7d6c4a3e2f"
NEXT = "tok-rotated-9a8b7c6d5e4f"
SOURCE_POSTBACK = "http://127.0.0.1:9/src?pay={payout}"
INVALID_TOKEN = error(401, "Invalid token", code="invalid_token")
IP_NOT_ALLOWED = error(403, "IP not allowed", code="ip_not_allowed")


@asynccontextmanager
async def serving(backend: pytest.FixtureRequest, db_path: Path,
                   **campaign: Any) -> AsyncIterator[Harness]:
    config = with_campaign(make_config(db_path), CID, **campaign)
    async with running_on(backend, config) as harness:
        yield harness


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}


async def fire(api: Harness, transaction_id: str, event_id: str = "sale_completed",
               headers: dict[str, Any] | None = None, **fields: Any) -> httpx.Response:
    body = {"cid": CID, "event_id": event_id, "transaction_id": transaction_id,
            "pid": PID, "revenue": "40", **fields}
    return await api.client.post("/api/event/trigger", json=body, headers=headers)


async def stored(api: Harness, transaction_id: str) -> tuple[list[Any], list[Any]]:
    events = await api.query("SELECT event_id FROM events WHERE transaction_id = ?",
                             transaction_id)
    postbacks = await api.query("SELECT url FROM postbacks WHERE transaction_id = ?",
                                transaction_id)
    return events, postbacks


@pytest.fixture
async def events_only(backend: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    config = with_campaign(make_config(db_path), CID, event_tokens=[TOKEN, NEXT],
                           anonymous="events_only")
    # Every sale of this source owes a source postback: none may be queued for a refusal.
    sources = [msgspec.structs.replace(source, postback_url=SOURCE_POSTBACK)
               if source.pid == PID else source for source in config.sources]
    config = msgspec.structs.replace(config, sources=sources)
    async with running_on(backend, config) as harness:
        yield harness


async def test_an_anonymous_conversion_is_refused_and_leaves_nothing(
        events_only: Harness) -> None:
    transaction_id = await events_only.click(pid=PID)
    refused = await fire(events_only, transaction_id)
    assert (refused.status_code, refused.json()) == (401, INVALID_TOKEN)
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert await stored(events_only, transaction_id) == ([], [])
    # A non-conversion event needs no token under events_only.
    viewed = await fire(events_only, transaction_id, "quote_viewed")
    assert viewed.status_code == 200, viewed.text


async def test_either_of_two_tokens_is_taken(events_only: Harness) -> None:
    transaction_id = await events_only.click(pid=PID)
    fired = await fire(events_only, transaction_id, headers=bearer(NEXT))
    assert fired.status_code == 200, fired.text
    assert fired.json()["data"]["conversion"] is True
    events, postbacks = await stored(events_only, transaction_id)
    assert (events, postbacks) == ([("sale_completed",)], [("http://127.0.0.1:9/src?pay=20.00",)])


async def test_a_wrong_token_is_refused_whatever_the_policy(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN]) as api:
        transaction_id = await api.click()
        latin = {"Authorization": ("Bearer " + "é" * 20).encode("latin-1")}
        for headers in (bearer(TOKEN + "x"), bearer(TOKEN[:-1]), latin):
            refused = await fire(api, transaction_id, "quote_viewed", headers=headers)
            assert (refused.status_code, refused.json()) == (401, INVALID_TOKEN)
        assert await stored(api, transaction_id) == ([], [])
        # anonymous = "accept" (the default): no token at all still fires.
        assert (await fire(api, transaction_id, "quote_viewed")).status_code == 200


async def test_refuse_turns_away_every_anonymous_event(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN], anonymous="refuse") as api:
        transaction_id = await api.click()
        refused = await fire(api, transaction_id, "quote_viewed")
        assert (refused.status_code, refused.json()) == (401, INVALID_TOKEN)
        pixel = await api.client.get("/api/event/trigger", params={
            "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            "format": "gif"})
        assert (pixel.status_code, pixel.headers["content-type"]) == (401, "image/gif")
        assert await stored(api, transaction_id) == ([], [])
        # The same event with the token in the pixel's query string fires.
        pixel = await api.client.get("/api/event/trigger", params={
            "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            "format": "gif", "token": TOKEN})
        assert pixel.status_code == 200


async def test_a_token_is_taken_only_from_the_listed_networks(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    # The test client's address is 203.0.113.7.
    async with serving(backend, db_path, event_tokens=[TOKEN],
                              server_ips=["198.51.100.0/24", "2001:db8::/32"]) as api:
        transaction_id = await api.click(pid=PID)
        refused = await fire(api, transaction_id, headers=bearer(TOKEN))
        assert (refused.status_code, refused.json()) == (403, IP_NOT_ALLOWED)
        assert await stored(api, transaction_id) == ([], [])
    async with serving(backend, db_path, event_tokens=[TOKEN],
                              server_ips=["203.0.113.0/24"]) as api:
        transaction_id = await api.click(pid=PID)
        assert (await fire(api, transaction_id, headers=bearer(TOKEN))).status_code == 200


async def test_every_event_route_checks_the_sender(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN], anonymous="refuse") as api:
        transaction_id = await api.click()
        fields = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id}
        browser = {"Origin": "https://shop.example.com"}
        for method, url, options in (
            ("POST", f"/api/event/{CID}", {"json": fields}),
            ("POST", "/api/event/global", {"json": fields}),
            ("GET", f"/api/event/{CID}", {"params": fields}),
            ("GET", "/api/event/global", {"params": fields}),
            ("GET", "/api/event/trigger", {"params": fields}),
            # A browser's request takes the normal way, not the server-to-server one.
            ("POST", "/api/event/trigger", {"json": fields, "headers": browser}),
        ):
            answer = await api.client.request(method, url, **options)
            assert (answer.status_code, answer.json()) == (401, INVALID_TOKEN)
        assert await stored(api, transaction_id) == ([], [])
        answer = await api.client.get("/api/event/global", params={**fields, "token": TOKEN})
        assert answer.status_code == 200, answer.text


async def test_a_refused_sender_is_not_remembered_under_its_idempotency_key(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN], anonymous="refuse") as api:
        transaction_id = await api.click(pid=PID)
        key = {"Idempotency-Key": "sale-1"}
        refused = await fire(api, transaction_id, headers={**key, **bearer("wrong-token-123456")})
        assert refused.status_code == 401
        fired = await fire(api, transaction_id, headers={**key, **bearer(TOKEN)})
        assert fired.status_code == 200, fired.text
        # Nor does a request without the token get the stored answer back.
        replay = await fire(api, transaction_id, headers=key)
        assert (replay.status_code, replay.json()) == (401, INVALID_TOKEN)


async def test_hold_keeps_an_anonymous_conversion_pending(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN], anonymous="hold") as api:
        anonymous = await api.click(pid=PID)
        assert (await fire(api, anonymous)).status_code == 200
        assert (await fire(api, anonymous, "quote_viewed")).status_code == 200
        signed = await api.click(pid=PID)
        assert (await fire(api, signed, headers=bearer(TOKEN))).status_code == 200
        held = await api.query("SELECT status, hold_reason FROM events "
                               "WHERE transaction_id = ? AND conversion", anonymous)
        approved = await api.query("SELECT status, hold_reason FROM events "
                                   "WHERE transaction_id = ? AND conversion", signed)
        assert (held, approved) == ([("pending", "anonymous")], [("approved", None)])


async def test_a_token_is_never_logged_stored_or_measured(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with serving(backend, db_path, event_tokens=[TOKEN], anonymous="refuse") as api:
        with capture_logs() as logs:
            transaction_id = await api.click(pid=PID)
            posted = await fire(api, transaction_id, headers=bearer(TOKEN))
            pixel = await api.client.get(f"/api/event/{CID}", params={
                "event_id": "quote_viewed", "transaction_id": transaction_id,
                "token": TOKEN, "format": "gif"})
            assert (posted.status_code, pixel.status_code) == (200, 201)
            assert (await fire(api, transaction_id, headers=bearer(TOKEN[::-1]))).status_code \
                == 401
        view = await api.view(transaction_id)
        assert [event["event_id"] for event in view["events"]] == [
            "sale_completed", "quote_viewed"]
        metrics = await api.client.get("/metrics", headers=bearer(ADMIN_TOKEN))
        rows = await api.query("SELECT * FROM events")
        for seen in (repr(logs), json.dumps(view), metrics.text, repr(rows)):
            assert TOKEN not in seen and TOKEN[::-1] not in seen


async def test_a_reload_adds_and_removes_tokens(backend: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    db = (str(tmp_path / "events.db") if backend.param == "sqlite"
          else backend.getfixturevalue("pg_url"))
    locked = TEST_CONFIG.replace(f'cid = "{CID}"\n', f'cid = "{CID}"\nanonymous = "refuse"\n'
                                 f'event_tokens = ["{TOKEN}"]\n', 1)

    async def send(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> int:
        click = await client.post("/api/click", json={"cid": CID})
        body = {"cid": CID, "event_id": "quote_viewed",
                "transaction_id": click.json()["data"]["transaction_id"]}
        return (await client.post("/api/event/trigger", json=body, headers=headers)).status_code

    async with serving_on(tmp_path, TEST_CONFIG, db) as (client, path):
        assert await send(client) == 200
        path.write_text(locked)
        assert (await reload(client)).status_code == 200
        assert (await send(client), await send(client, bearer(TOKEN))) == (401, 200)
        path.write_text(TEST_CONFIG)
        assert (await reload(client)).status_code == 200
        assert (await send(client), await send(client, bearer(TOKEN))) == (200, 200)


@pytest.mark.parametrize(("campaign", "problem"), [
    ('server_ips = ["203.0.113.0/33"]\nevent_tokens = ["' + TOKEN + '"]',
     "campaigns[0].server_ips: '203.0.113.0/33' is not an IP address or network"),
    ('server_ips = ["203.0.113.5/24"]\nevent_tokens = ["' + TOKEN + '"]',
     "campaigns[0].server_ips: '203.0.113.5/24' is not an IP address or network "
     "(203.0.113.5/24 has host bits set)"),
    ('server_ips = ["203.0.113.0/24"]',
     "campaigns[0].server_ips: needs event_tokens"),
    ('anonymous = "refuse"', "campaigns[0].anonymous: 'refuse' needs event_tokens"),
    ('event_tokens = ["short"]', "campaigns[0].event_tokens: a token is 16-255"),
    ('event_tokens = ["has a space in it, sadly"]', "campaigns[0].event_tokens: a token"),
    (f'event_tokens = ["{TOKEN}", "{TOKEN}"]',
     "campaigns[0].event_tokens: a token is listed twice"),
    ('anonymous = "sometimes"', "campaigns[0].anonymous: Invalid enum value 'sometimes'"),
])
def test_a_bad_sender_setting_is_one_line(campaign: str, problem: str) -> None:
    text = f'[[campaigns]]\ncid = "cmp_a"\n{campaign}\n'
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="my.toml")
    assert str(raised.value).startswith(f"my.toml: {problem}"), str(raised.value)
    assert "\n" not in str(raised.value)


def test_forwarded_allow_ips_is_checked_and_needs_a_restart() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config('[server]\nforwarded_allow_ips = ["10.0.0.5", "proxy.local"]\n',
                     origin="my.toml")
    assert str(raised.value).startswith(
        "my.toml: server.forwarded_allow_ips: 'proxy.local' is not an IP address or network")
    old = parse_config(TEST_CONFIG, origin="old")
    new = parse_config(TEST_CONFIG.replace(
        "[server]\n", '[server]\nforwarded_allow_ips = ["10.0.0.0/8"]\n'), origin="new")
    assert new.server.forwarded_allow_ips == ["10.0.0.0/8"]
    assert restart_key(old, new) == "server.forwarded_allow_ips"


def test_token_of_reads_the_bearer_header_then_the_query() -> None:
    assert token_of(f"Bearer {TOKEN}") == TOKEN
    assert token_of(f"bearer  {TOKEN} ", "other") == TOKEN
    assert token_of(None, TOKEN) == TOKEN
    assert token_of("Basic dXNlcjpwYXNz") is None  # a page behind HTTP basic auth
    assert token_of("Bearer ", "") is None
    assert token_of(None, ["a", "b"]) == ""


def test_a_campaign_without_tokens_reads_every_request_as_anonymous() -> None:
    config = parse_config(TEST_CONFIG, origin="test")
    [campaign] = [c for c in config.campaigns if c.cid == CID]
    verdict = sender_verdict(campaign, campaign.events[1], "any-token-at-all-here", None)
    assert (verdict.refusal, verdict.hold_reason) == (None, None)


OPEN = """
[[campaigns]]
cid = "cmp_open"
events = [{ event_id = "sale", conversion = true }]

[[campaigns]]
cid = "cmp_site"
allowed_origins = ["https://shop.example.com"]
events = [{ event_id = "sale", conversion = true }]

[[campaigns]]
cid = "cmp_views"
events = [{ event_id = "view" }]

[[campaigns]]
cid = "cmp_signed"
event_tokens = ["%s"]
anonymous = "events_only"
events = [{ event_id = "sale", conversion = true }]

[[campaigns]]
cid = "cmp_open_too"
event_tokens = ["%s"]
events = [{ event_id = "sale", conversion = true }]
""" % (TOKEN, TOKEN)


def test_check_config_warns_of_campaigns_open_to_anyone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "open.toml"
    path.write_text(OPEN)
    assert main(["check-config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{path}: ok (")
    assert lines[1:] == ["warning: campaign cmp_open accepts conversions from anyone",
                         "warning: campaign cmp_open_too accepts conversions from anyone"]


async def test_serve_logs_each_campaign_open_to_anyone(db_path: Path) -> None:
    config = parse_config(OPEN.replace("[[campaigns]]", f'[server]\ndb = "{db_path}"\n\n'
                                       "[[campaigns]]", 1), origin="test")
    assert len(exposure_warnings(config)) == 2
    with capture_logs() as logs:
        async with running(config):
            pass
    warned = [(line["log_level"], line["cid"]) for line in logs
              if line["event"] == "campaign_open_to_anyone"]
    assert warned == [("warning", "cmp_open"), ("warning", "cmp_open_too")]


def test_forwarded_for_counts_only_from_the_configured_proxies(tmp_path: Path) -> None:
    config = tmp_path / "proxied.toml"
    config.write_text(TEST_CONFIG.replace(
        "[server]\n", '[server]\nforwarded_allow_ips = ["127.0.0.1"]\n', 1).replace(
        f'cid = "{CID}"\n', f'cid = "{CID}"\nevent_tokens = ["{TOKEN}"]\n'
        'server_ips = ["198.51.100.0/24"]\n', 1))
    # The environment trusts another proxy: the config key is what applies.
    server = Served(tmp_path, "--config", str(config), env={"FORWARDED_ALLOW_IPS": "127.0.0.2"})
    try:
        click = httpx.post(f"{server.url}/api/click", json={"cid": CID}, timeout=10)
        transaction_id = click.json()["data"]["transaction_id"]
        fields = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id}
        forwarded = {**bearer(TOKEN), "X-Forwarded-For": "198.51.100.9"}
        # From 127.0.0.2, a client the config does not trust: its header is ignored.
        elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with elsewhere:
            refused = elsewhere.post(f"{server.url}/api/event/trigger", json=fields,
                                     headers=forwarded, timeout=10)
        assert (refused.status_code, refused.json()) == (403, IP_NOT_ALLOWED)
        fired = httpx.post(f"{server.url}/api/event/trigger", json=fields, headers=forwarded,
                           timeout=10)
        assert fired.status_code == 200, fired.text
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    with sqlite3.connect(tmp_path / "event-postback.db") as db:
        assert db.execute("SELECT ip FROM events").fetchall() == [("198.51.100.9",)]


def test_the_openapi_document_names_the_event_token_and_its_answers() -> None:
    spec = build()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["eventToken"]["scheme"] == "bearer"
    assert (schemes["eventTokenQuery"]["in"], schemes["eventTokenQuery"]["name"]) == (
        "query", "token")
    for path in ("/api/event/trigger", "/api/event/global", "/api/event/{cid}"):
        for method, operation in spec["paths"][path].items():
            assert operation["security"][:2] == [{}, {"eventToken": []}]
            assert ({"eventTokenQuery": []} in operation["security"]) == (method == "get")
            assert {"401", "403"} <= operation["responses"].keys()
    assert "security" not in spec["paths"]["/api/click"]["post"]
    assert "code" in spec["components"]["schemas"]["Error"]["properties"]
