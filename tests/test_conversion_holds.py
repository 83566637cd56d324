"""Held conversions: stored pending with why, shown wherever an operator looks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.messages import FireEvent
from actors.rules import hold_reason
from app.config.schema import Config, ConfigError, parse_config, with_server_overrides
from storage.postgres.store import PostgresStore
from tests.conftest import ADMIN_TOKEN, CID, PID, Harness, error, running_on
from tests.receiver import Receiver
from tests.schemas import postgres_back_to, sqlite_back_to
from tests.test_metrics import scrape, value
from tests.test_reload import reload, serving_on

pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def config_text(receiver: Receiver, *, sale_hold: str = "500") -> str:
    hold = f"hold_revenue_above = {sale_hold}" if sale_hold else ""
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?conv={{conversion_id}}&st={{status}}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
{hold}

[[campaigns.events]]
event_id = "policy_bound"
conversion = true
approval = "manual"
hold_revenue_above = 500

[[campaigns.postbacks]]
url = "{receiver.url}/buyer-fired?conv={{conversion_id}}&st={{status}}&why={{reason}}"
events = ["sale_completed"]

[[campaigns.postbacks]]
url = "{receiver.url}/buyer-approved?conv={{conversion_id}}&st={{status}}&why={{reason}}"
on = ["approved"]
events = ["sale_completed"]
"""


def hold_config(receiver: Receiver, db: Path) -> Config:
    return with_server_overrides(parse_config(config_text(receiver), origin="holds test"),
                                 "test", db=str(db))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, hold_config(receiver, db_path)) as harness:
        yield harness


async def fire(api: Harness, event_id: str, revenue: str | None = None) -> dict[str, Any]:
    transaction_id = await api.click(pid=PID)
    fields = {} if revenue is None else {"revenue": revenue}
    response = await api.fire(transaction_id, event_id, pid=PID, **fields)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def listed(api: Harness, query: str) -> list[tuple[str, str, str | None]]:
    response = await api.client.get(f"/api/conversions?{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    return [(c["conversion_id"], c["status"], c["reason"])
            for c in response.json()["data"]["conversions"]]


async def test_revenue_above_the_hold_is_stored_pending_and_paid_only_on_approval(
    api: Harness, receiver: Receiver
) -> None:
    answer = await fire(api, "sale_completed", "500.01")
    conversion_id = answer["data"]["conversion_id"]
    assert answer == {
        "status": 200, "type": "success", "message": "Event triggered successfully",
        "data": {"cid": CID, "pid": PID, "transaction_id": answer["data"]["transaction_id"],
                 "conversion_id": conversion_id, "conversion": True,
                 "status": "pending", "reason": "revenue_above_hold"}}
    await api.services.dispatcher.drain()
    # The postback sent as it fires says why it waits; approval's wait for the approval.
    [fired] = receiver.of("/buyer-fired")
    assert fired.query == {"conv": [conversion_id], "st": ["pending"],
                           "why": ["revenue_above_hold"]}
    assert receiver.of("/buyer-approved") == [] and receiver.of("/source") == []

    approved = await api.client.post(f"/api/conversions/{conversion_id}/approve",
                                     json={"reason": "called the buyer"}, headers=AUTH)
    assert approved.status_code == 200, approved.text
    assert approved.json()["data"]["reason"] == "revenue_above_hold"
    await api.services.dispatcher.drain()
    [buyer] = receiver.of("/buyer-approved")
    assert buyer.query == {"conv": [conversion_id], "st": ["approved"],
                           "why": ["called the buyer"]}
    assert receiver.of("/source")[0].query == {"conv": [conversion_id], "st": ["approved"]}


async def test_revenue_at_the_hold_is_approved_as_it_fires(
    api: Harness, receiver: Receiver
) -> None:
    answer = await fire(api, "sale_completed", "500")
    assert (answer["data"]["status"], answer["data"]["reason"]) == ("approved", None)
    await api.services.dispatcher.drain()
    assert receiver.of("/buyer-fired")[0].query["why"] == [""]
    assert len(receiver.of("/buyer-approved")) == len(receiver.of("/source")) == 1


async def test_manual_approval_is_the_reason_unless_the_revenue_is_held_too(
    api: Harness
) -> None:
    manual = (await fire(api, "policy_bound", "20"))["data"]
    assert (manual["status"], manual["reason"]) == ("pending", "manual_approval")
    both = (await fire(api, "policy_bound", "900"))["data"]
    assert (both["status"], both["reason"]) == ("pending", "revenue_above_hold")


