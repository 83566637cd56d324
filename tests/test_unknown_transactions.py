"""unknown_transactions = "create": ids minted by another tracker create their lead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config.schema import PostbackConfig
from tests.conftest import (
    BACKENDS,
    CID,
    OTHER_CID,
    PID,
    Harness,
    error,
    make_config,
    running,
    running_on,
    with_campaign,
)

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


@pytest.fixture(params=BACKENDS)
async def create(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, with_campaign(make_config(db_path), CID,
                                                 unknown_transactions="create")) as harness:
        yield harness


async def test_an_unknown_id_creates_its_lead_and_fires_in_one_go(create: Harness) -> None:
    response = await create.fire("crm:4711.a-B_9", "sale_completed", revenue="45.00",
                                 pid=PID, sub1="s1", first_name="Ada", cost="3")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["transaction_id"], data["pid"]) == ("crm:4711.a-B_9", PID)
    view = await create.view("crm:4711.a-B_9")
    assert (view["cid"], view["pid"], view["cost"]) == (CID, PID, "3.00")
    assert view["fields"] == {"sub1": "s1", "first_name": "Ada"}
    [sale] = view["events"]
    assert view["created_at"] == sale["fired_at"]
    assert (sale["payout"], sale["conversion_id"]) == ("22.50", data["conversion_id"])
    # The created lead is a lead like any other: its next event finds it.
    create.clock.advance(3)
    assert (await create.fire("crm:4711.a-B_9")).status_code == 200
    [(leads,)] = await create.query("SELECT count(*) FROM leads")
    assert leads == 1


async def test_without_pid_the_created_lead_is_organic(create: Harness) -> None:
    response = await create.fire("ext-1")
    assert response.json()["data"]["pid"] == "organic"
    assert (await create.view("ext-1"))["pid"] == "organic"


async def test_a_refused_event_creates_nothing(create: Harness) -> None:
    response = await create.fire("ext-2", "sale_completed")  # no revenue
    assert response.json() == error(400, "revenue is required for conversion events")
    assert await create.query("SELECT count(*) FROM leads") == [(0,)]


@pytest.mark.parametrize("transaction_id", ["has space", "x" * 129, "caf\u00e9", "a/b", "a?"])
async def test_a_malformed_id_is_refused(create: Harness, transaction_id: str) -> None:
    response = await create.fire(transaction_id)
    assert response.json() == error(400, "Invalid transaction_id")
    assert await create.query("SELECT count(*) FROM leads") == [(0,)]


async def test_the_longest_id_is_accepted(create: Harness) -> None:
    assert (await create.fire("x" * 128)).status_code == 200


async def test_a_transaction_of_another_campaign_is_still_refused(create: Harness) -> None:
    transaction_id = await create.click(cid=OTHER_CID)
    response = await create.fire(transaction_id)
    assert response.json() == error(400, "Invalid transaction_id for this campaign")


async def test_reject_is_the_default(api: Harness) -> None:
    response = await api.fire("crm-4711")
    assert response.json() == error(400, "Invalid transaction_id for this campaign")
    assert await api.query("SELECT count(*) FROM leads") == [(0,)]


async def test_a_created_lead_plans_its_postbacks_from_the_events_own_fields(
    db_path: Path,
) -> None:
    buyer = PostbackConfig(url="http://127.0.0.1:9/p?tid={transaction_id}&s1={sub1}")
    config = with_campaign(make_config(db_path), CID, unknown_transactions="create",
                           postbacks=[buyer])
    async with running(config) as api:
        response = await api.fire("crm-new", "sale_completed", revenue="45", pid=PID,
                                  sub1="first")
        assert response.status_code == 200, response.text
        rows = await api.query("SELECT url FROM postbacks WHERE transaction_id = 'crm-new'")
    assert rows == [("http://127.0.0.1:9/p?tid=crm-new&s1=first",)]


async def test_a_created_lead_stores_the_client_ip_and_user_agent(create: Harness) -> None:
    assert (await create.fire("crm-ua")).status_code == 200
    rows = await create.query("SELECT ip, user_agent FROM leads WHERE transaction_id = ?",
                              "crm-ua")
    assert rows == [("203.0.113.7", "pytest-agent/1.0")]
