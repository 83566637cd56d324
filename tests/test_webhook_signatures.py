"""Standard Webhooks signatures on postbacks, checked with the spec's reference library.

A postback whose target has ``signing_secrets`` carries ``webhook-id`` (the postback's
id, the same on every retry), ``webhook-timestamp`` and ``webhook-signature``: one
``v1,<base64>`` per secret, over ``<id>.<timestamp>.<body>`` (an empty body for a GET).
Every rule holds on SQLite and PostgreSQL, and after a reload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from asgi_lifespan import LifespanManager
from standardwebhooks import webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config.reload import ConfigFile, digest
from app.config.schema import Config, ConfigError, parse_config, with_server_overrides
from app.factory import create_app
from storage.backend import is_postgres_url
from storage.endpoints import endpoint_of
from tests.conftest import ADMIN_TOKEN, CID, PID, FakeClock, Harness, postgres_store, running_on
from tests.receiver import Answer, Received, Receiver
from tests.test_postbacks import convert, postbacks

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


KEY = whsec(bytes(range(32)))
NEXT_KEY = whsec(bytes(range(100, 124)))  # the shortest key allowed: 24 bytes
UNRELATED_KEY = whsec(bytes(range(200, 232)))
LEGACY_SECRET = "shh-its-a-secret"


def config_text(receiver: Receiver, *, buyer: str = "", source: str = "",
                method: str = "POST") -> str:
    """A campaign with one buyer postback and a source postback; ``buyer`` and ``source``
    are TOML lines added to each."""
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[delivery]
first_retry_seconds = 1
max_retry_seconds = 60
max_attempts = 4

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?tid={{transaction_id}}&payout={{payout}}"
{source}

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?tid={{transaction_id}}"
method = "{method}"
{buyer}
"""


def secrets_line(*secrets: str) -> str:
    return "signing_secrets = [" + ", ".join(f'"{secret}"' for secret in secrets) + "]"


def signed_config(receiver: Receiver, db: Path, **lines: str) -> Config:
    return with_server_overrides(parse_config(config_text(receiver, **lines), origin="test"),
                                 "test", db=str(db))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def _reading(clock: FakeClock) -> type[datetime]:
    """The library's ``datetime``, its now() the service's clock: it refuses a timestamp
    more than 5 minutes from now, and the tests' clock is not the wall clock."""

    class ServiceTime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> ServiceTime:
            return cls.fromtimestamp(clock.now().timestamp(), tz)

    return ServiceTime


