"""The documented limits, each checked on both sides with the number the manual gives.

Every number here is written out literally, never taken from the code under test, so a
limit that drifts (255 becoming 256, 10^12 becoming 10^12 - 1, a window of 2 s becoming
lock_seconds of something else) fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CID, Harness, error, make_config, running

STRING_FIELDS = ["sub1", "sub5", "adv3", "utm_source", "utm_placement", "external_clickid",
                 "clid", "notes"]


async def _event(api: Harness, transaction_id: str, **fields: Any) -> dict[str, Any]:
    response = await api.fire(transaction_id, "form_step", **fields)
    answer: dict[str, Any] = response.json()
    assert answer["status"] == response.status_code
    return answer


@pytest.mark.parametrize("field", STRING_FIELDS)
async def test_an_event_string_of_255_characters_is_stored_whole(
    api: Harness, field: str
) -> None:
    transaction_id = await api.click()
    value = "é" + "x" * 254  # characters, not bytes, are counted
    assert len(value) == 255
    assert (await _event(api, transaction_id, **{field: value}))["status"] == 200
    [fired] = (await api.view(transaction_id))["events"]
    assert fired["fields"][field] == value


@pytest.mark.parametrize("field", STRING_FIELDS)
async def test_an_event_string_of_256_characters_is_refused(api: Harness, field: str) -> None:
    transaction_id = await api.click()
    answer = await _event(api, transaction_id, **{field: "x" * 256})
    assert answer["status"] == 400
    assert answer["message"] == f"Invalid {field}"
    assert list(answer["invalidFields"]) == [field]
    assert (await api.view(transaction_id))["events"] == []


@pytest.mark.parametrize("field", STRING_FIELDS)
async def test_a_click_string_of_255_is_kept_and_256_refused(api: Harness, field: str) -> None:
    transaction_id = await api.click(**{field: "y" * 255})
    assert (await api.view(transaction_id))["fields"][field] == "y" * 255
    response = await api.client.post("/api/click", json={"cid": CID, field: "y" * 256})
    assert response.status_code == 400
    assert response.json()["message"] == f"Invalid {field}"


async def test_an_extra_number_of_64_characters_is_kept_and_65_refused(api: Harness) -> None:
    transaction_id = await api.click()
    sixty_four = "1" * 64
    body = '{"cid": "%s", "event_id": "form_step", "transaction_id": "%s", "n": %s}'
    ok = await api.client.post("/api/event/trigger",
                               content=body % (CID, transaction_id, sixty_four))
    assert ok.status_code == 200, ok.text
    [fired] = (await api.view(transaction_id))["events"]
    assert str(fired["fields"]["n"]) == sixty_four
    api.clock.advance(3)
    refused = await api.client.post("/api/event/trigger",
                                    content=body % (CID, transaction_id, sixty_four + "1"))
    assert refused.status_code == 400
    assert refused.json()["message"] == "Invalid n"


@pytest.mark.parametrize("field", ["revenue", "amount", "cost", "adSpend", "min_price"])
async def test_money_of_exactly_ten_to_the_twelve_is_accepted(api: Harness, field: str) -> None:
    transaction_id = await api.click()
    # amount is the revenue when revenue is absent.
    sent = ({} if field == "amount" else {"revenue": "1"}) | {field: "1000000000000"}
    response = await api.fire(transaction_id, "sale_completed", **sent)
    assert response.status_code == 200, response.text
    api.clock.advance(3)
    over = await api.fire(transaction_id, "form_step", **{field: "1000000000000.000001"})
    assert over.status_code == 400
    assert over.json()["message"] == f"Invalid {field}"
    view = await api.view(transaction_id)
    [sale] = view["events"]
    if field in ("revenue", "amount"):
        assert (sale["revenue"], sale["payout"]) == ("1000000000000.00", None)
    elif field == "cost":
        assert view["cost"] == "1000000000000.00"
    else:
        assert sale["fields"][field] == "1000000000000.00"


async def test_a_payout_of_half_of_ten_to_the_twelve_is_exact(api: Harness) -> None:
    transaction_id = await api.click(pid="src_abc123")
    response = await api.fire(transaction_id, "sale_completed", pid="src_abc123",
                              revenue="1000000000000")
    assert response.status_code == 200
    [sale] = (await api.view(transaction_id))["events"]
    assert (sale["revenue"], sale["payout"]) == ("1000000000000.00", "500000000000.00")


async def test_a_configured_lock_seconds_is_the_window(db_path: Path) -> None:
    async with running(make_config(db_path, lock_seconds=0.75)) as api:
        transaction_id = await api.click()
        assert (await api.fire(transaction_id, "form_step")).status_code == 200
        api.clock.advance(0.74)
        locked = await api.fire(transaction_id, "form_step")
        assert locked.json() == error(403, "Concurrent event in progress")
        api.clock.advance(0.01)  # 0.75 s after it opened: closed
        assert (await api.fire(transaction_id, "form_step")).status_code == 200
        api.clock.advance(0.75)
        assert (await api.fire(transaction_id, "form_step")).status_code == 200
        assert len((await api.view(transaction_id))["events"]) == 3


async def test_the_default_window_is_two_seconds(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id, "form_step")).status_code == 200
    api.clock.advance(1.99)
    assert (await api.fire(transaction_id, "form_step")).status_code == 403
    api.clock.advance(0.01)
    assert (await api.fire(transaction_id, "form_step")).status_code == 200


async def test_an_actor_is_evictable_exactly_when_its_window_closes(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=1)) as api:
        first = await api.click()
        assert (await api.fire(first)).status_code == 200
        api.clock.advance(2)  # the window is closed from this instant
        await api.click()
        assert first not in api.services.registry
        assert api.services.registry.evictions == 1


async def test_evictions_are_counted_across_rounds(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=2)) as api:
        for _ in range(6):
            await api.click()
        assert api.services.registry.evictions == 4
        assert len(api.services.registry) == 2
