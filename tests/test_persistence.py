"""What was acknowledged survives a restart, and the rules still hold against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PID, make_config, running


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_duplicate_stays_a_duplicate_across_a_restart(
    db_path: Path, durability: str
) -> None:
    config = make_config(db_path, durability=durability)
    async with running(config) as api:
        transaction_id = await api.click(pid=PID)
        assert (await api.fire(transaction_id, pid=PID)).status_code == 200
        assert (await api.fire(transaction_id, "sale_completed", pid=PID,
                               revenue="45")).status_code == 200
    async with running(config) as api:
        # No window survives a restart, so the answer is the duplicate itself.
        quote = await api.fire(transaction_id, pid=PID)
        sale = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="45")
        assert (quote.status_code, quote.json()["message"]) == (
            400, "Duplicate event for this transaction_id")
        assert sale.status_code == 400
        events = (await api.view(transaction_id))["events"]
        assert [(e["event_id"], e["revenue"], e["payout"]) for e in events] == [
            ("quote_viewed", None, None), ("sale_completed", "45.00", "22.50")]


async def test_lead_state_survives_a_restart(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        transaction_id = await api.click(sub1="first")
        await api.fire(transaction_id, "form_step", cost="10", sub2="second")
    async with running(config) as api:
        # The cost loaded from disk is the base of the next operation.
        assert (await api.fire(transaction_id, "form_step", cost="2.5",
                               cost_operation="add")).status_code == 200
        view = await api.view(transaction_id)
        assert view["cost"] == "12.50"
        assert view["fields"] == {"sub1": "first", "sub2": "second"}
        # Events that allow duplicates still fire after a restart.
        assert [e["event_id"] for e in view["events"]] == ["form_step", "form_step"]


async def test_transaction_is_still_bound_to_its_campaign_after_restart(db_path: Path) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        other = await api.click(cid="cmp_other")
    async with running(config) as api:
        response = await api.fire(other)
        assert response.json()["message"] == "Invalid transaction_id for this campaign"