def verifies(secret: str, request: Received, clock: FakeClock,
             payload: bytes | None = None) -> bool:
    """Whether the Standard Webhooks reference library accepts the request with ``secret``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webhooks, "datetime", _reading(clock))
        try:
            Webhook(secret).verify(request.body if payload is None else payload,
                                   request.headers, json_parse=False)
        except WebhookVerificationError:
            return False
    return True


async def the_buyer_postback(api: Harness) -> dict[str, Any]:
    [buyer] = [p for p in await postbacks(api) if p["kind"] == "buyer"]
    return buyer


async def test_a_signed_post_verifies_with_the_standard_webhooks_library(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    config = signed_config(receiver, db_path, buyer=secrets_line(KEY))
    async with running_on(backend, config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        [request] = receiver.of("/buyer")
        assert request.body and verifies(KEY, request, api.clock)
        assert not verifies(UNRELATED_KEY, request, api.clock)
        assert not verifies(KEY, request, api.clock, payload=request.body + b" ")
        buyer = await the_buyer_postback(api)
        assert request.headers["webhook-id"] == str(buyer["id"])
        assert request.headers["webhook-timestamp"] == str(int(api.clock.now().timestamp()))
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", request.headers["webhook-signature"])


async def test_while_a_secret_is_rotated_either_one_verifies(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    config = signed_config(receiver, db_path, buyer=secrets_line(KEY, NEXT_KEY))
    async with running_on(backend, config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        [request] = receiver.of("/buyer")
        assert verifies(KEY, request, api.clock)
        assert verifies(NEXT_KEY, request, api.clock)
        assert not verifies(UNRELATED_KEY, request, api.clock)
    # One signature per secret, in the order configured.
    first, second = request.headers["webhook-signature"].split(" ")
    assert first.startswith("v1,") and second.startswith("v1,")
    assert verifies(KEY, _only_signature(request, first), api.clock)
    assert verifies(NEXT_KEY, _only_signature(request, second), api.clock)


def _only_signature(request: Received, signature: str) -> Received:
    headers = request.headers | {"webhook-signature": signature}
    return Received(request.method, request.path, request.url, request.query, headers,
                    request.body)


async def test_a_retry_keeps_its_webhook_id_and_is_signed_at_its_own_time(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    receiver.script("/buyer", Answer(500))
    config = signed_config(receiver, db_path, buyer=secrets_line(KEY))
    async with running_on(backend, config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        first_at = int(api.clock.now().timestamp())
        api.clock.advance(5)  # past the first retry's backoff (1 s, +20 % at most)
        await api.services.dispatcher.drain()
        assert (await the_buyer_postback(api))["status"] == "delivered"
        first, second = receiver.of("/buyer")
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert [first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]] == [
            str(first_at), str(first_at + 5)]
        assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
        assert verifies(KEY, first, api.clock) and verifies(KEY, second, api.clock)


async def test_a_get_source_postback_is_signed_over_an_empty_payload(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    config = signed_config(receiver, db_path, source=secrets_line(KEY))
    async with running_on(backend, config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        [request] = receiver.of("/source")
        assert request.method == "GET" and request.body == b""
        assert verifies(KEY, request, api.clock, payload=b"")
        assert not verifies(KEY, request, api.clock, payload=request.url.encode())
    # The buyer's postback has no signing_secrets of its own.
    assert not any(name.startswith("webhook-") for name in receiver.of("/buyer")[0].headers)


async def test_both_schemes_are_sent_together_each_verifiable(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    lines = f'secret = "{LEGACY_SECRET}"\n{secrets_line(KEY)}'
    async with running_on(backend, signed_config(receiver, db_path, buyer=lines,
                                                 method="GET")) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        [request] = receiver.of("/buyer")
        assert verifies(KEY, request, api.clock, payload=b"")
    timestamp = request.headers["x-postback-timestamp"]
    assert timestamp == request.headers["webhook-timestamp"]
    expected = "sha256=" + hmac.new(LEGACY_SECRET.encode(), f"{timestamp}.{request.url}".encode(),
                                    hashlib.sha256).hexdigest()
    assert request.headers["x-postback-signature"] == expected


@asynccontextmanager
async def serving_file(path: Path, db: str) -> AsyncIterator[Harness]:
    """The app started from a config file, so POST /api/admin/reload re-reads it."""
    config_file = ConfigFile(path, {"db": db})
    clock = FakeClock()
    store = postgres_store(db, clock) if is_postgres_url(db) else None
    app = create_app(config_file.read(), clock=clock, store=store, config_file=config_file)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client=client, clock=clock, services=manager._state["services"])


async def test_a_reload_signs_new_postbacks_with_the_new_secrets_and_queued_ones_with_theirs(
    receiver: Receiver, tmp_path: Path, db: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(receiver, buyer=secrets_line(KEY)))
    async with serving_file(path, db) as api:
        receiver.script("/buyer", Answer(500))
        await convert(api)
        await api.services.dispatcher.drain()
        path.write_text(config_text(receiver, buyer=secrets_line(NEXT_KEY)))
        reloaded = await api.client.post("/api/admin/reload", headers=AUTH)
        assert reloaded.status_code == 200, reloaded.text
        await convert(api)
        api.clock.advance(5)
        await api.services.dispatcher.drain()
        first_try, *later = receiver.of("/buyer")
        [retry] = [r for r in later if r.headers["webhook-id"] == first_try.headers["webhook-id"]]
        [new] = [r for r in later if r is not retry]
        assert verifies(KEY, first_try, api.clock) and verifies(KEY, retry, api.clock)
        assert first_try.headers["webhook-id"] == retry.headers["webhook-id"]
        assert verifies(NEXT_KEY, new, api.clock) and not verifies(KEY, new, api.clock)


def _problem(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, origin="f")
    return str(caught.value)


NOT_WHSEC = "is not a whsec_ secret (whsec_ followed by base64 of 24 to 64 bytes)"


@pytest.mark.parametrize("secret", [
    "abc",
    base64.b64encode(bytes(32)).decode(),  # no whsec_ prefix
    "whsec_",
    whsec(bytes(23)),
    whsec(bytes(65)),
    "whsec_" + "!" * 32,
    "whsec_" + base64.b64encode(bytes(32)).decode().replace("A", " ", 1),
])
@pytest.mark.parametrize("where", ["buyer", "source"])
def test_a_signing_secret_must_be_whsec_and_base64_of_24_to_64_bytes(
    receiver: Receiver, secret: str, where: str
) -> None:
    text = config_text(receiver, **{where: secrets_line(KEY, secret)})
    place = ("campaigns[0].postbacks[0]" if where == "buyer" else "sources[0]")
    # By its place, never its value: a reload refusing it logs the diagnosis.
    assert _problem(text) == f"f: {place}.signing_secrets[1]: {NOT_WHSEC}"


@pytest.mark.parametrize("secret", [
    whsec(bytes(range(24))), whsec(bytes(range(64))),
    whsec(bytes(range(32))).rstrip("="),  # the padding is optional, as libraries read it
])
def test_a_whsec_secret_of_24_to_64_bytes_is_accepted(receiver: Receiver, secret: str) -> None:
    config = parse_config(config_text(receiver, buyer=secrets_line(secret),
                                      source=secrets_line(secret)), origin="f")
    assert config.campaigns[0].postbacks[0].signing_secrets == [secret]
    assert config.sources[0].signing_secrets == [secret]


@pytest.mark.parametrize("where", ["buyer", "source"])
def test_at_most_five_signing_secrets_none_twice(receiver: Receiver, where: str) -> None:
    place = ("campaigns[0].postbacks[0]" if where == "buyer" else "sources[0]")
    six = [whsec(bytes([n]) * 32) for n in range(6)]
    parse_config(config_text(receiver, **{where: secrets_line(*six[:5])}), origin="f")
    assert _problem(config_text(receiver, **{where: secrets_line(*six)})) == (
        f"f: {place}.signing_secrets: at most 5 (two are enough to rotate one)")
    assert _problem(config_text(receiver, **{where: secrets_line(KEY, NEXT_KEY, KEY)})) == (
        f"f: {place}.signing_secrets: a secret is listed twice")


def test_the_public_config_digest_leaves_signing_secrets_out(receiver: Receiver) -> None:
    config = parse_config(config_text(receiver, buyer=secrets_line(KEY),
                                      source=secrets_line(KEY)), origin="f")
    rotated = msgspec.structs.replace(
        config,
        sources=[msgspec.structs.replace(config.sources[0], signing_secrets=[NEXT_KEY])],
        campaigns=[msgspec.structs.replace(config.campaigns[0], postbacks=[
            msgspec.structs.replace(config.campaigns[0].postbacks[0],
                                    signing_secrets=[NEXT_KEY])])])
    assert digest(rotated) == digest(config)


async def test_an_endpoint_test_request_is_signed_as_a_delivery(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    config = signed_config(receiver, db_path, buyer=secrets_line(KEY, NEXT_KEY),
                           source=secrets_line(NEXT_KEY))
    async with running_on(backend, config) as api:
        for name in (endpoint_of(f"{receiver.url}/buyer"), endpoint_of(f"{receiver.url}/source")):
            response = await api.client.post(f"/api/endpoints/{quote(name)}/test", headers=AUTH)
            assert response.status_code == 200, response.text
            shown = response.json()["data"]["request"]["headers"]
            assert shown["webhook-id"].startswith("test-")
        [buyer], [source] = receiver.of("/buyer"), receiver.of("/source")
        assert verifies(KEY, buyer, api.clock) and verifies(NEXT_KEY, buyer, api.clock)
        assert verifies(NEXT_KEY, source, api.clock, payload=b"")
        assert not verifies(KEY, source, api.clock, payload=b"")


def readme_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The ``verify`` of the README's "Verifying postbacks", run as printed."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## Verifying postbacks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    found: dict[str, Any] = {}
    exec(code, found)
    verify: Callable[[str, dict[str, str], bytes], bool] = found["verify"]
    return verify


async def test_the_readme_receiver_verifies_a_post_and_a_get_and_refuses_the_rest(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    verify = readme_verify()
    config = signed_config(receiver, db_path, buyer=secrets_line(KEY, NEXT_KEY),
                           source=secrets_line(KEY))
    async with running_on(backend, config) as api:
        await convert(api)
        await api.services.dispatcher.drain()
        [post], [get] = receiver.of("/buyer"), receiver.of("/source")

        def verified(secret: str, request: Received, body: bytes, late: float = 0) -> bool:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(time, "time", lambda: api.clock.now().timestamp() + late)
                return verify(secret, request.headers, body)

        assert verified(KEY, post, post.body) and verified(NEXT_KEY, post, post.body)
        assert verified(KEY, get, b"")
        assert not verified(UNRELATED_KEY, post, post.body)
        assert not verified(KEY, post, post.body + b" ")
        assert verified(KEY, post, post.body, late=300)
        assert not verified(KEY, post, post.body, late=301)
        assert not verified(KEY, post, post.body, late=-301)
