"""The money metrics follow a conversion's status: approval adds, reversal claws back,
a pending or rejected conversion never moves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config.schema import Config, parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, CID, PID, Harness, running_on
from tests.receiver import Receiver
from tests.test_metrics import scrape, value
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MONEY = ("event_postback_conversions_revenue_total", "event_postback_payout_total",
         "event_postback_reversed_revenue_total", "event_postback_reversed_payout_total")


def manual_config(receiver: Receiver, db: Path) -> Config:
    return with_server_overrides(parse_config(config_text(receiver), origin="metrics test"),
                                 "test", db=str(db))


def config_text(receiver: Receiver, sale_approval: str = "auto") -> str:
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
event_id = "sale_completed"
conversion = true
approval = "{sale_approval}"

[[campaigns.events]]
event_id = "policy_bound"
conversion = true
approval = "manual"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def moved(revenue: float = 0, payout: float = 0, reversed_revenue: float = 0,
          reversed_payout: float = 0) -> dict[str, float]:
    return dict(zip(MONEY, (revenue, payout, reversed_revenue, reversed_payout), strict=True))


async def money_now(api: Harness) -> dict[str, float]:
    await api.services.store.flush()
    return await money_of(api.client)


async def money_of(client: httpx.AsyncClient) -> dict[str, float]:
    """The four money counters for the test's campaign and source; 0 before any sample."""
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    found = dict.fromkeys(MONEY, 0.0)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in found and sample.labels in ({"cid": CID}, {"pid": PID}):
                found[sample.name] = sample.value
    return found


async def pending(api: Harness, revenue: str) -> str:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id, "policy_bound", pid=PID, revenue=revenue)
    assert response.status_code == 200, response.text
    conversion_id: str = response.json()["data"]["conversion_id"]
    shown = await api.client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    assert shown.json()["data"]["status"] == "pending"
    return conversion_id


async def act(api: Harness, conversion_id: str, action: str) -> Any:
    response = await api.client.post(f"/api/conversions/{conversion_id}/{action}", json={},
                                     headers=AUTH)
    return response


async def test_a_pending_conversion_moves_no_money_until_approved_and_then_once(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    async with running_on(backend, manual_config(receiver, db_path)) as api:
        conversion_id = await pending(api, "30")
        assert await money_now(api) == moved()

        assert (await act(api, conversion_id, "approve")).status_code == 200
        assert await money_now(api) == moved(30, 15)
        # Asked again, refused: nothing is counted twice.
        assert (await act(api, conversion_id, "approve")).status_code == 409
        assert await money_now(api) == moved(30, 15)


async def test_rejecting_a_pending_conversion_moves_no_money(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    async with running_on(backend, manual_config(receiver, db_path)) as api:
        single = await pending(api, "30")
        in_bulk = await pending(api, "12.50")
        assert (await act(api, single, "reject")).status_code == 200
        response = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
            "action": "reject", "conversion_ids": [in_bulk, in_bulk, single]})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["changed"] == 1
        assert await money_now(api) == moved()

        # A rejected conversion can be neither approved nor reversed.
        for action in ("approve", "reverse"):
            assert (await act(api, single, action)).status_code == 409
        assert await money_now(api) == moved()
        _, samples = await scrape(api)
        assert value(samples, "event_postback_conversions", status="rejected") == 2


async def test_a_reversal_claws_back_what_its_approval_counted(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    async with running_on(backend, manual_config(receiver, db_path)) as api:
        transaction_id = await api.click(pid=PID)
        fired = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="80")
        assert fired.status_code == 200, fired.text
        approved_at_once = fired.json()["data"]["conversion_id"]
        approved_later = await pending(api, "30")
        assert await money_now(api) == moved(80, 40)
        # A pending conversion cannot be reversed: it was never counted.
        assert (await act(api, approved_later, "reverse")).status_code == 409
        assert await money_now(api) == moved(80, 40)

        assert (await act(api, approved_later, "approve")).status_code == 200
        assert (await act(api, approved_at_once, "reverse")).status_code == 200
        assert (await act(api, approved_later, "reverse")).status_code == 200
        # Approvals stay counted; the reversals are counted beside them (net = the difference).
        assert await money_now(api) == moved(110, 55, 110, 55)
        assert (await act(api, approved_later, "reverse")).status_code == 409
        assert await money_now(api) == moved(110, 55, 110, 55)


async def test_an_event_made_manual_by_a_reload_counts_only_on_approval(
    receiver: Receiver, tmp_path: Path, db: str
) -> None:
    async with serving_on(tmp_path, config_text(receiver), db) as (client, path):
        async def sale(revenue: str) -> str:
            click = await client.post("/api/click", json={"cid": CID, "pid": PID})
            fired = await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale_completed", "pid": PID, "revenue": revenue,
                "transaction_id": click.json()["data"]["transaction_id"]})
            assert fired.status_code == 200, fired.text
            conversion_id: str = fired.json()["data"]["conversion_id"]
            return conversion_id

        await sale("80")
        assert await money_of(client) == moved(80, 40)
        path.write_text(config_text(receiver, sale_approval="manual"))
        assert (await reload(client)).status_code == 200
        rejected, approved = await sale("30"), await sale("10")
        assert await money_of(client) == moved(80, 40)
        for conversion_id, action in ((rejected, "reject"), (approved, "approve")):
            changed = await client.post(f"/api/conversions/{conversion_id}/{action}",
                                        json={}, headers=AUTH)
            assert changed.status_code == 200, changed.text
        assert await money_of(client) == moved(90, 45)
