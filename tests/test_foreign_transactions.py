"""An event for another campaign's transaction is answered as if the id did not exist:
whatever that lead's source, on every route form, pid_fallback and store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from app.edge.envelope import error_body
from tests.conftest import ADMIN_TOKEN
from tests.test_reload import reload, serving_on

THIS = "cmp_this"
ELSEWHERE = "cmp_elsewhere"
ACTIVE = "src_active"
PAUSING = "src_pausing"
NEVER_MINTED = "txn_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FOREIGN = error_body(400, "Invalid transaction_id for this campaign")


def config_text(fallback: str, unknown: str = "reject", *, paused: bool = False) -> str:
    campaigns = "".join(f"""
[[campaigns]]
cid = "{cid}"
pid_fallback = "{fallback}"
unknown_transactions = "{unknown}"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
""" for cid in (THIS, ELSEWHERE))
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "{ACTIVE}"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "{PAUSING}"
active = {str(not paused).lower()}
{campaigns}"""


Send = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


def _post_json(path: str, **headers: str) -> Send:
    async def send(client: httpx.AsyncClient, fields: dict[str, str]) -> httpx.Response:
        return await client.post(path, json=fields, headers=headers)
    return send


def _post_form(path: str) -> Send:
    async def send(client: httpx.AsyncClient, fields: dict[str, str]) -> httpx.Response:
        return await client.post(path, data=fields)
    return send


def _get(path: str, **extra: str) -> Send:
    async def send(client: httpx.AsyncClient, fields: dict[str, str]) -> httpx.Response:
        return await client.get(f"{path}?{urlencode(fields | extra)}")
    return send


FORMS: dict[str, Send] = {
    "trigger json": _post_json("/api/event/trigger"),
    "trigger form": _post_form("/api/event/trigger"),
    "trigger get": _get("/api/event/trigger"),
    "trigger pixel": _get("/api/event/trigger", format="gif"),
    "campaign json": _post_json(f"/api/event/{THIS}"),
    "campaign get": _get(f"/api/event/{THIS}"),
    "campaign pixel": _get(f"/api/event/{THIS}", format="gif"),
}
EVENTS = ({"event_id": "quote_viewed"}, {"event_id": "sale_completed", "revenue": "45"})


def whole(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything a caller sees, but the request id (new on every request)."""
    headers = sorted((name, value) for name, value in response.headers.items()
                     if name != "x-request-id")
    return response.status_code, headers, response.content


async def mint(client: httpx.AsyncClient, pid: str | None) -> str:
    fields = {"cid": ELSEWHERE} | ({} if pid is None else {"pid": pid})
    response = await client.post("/api/click", json=fields)
    assert response.status_code == 200, response.text
    transaction_id: str = response.json()["data"]["transaction_id"]
    return transaction_id


async def answers(client: httpx.AsyncClient, transaction_id: str) -> dict[str, Any]:
    """The answer of every route form and event, for ``transaction_id`` in THIS campaign."""
    found: dict[str, Any] = {}
    for name, send in FORMS.items():
        for event in EVENTS:
            fields = {"cid": THIS, "transaction_id": transaction_id} | event
            found[f"{name} {event['event_id']}"] = whole(await send(client, fields))
    # With an Idempotency-Key the first answer is the same as without one.
    keyed = _post_json("/api/event/trigger", **{"Idempotency-Key": f"k-{transaction_id}"})
    found["trigger json keyed"] = whole(await keyed(client, {
        "cid": THIS, "transaction_id": transaction_id, "event_id": "quote_viewed"}))
    return found


async def assert_unrevealed(client: httpx.AsyncClient, foreign: list[str]) -> None:
    unknown = await answers(client, NEVER_MINTED)
    for name, (status, _, body) in unknown.items():
        assert status == 400, name
        if "pixel" not in name:
            assert body == FOREIGN, name
    for transaction_id in foreign:
        assert await answers(client, transaction_id) == unknown


@pytest.mark.parametrize("fallback", ["lead", "organic"])
async def test_another_campaigns_transaction_answers_as_one_never_minted(
    tmp_path: Path, db: str, fallback: str
) -> None:
    async with serving_on(tmp_path, config_text(fallback), db) as (client, path):
        foreign = [await mint(client, pid) for pid in (ACTIVE, PAUSING, None)]
        await assert_unrevealed(client, foreign)
        # The source of one of those leads is paused: still nothing to tell them apart.
        path.write_text(config_text(fallback, paused=True))
        assert (await reload(client)).status_code == 200
        await assert_unrevealed(client, foreign)
    # Read back from the store by a fresh process, the leads answer the same.
    async with serving_on(tmp_path, config_text(fallback, paused=True), db) as (client, _):
        await assert_unrevealed(client, foreign)
        # Their own campaign still sees them, and the paused source is refused there.
        fired = await client.post("/api/event/trigger", json={
            "cid": ELSEWHERE, "event_id": "quote_viewed", "transaction_id": foreign[0]})
        assert fired.status_code == 200, fired.text
        paused = await client.post("/api/event/trigger", json={
            "cid": ELSEWHERE, "event_id": "quote_viewed", "transaction_id": foreign[1],
            "pid": PAUSING})
        assert paused.status_code == 403


@pytest.mark.parametrize("fallback", ["lead", "organic"])
async def test_a_campaign_that_creates_unknown_ids_still_refuses_another_campaigns(
    tmp_path: Path, db: str, fallback: str
) -> None:
    async with serving_on(tmp_path, config_text(fallback, "create"), db) as (client, path):
        foreign = [await mint(client, pid) for pid in (ACTIVE, PAUSING)]
        path.write_text(config_text(fallback, "create", paused=True))
        assert (await reload(client)).status_code == 200
        for transaction_id in foreign:
            for name, (status, _, body) in (await answers(client, transaction_id)).items():
                assert status == 400, name
                if "pixel" not in name:
                    assert body == FOREIGN, name


@pytest.mark.parametrize("fallback", ["lead", "organic"])
async def test_the_global_route_answers_a_stranger_cid_whatever_the_source(
    tmp_path: Path, db: str, fallback: str
) -> None:
    async with serving_on(tmp_path, config_text(fallback), db) as (client, path):
        active, pausing = await mint(client, ACTIVE), await mint(client, PAUSING)
        path.write_text(config_text(fallback, paused=True))
        assert (await reload(client)).status_code == 200
        for send in (_post_json("/api/event/global"), _get("/api/event/global"),
                     _get("/api/event/global", format="gif")):
            seen = [whole(await send(client, {"cid": THIS, "event_id": "quote_viewed",
                                              "transaction_id": transaction_id}))
                    for transaction_id in (active, pausing)]
            assert seen[0] == seen[1]
            assert seen[0][0] == 400
        json_answer = await client.post("/api/event/global", json={
            "cid": THIS, "event_id": "quote_viewed", "transaction_id": pausing})
        assert json_answer.content == error_body(400, "cid does not match the transaction")
