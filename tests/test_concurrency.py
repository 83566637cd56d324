"""Requests at once: one transaction's work is serialized, different ones run together."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CID, PID, make_config, running


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_100_identical_requests_at_once_fire_exactly_once(
    db_path: Path, durability: str
) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_id = await api.click(pid=PID)
        responses = await asyncio.gather(*(
            api.fire(transaction_id, "sale_completed", pid=PID, revenue="45.00")
            for _ in range(100)
        ))
        statuses = Counter(response.status_code for response in responses)
        assert statuses == {200: 1, 403: 99}
        assert {response.json()["message"] for response in responses
                if response.status_code == 403} == {"Concurrent event in progress"}
        assert await api.query("SELECT count(*) FROM events") == [(1,)]


async def test_100_identical_requests_on_a_cold_transaction_fire_exactly_once(
    db_path: Path,
) -> None:
    config = make_config(db_path)
    async with running(config) as api:
        transaction_id = await api.click()
    # A new process: the transaction is only on disk, so the first message loads it.
    async with running(config) as api:
        responses = await asyncio.gather(*(api.fire(transaction_id) for _ in range(100)))
        assert Counter(r.status_code for r in responses) == {200: 1, 403: 99}


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_200_different_transactions_at_once_all_fire(
    db_path: Path, durability: str
) -> None:
    async with running(make_config(db_path, durability=durability)) as api:
        transaction_ids = await asyncio.gather(*(api.click() for _ in range(200)))
        assert len(set(transaction_ids)) == 200
        responses = await asyncio.gather(*(
            api.fire(transaction_id, "sale_completed", revenue=index)
            for index, transaction_id in enumerate(transaction_ids)
        ))
        assert [response.status_code for response in responses] == [200] * 200
        assert await api.query("SELECT count(*) FROM events") == [(200,)]
        conversion_ids = {response.json()["data"]["conversion_id"] for response in responses}
        assert len(conversion_ids) == 200


async def test_concurrent_requests_share_group_commits(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        transaction_ids = [await api.click() for _ in range(50)]
        before = api.services.store.writer.batches_committed
        responses = await asyncio.gather(*(api.fire(t) for t in transaction_ids))
        assert all(response.status_code == 200 for response in responses)
        # Fifty commit-mode answers, each waiting on its commit, took fewer commits.
        assert api.services.store.writer.batches_committed - before < 50


@pytest.mark.parametrize("durability", ["commit", "write-behind"])
async def test_concurrent_events_on_one_lead_keep_every_field_update(
    db_path: Path, durability: str
) -> None:
    # In write-behind mode the changes to one lead land in one batch and are merged.
    config = make_config(db_path, durability=durability, flush_ms=60_000)
    async with running(config) as api:
        transaction_id = await api.click()
        responses = await asyncio.gather(*(
            api.client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "form_step", "transaction_id": transaction_id,
                f"step_{index}": index, "cost": "1.25", "cost_operation": "add"})
            for index in range(5)
        ))
        # One fires, the rest meet the open window.
        assert sorted(r.status_code for r in responses) == [200, 403, 403, 403, 403]
        for index in range(4):
            api.clock.advance(2)
            await api.client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "form_step", "transaction_id": transaction_id,
                f"later_{index}": index, "cost": "1.25", "cost_operation": "add"})
        view = await api.view(transaction_id)
        assert view["cost"] == "6.25"
        assert {f"later_{index}" for index in range(4)} <= set(view["fields"])
