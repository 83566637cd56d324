"""CORS: preflights and answers for pages on other origins, per campaign."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import Harness, error, running

QUOTES = "https://quotes.example.com"
PARTNER = "https://partner.example.net"
EVIL = "https://evil.example.org"

CONFIG = f"""
[[campaigns]]
cid = "cmp_locked"
allowed_origins = ["{QUOTES}"]

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns]]
cid = "cmp_partner"
allowed_origins = ["{PARTNER}"]

[[campaigns.events]]
event_id = "quote_viewed"
"""


@pytest.fixture
async def api(db_path: Path) -> AsyncIterator[Harness]:
    config = with_server_overrides(parse_config(CONFIG, origin="cors"), "test",
                                   db=str(db_path))
    async with running(config) as harness:
        yield harness


def preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize("path", ["/api/click", "/api/event/trigger", "/api/event/cmp_locked"])
async def test_preflight_from_an_allowed_origin(api: Harness, path: str) -> None:
    response = await api.client.options(path, headers=preflight(QUOTES))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == QUOTES
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert int(response.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize("path", ["/api/click", "/api/event/trigger"])
async def test_preflight_from_another_origin_gets_no_cors_headers(
    api: Harness, path: str
) -> None:
    response = await api.client.options(path, headers=preflight(EVIL))
    assert "access-control-allow-origin" not in response.headers


async def test_answers_to_an_allowed_origin_carry_cors_headers(api: Harness) -> None:
    click = await api.client.post("/api/click", json={"cid": "cmp_locked"},
                                  headers={"Origin": QUOTES})
    assert click.status_code == 200
    assert click.headers["access-control-allow-origin"] == QUOTES
    assert "X-Request-ID" in click.headers["access-control-expose-headers"]
    # Errors too, so the page can read why.
    bad = await api.client.post("/api/event/trigger", content=b"nope",
                                headers={"Origin": QUOTES})
    assert bad.status_code == 400
    assert bad.headers["access-control-allow-origin"] == QUOTES


async def test_another_origin_is_refused_and_nothing_is_stored(api: Harness) -> None:
    response = await api.client.post("/api/click", json={"cid": "cmp_locked"},
                                     headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in response.headers
    assert response.json() == error(403, "Origin not allowed for this campaign")
    assert await api.query("SELECT count(*) FROM leads") == [(0,)]


async def test_origin_of_another_campaign_is_refused_for_this_one(api: Harness) -> None:
    transaction_id = await api.click(cid="cmp_locked")
    response = await api.client.post("/api/event/trigger", headers={"Origin": PARTNER}, json={
        "cid": "cmp_locked", "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert response.json() == error(403, "Origin not allowed for this campaign")
    # The partner page may read that answer: its origin is allowed for another campaign.
    assert response.headers["access-control-allow-origin"] == PARTNER
    allowed = await api.client.post("/api/event/trigger", headers={"Origin": QUOTES}, json={
        "cid": "cmp_locked", "event_id": "quote_viewed", "transaction_id": transaction_id})
    assert allowed.status_code == 200


async def test_requests_without_an_origin_are_not_affected(api: Harness) -> None:
    transaction_id = await api.click(cid="cmp_locked")
    response = await api.fire(transaction_id, cid="cmp_locked")
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_default_allows_every_origin(db_path: Path) -> None:
    config = with_server_overrides(parse_config(
        '[[campaigns]]\ncid = "open"\n', origin="cors"), "test", db=str(db_path))
    async with running(config) as api:
        response = await api.client.post("/api/click", json={"cid": "open"},
                                         headers={"Origin": EVIL})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"


def test_allowed_origins_must_be_origins() -> None:
    from app.config.schema import ConfigError

    for bad in ("quotes.example.com", "https://quotes.example.com/", "https://a.example/x"):
        with pytest.raises(ConfigError, match=r"campaigns\[0\]\.allowed_origins"):
            parse_config(f'[[campaigns]]\ncid = "c"\nallowed_origins = ["{bad}"]\n',
                         origin="x")
