"""POST/GET /api/event/global: the campaign is the one that owns the transaction."""

from __future__ import annotations

from typing import Any

import pytest

from app.config.schema import ConfigError, parse_config
from tests.conftest import CID, OTHER_CID, PID, Harness, error

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores


async def fire_global(api: Harness, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/api/event/global", json=body)
    return response.status_code, response.json()


async def test_an_event_without_cid_fires_on_the_campaign_of_its_transaction(
    api: Harness
) -> None:
    transaction_id = await api.click(pid=PID)
    status, answer = await fire_global(api, event_id="sale_completed",
                                       transaction_id=transaction_id, pid=PID, revenue="45")
    assert status == 200
    assert answer["data"]["cid"] == CID
    assert answer["data"]["conversion_id"].startswith("conv_")
    [sale] = (await api.view(transaction_id))["events"]
    assert (sale["event_id"], sale["payout"]) == ("sale_completed", "22.50")


async def test_another_campaigns_transaction_uses_that_campaign(api: Harness) -> None:
    transaction_id = await api.click(cid=OTHER_CID)
    status, answer = await fire_global(api, event_id="quote_viewed",
                                       transaction_id=transaction_id)
    assert (status, answer["data"]["cid"]) == (200, OTHER_CID)


async def test_a_matching_body_cid_is_fine_and_a_different_one_is_refused(
    api: Harness
) -> None:
    transaction_id = await api.click()
    status, _ = await fire_global(api, cid=CID, event_id="quote_viewed",
                                  transaction_id=transaction_id)
    assert status == 200
    assert await fire_global(api, cid=OTHER_CID, event_id="form_step",
                             transaction_id=transaction_id) == (
        400, error(400, "cid does not match the transaction"))


async def test_an_unknown_transaction_is_invalid(api: Harness) -> None:
    assert await fire_global(api, event_id="quote_viewed", transaction_id="txn_nope") == (
        400, error(400, "Invalid transaction_id"))


async def test_missing_ids_are_named(api: Harness) -> None:
    assert await fire_global(api) == (400, error(
        400, "event_id is required", missingFields=["event_id", "transaction_id"]))


async def test_the_later_checks_still_run(api: Harness) -> None:
    transaction_id = await api.click()
    assert await fire_global(api, event_id="no_such", transaction_id=transaction_id) == (
        400, error(400, "Invalid event_id for this campaign"))
    assert await fire_global(api, event_id="quote_viewed",
                             transaction_id=transaction_id) == (
        200, {"status": 200, "type": "success", "message": "Event triggered successfully",
              "data": {"cid": CID, "pid": "organic", "transaction_id": transaction_id,
                       "conversion_id": "", "conversion": False}})
    status, answer = await fire_global(api, event_id="quote_viewed",
                                       transaction_id=transaction_id)
    assert (status, answer["message"]) == (403, "Concurrent event in progress")


async def test_the_get_form_and_its_pixel(api: Harness) -> None:
    transaction_id = await api.click()
    params = {"event_id": "quote_viewed", "transaction_id": transaction_id}
    response = await api.client.get("/api/event/global", params=params)
    assert (response.status_code, response.json()["data"]["cid"]) == (200, CID)
    unknown = await api.client.get("/api/event/global", params={
        "event_id": "quote_viewed", "transaction_id": "txn_nope", "format": "gif"})
    assert (unknown.status_code, unknown.headers["content-type"]) == (400, "image/gif")


def test_the_cid_global_is_reserved() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config('[[campaigns]]\ncid = "global"\n', origin="t.toml")
    assert str(refused.value) == (
        "t.toml: campaigns[0].cid: 'global' is reserved by the API's routes")


async def test_empty_ids_are_missing_like_absent_ones(api: Harness) -> None:
    # Check 2: present *and not empty*; the global route names them before any lookup.
    assert await fire_global(api, event_id="", transaction_id="") == (400, error(
        400, "event_id is required", missingFields=["event_id", "transaction_id"]))


@pytest.mark.parametrize("transaction_id", [12345, True, ["txn"]])
async def test_a_transaction_id_that_is_no_string_is_invalid_not_a_crash(
    api: Harness, transaction_id: Any
) -> None:
    assert await fire_global(api, event_id="quote_viewed",
                             transaction_id=transaction_id) == (
        400, error(400, "Invalid transaction_id"))


async def test_an_empty_body_cid_is_not_sent_and_the_owner_fires(api: Harness) -> None:
    transaction_id = await api.click(cid=OTHER_CID)
    status, answer = await fire_global(api, cid="", event_id="quote_viewed",
                                       transaction_id=transaction_id)
    assert (status, answer["data"]["cid"]) == (200, OTHER_CID)


async def test_the_get_form_is_never_cached_like_every_get_event_route(api: Harness) -> None:
    transaction_id = await api.click()
    params = {"event_id": "quote_viewed", "transaction_id": transaction_id}
    response = await api.client.get("/api/event/global", params=params)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
