"""Conversion windows: too soon after the click is too_fast, too long after it expired."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config
from tests.conftest import ADMIN_TOKEN, Harness, running_on
from tests.receiver import Receiver

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CID, PID = "cmp_windows", "src_a"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def window_config(receiver: Receiver, db: Path) -> Any:
    return parse_config(f"""
[server]
admin_token = "{ADMIN_TOKEN}"
db = "{db}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 10 }}
postback_url = "{receiver.url}/source?c={{conversion_id}}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale"
conversion = true
min_seconds_after_click = 30
max_days_after_click = 7

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?c={{conversion_id}}&s={{status}}&r={{reason}}"
on = ["conversion", "rejected"]
""", origin="windows")


async def sale(api: Harness, transaction_id: str, **extra: Any) -> dict[str, Any]:
    fired = await api.client.post("/api/event/trigger", json={
        "cid": CID, "event_id": "sale", "pid": PID, "revenue": "100",
        "transaction_id": transaction_id, **extra})
    assert fired.status_code == 200, fired.text
    data: dict[str, Any] = fired.json()["data"]
    return data


async def stored(api: Harness, conversion_id: str) -> dict[str, Any]:
    found = await api.client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    data: dict[str, Any] = found.json()["data"]
    return data


async def test_a_conversion_inside_the_window_is_approved_outside_it_rejected(
        backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path) -> None:
    async with running_on(backend, window_config(receiver, db_path)) as api:
        fast = await api.click(CID, pid=PID)
        api.clock.advance(29.5)
        too_fast = await sale(api, fast)
        assert (too_fast["status"], too_fast["reason"]) == ("rejected", "too_fast")

        ok = await api.click(CID, pid=PID)
        api.clock.advance(30)
        approved = await sale(api, ok)
        assert (approved["status"], approved["reason"]) == ("approved", None)

        late = await api.click(CID, pid=PID)
        api.clock.advance(7 * 86_400 + 1)
        expired = await sale(api, late)
        assert (expired["status"], expired["reason"]) == ("rejected", "expired")

        for data, status, reason in ((too_fast, "rejected", "too_fast"),
                                     (approved, "approved", None),
                                     (expired, "rejected", "expired")):
            found = await stored(api, data["conversion_id"])
            assert (found["status"], found.get("reason")) == (status, reason)
            assert found["history"][0]["reason"] == reason
        rejected = await api.client.get("/api/conversions?reason=too_fast", headers=AUTH)
        assert [c["conversion_id"] for c in rejected.json()["data"]["conversions"]] == [
            too_fast["conversion_id"]]
        await api.services.dispatcher.drain()
    # The source is paid only for the approved one; the buyer hears of each, with why.
    assert [r.query["c"][0] for r in receiver.of("/source")] == [approved["conversion_id"]]
    assert sorted((r.query["s"][0], r.query.get("r", [""])[0])
                  for r in receiver.of("/buyer")) == [
        ("approved", ""), ("rejected", "expired"), ("rejected", "too_fast")]


async def test_the_conversion_date_sent_is_the_time_compared(
        backend: pytest.FixtureRequest, receiver: Receiver, db_path: Path) -> None:
    async with running_on(backend, window_config(receiver, db_path)) as api:
        # The fake clock starts at 2026-11-28 12:00:00 UTC.
        transaction_id = await api.click(CID, pid=PID)
        api.clock.advance(3600)
        early = await sale(api, transaction_id, conversion_date="2026-11-28 12:00:10")
        assert (early["status"], early["reason"]) == ("rejected", "too_fast")
