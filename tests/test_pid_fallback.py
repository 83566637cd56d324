"""pid_fallback: who an event sent without pid is credited to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from app.config.schema import Config, demo_config
from tests.conftest import (
    CID,
    PID,
    Harness,
    error,
    make_config,
    running_on,
    with_campaign,
)

SOURCE_POSTBACK = "http://127.0.0.1:9/src?pay={payout}&rev={revenue}"


def _config(db_path: Path, fallback: str, *, paused: bool = False) -> Config:
    config = with_campaign(make_config(db_path), CID, pid_fallback=fallback)
    sources = [msgspec.structs.replace(source, postback_url=SOURCE_POSTBACK,
                                       active=not paused)
               if source.pid == PID else source for source in config.sources]
    return msgspec.structs.replace(config, sources=sources)


@pytest.fixture
async def lead_mode(backend: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(backend, _config(db_path, "lead")) as harness:
        yield harness


async def test_a_conversion_without_pid_pays_the_source_of_its_lead(
    lead_mode: Harness
) -> None:
    transaction_id = await lead_mode.click(pid=PID)
    response = await lead_mode.fire(transaction_id, "sale_completed", revenue="45.00")
    assert response.status_code == 200
    assert response.json()["data"]["pid"] == PID
    view = await lead_mode.view(transaction_id)
    [sale] = view["events"]
    assert (sale["pid"], sale["payout"]) == (PID, "22.50")
    [(kind, pid, url)] = await lead_mode.query(
        "SELECT kind, pid, url FROM postbacks WHERE transaction_id = ?", transaction_id)
    assert (kind, pid, url) == ("source", PID, "http://127.0.0.1:9/src?pay=22.50&rev=45.00")


async def test_an_explicit_pid_keeps_its_credit(lead_mode: Harness) -> None:
    transaction_id = await lead_mode.click(pid=PID)
    response = await lead_mode.fire(transaction_id, "sale_completed", revenue="10",
                                    pid="src_fixed")
    assert response.json()["data"]["pid"] == "src_fixed"
    [sale] = (await lead_mode.view(transaction_id))["events"]
    assert (sale["pid"], sale["payout"]) == ("src_fixed", "12.50")


async def test_an_organic_lead_stays_organic(lead_mode: Harness) -> None:
    transaction_id = await lead_mode.click()
    response = await lead_mode.fire(transaction_id, "sale_completed", revenue="10")
    assert response.json()["data"]["pid"] == "organic"
    assert (await lead_mode.view(transaction_id))["events"][0]["payout"] is None


async def test_the_lead_is_found_after_it_left_memory(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    config = _config(db_path, "lead")
    async with running_on(backend, config) as api:
        transaction_id = await api.click(pid=PID)
    async with running_on(backend, config) as api:
        response = await api.fire(transaction_id, "sale_completed", revenue="2")
        assert response.json()["data"]["pid"] == PID


async def test_the_lead_source_made_inactive_answers_source_inactive(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, _config(db_path, "lead")) as api:
        transaction_id = await api.click(pid=PID)
    async with running_on(backend, _config(db_path, "lead", paused=True)) as api:
        response = await api.fire(transaction_id, "sale_completed", revenue="2")
        assert response.json() == error(403, "Source Inactive")
        assert (await api.view(transaction_id))["events"] == []


async def test_the_organic_default_credits_organic(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, _config(db_path, "organic")) as api:
        transaction_id = await api.click(pid=PID)
        response = await api.fire(transaction_id, "sale_completed", revenue="45")
        assert response.json()["data"]["pid"] == "organic"
        [sale] = (await api.view(transaction_id))["events"]
        assert (sale["pid"], sale["payout"]) == ("organic", None)
        assert await api.query("SELECT 1 FROM postbacks") == []


async def test_an_unknown_transaction_is_still_refused(lead_mode: Harness) -> None:
    response = await lead_mode.fire("txn_never_seen", "sale_completed", revenue="1")
    assert response.json() == error(400, "Invalid transaction_id for this campaign")


def test_the_demo_config_credits_the_lead() -> None:
    assert demo_config().campaigns[0].pid_fallback == "lead"