async def test_a_plain_event_answers_as_the_api_always_did(api: Harness) -> None:
    answer = await fire(api, "quote_viewed")
    assert answer["data"] == {"cid": CID, "pid": PID,
                              "transaction_id": answer["data"]["transaction_id"],
                              "conversion_id": "", "conversion": False}


async def test_the_read_api_shows_and_filters_by_the_reason(api: Harness) -> None:
    paid = (await fire(api, "sale_completed", "10"))["data"]
    large = (await fire(api, "sale_completed", "800"))["data"]
    manual = (await fire(api, "policy_bound", "10"))["data"]
    assert await listed(api, "") == [
        (manual["conversion_id"], "pending", "manual_approval"),
        (large["conversion_id"], "pending", "revenue_above_hold"),
        (paid["conversion_id"], "approved", None)]
    assert await listed(api, "reason=revenue_above_hold") == [
        (large["conversion_id"], "pending", "revenue_above_hold")]
    assert await listed(api, "reason=manual_approval&status=pending") == [
        (manual["conversion_id"], "pending", "manual_approval")]
    assert await listed(api, "reason=anonymous") == []
    bad = await api.client.get("/api/conversions?reason=suspicious", headers=AUTH)
    assert bad.status_code == 400
    assert bad.json() == error(400, "Invalid reason", invalidFields={
        "reason": "Invalid enum value 'suspicious'"})

    found = (await api.client.get(f"/api/conversions/{large['conversion_id']}",
                                  headers=AUTH)).json()["data"]
    assert found["reason"] == "revenue_above_hold"
    assert found["history"][0]["reason"] == "revenue_above_hold"
    view = await api.view(large["transaction_id"])
    assert [(e["status"], e["reason"]) for e in view["events"]] == [
        ("pending", "revenue_above_hold")]
    view = await api.view(paid["transaction_id"])
    assert [(e["status"], e["reason"]) for e in view["events"]] == [("approved", None)]


async def test_pending_conversions_are_counted_by_reason(api: Harness) -> None:
    await fire(api, "sale_completed", "10")
    await fire(api, "sale_completed", "800")
    await fire(api, "policy_bound", "10")
    await fire(api, "policy_bound", "20")
    _, samples = await scrape(api)
    held = {reason: value(samples, "event_postback_pending_conversions", reason=reason)
            for reason in ("anonymous", "revenue_above_hold", "manual_approval", "other")}
    assert held == {"anonymous": 0, "revenue_above_hold": 1, "manual_approval": 2,
                    "other": 0}
    assert value(samples, "event_postback_conversions", status="pending") == 3
    assert value(samples, "event_postback_conversions", status="approved") == 1


async def test_a_reload_that_adds_the_hold_holds_the_next_conversion(
    receiver: Receiver, tmp_path: Path, db: str
) -> None:
    async with serving_on(tmp_path, config_text(receiver, sale_hold=""), db) as (
            client, path):
        async def sale() -> dict[str, Any]:
            click = await client.post("/api/click", json={"cid": CID, "pid": PID})
            fired = await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale_completed", "pid": PID, "revenue": "900",
                "transaction_id": click.json()["data"]["transaction_id"]})
            assert fired.status_code == 200, fired.text
            data: dict[str, Any] = fired.json()["data"]
            return data

        assert ((await sale())["status"], (await sale())["reason"]) == ("approved", None)
        path.write_text(config_text(receiver, sale_hold="500"))
        assert (await reload(client)).status_code == 200
        held = await sale()
        assert (held["status"], held["reason"]) == ("pending", "revenue_above_hold")


async def test_the_migration_gives_conversions_stored_before_it_their_reason(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    config = hold_config(receiver, db_path)
    async with running_on(backend, config) as api:
        paid = (await fire(api, "sale_completed", "10"))["data"]["conversion_id"]
        waiting = (await fire(api, "policy_bound", "10"))["data"]["conversion_id"]
        decided = (await fire(api, "policy_bound", "20"))["data"]["conversion_id"]
        approved = (await fire(api, "policy_bound", "30"))["data"]["conversion_id"]
        for conversion_id, action in ((decided, "reject"), (approved, "approve")):
            changed = await api.client.post(f"/api/conversions/{conversion_id}/{action}",
                                            json={}, headers=AUTH)
            assert changed.status_code == 200, changed.text
        store = api.services.store
    # The database as the version before hold reasons left it: the same rows.
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.url)
        try:
            await conn.execute(postgres_back_to(4))
        finally:
            await conn.close()
    else:
        with closing(sqlite3.connect(db_path)) as sqlite_conn:
            sqlite_conn.executescript(sqlite_back_to(7))
    async with running_on(backend, config) as again:
        response = await again.client.get("/api/conversions", headers=AUTH)
        assert response.status_code == 200, response.text
        reasons = {c["conversion_id"]: (c["status"], c["reason"])
                   for c in response.json()["data"]["conversions"]}
    # Only manual approval held conversions then: those pending once were held for it.
    assert reasons == {paid: ("approved", None), waiting: ("pending", "manual_approval"),
                       decided: ("rejected", "manual_approval"),
                       approved: ("approved", "manual_approval")}


@pytest.mark.parametrize(("sent", "revenue", "manual", "reason"), [
    (None, "10", False, None),
    (None, "500", False, None),
    (None, "500.000001", False, "revenue_above_hold"),
    (None, "10", True, "manual_approval"),
    (None, "600", True, "revenue_above_hold"),
    ("anonymous", "10", False, "anonymous"),
    ("anonymous", "600", True, "anonymous"),
])
def test_one_reason_is_given_in_a_documented_order(
    sent: str | None, revenue: str, manual: bool, reason: str | None
) -> None:
    event = FireEvent(transaction_id="t", cid=CID, event_id="sale", pid=PID, conversion=True,
                      once=True, revenue=Decimal(revenue), pending=manual,
                      hold_revenue_above=Decimal(500), hold_reason=sent)
    assert hold_reason(event) == reason


def test_a_plain_event_is_never_held() -> None:
    event = FireEvent(transaction_id="t", cid=CID, event_id="view", pid=PID,
                      conversion=False, once=False, hold_reason="anonymous")
    assert hold_reason(event) is None


@pytest.mark.parametrize(("event", "server", "problem"), [
    ("hold_revenue_above = 0", "", "must be more than 0 and at most the event's max_revenue"
                                   " (1000000000)"),
    ("hold_revenue_above = 2000\nmax_revenue = 1000", "",
     "must be more than 0 and at most the event's max_revenue (1000)"),
    ("hold_revenue_above = 2000", "max_revenue = 1000",
     "must be more than 0 and at most the event's max_revenue (1000)"),
])
def test_a_hold_above_what_the_event_takes_is_refused(
    event: str, server: str, problem: str
) -> None:
    text = f"""
[server]
{server}

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
{event}
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="c.toml")
    assert str(raised.value) == (
        f"c.toml: campaigns[0].events[0].hold_revenue_above: {problem}")


def test_only_a_conversion_holds_revenue() -> None:
    text = f"""
[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "quote_viewed"
hold_revenue_above = 10
"""
    with pytest.raises(ConfigError, match="only a conversion event holds revenue"):
        parse_config(text, origin="c.toml")


async def test_an_anonymous_sale_on_a_holding_campaign_is_paid_only_on_approval(
    backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path
) -> None:
    token = "a-server-token-0001"
    text = config_text(receiver, sale_hold="").replace(
        f'cid = "{CID}"\n', f'cid = "{CID}"\nevent_tokens = ["{token}"]\nanonymous = "hold"\n', 1)
    config = with_server_overrides(parse_config(text, origin="holds test"), "test",
                                   db=str(db_path))
    async with running_on(backend, config) as api:
        anonymous = (await fire(api, "sale_completed", "45"))["data"]
        assert (anonymous["status"], anonymous["reason"]) == ("pending", "anonymous")
        signed_id = await api.click(pid=PID)
        signed = await api.client.post(
            "/api/event/trigger", headers={"Authorization": f"Bearer {token}"},
            json={"cid": CID, "event_id": "sale_completed", "transaction_id": signed_id,
                  "pid": PID, "revenue": "45"})
        assert (signed.json()["data"]["status"], signed.json()["data"]["reason"]) == (
            "approved", None)
        await api.services.dispatcher.drain()
        # Only the signed sale is paid: its approval postback and its source's.
        assert [r.query["conv"] for r in receiver.of("/buyer-approved")] == [
            [signed.json()["data"]["conversion_id"]]]
        assert len(receiver.of("/source")) == 1
        approved = await api.client.post(
            f"/api/conversions/{anonymous['conversion_id']}/approve",
            json={"reason": "checked the sender"}, headers=AUTH)
        assert approved.status_code == 200, approved.text
        assert approved.json()["data"]["reason"] == "anonymous"  # why it was held
        await api.services.dispatcher.drain()
        # An approval's postback carries the reason given for the approval.
        [_, paid] = receiver.of("/buyer-approved")
        assert paid.query == {"conv": [anonymous["conversion_id"]], "st": ["approved"],
                              "why": ["checked the sender"]}
        assert len(receiver.of("/source")) == 2
