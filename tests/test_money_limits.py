"""Money no client can overflow: a bound on every amount an event carries, and sums that
stay exact past 64 bits on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import ConfigError, parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, BACKENDS, PID, Harness, error, running, running_on
from tests.test_reload import reload, serving_on
from tests.test_rollups import rollups_match

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
{{server}}

[[sources]]
pid = "{PID}"
payout = {{{{ type = "percent", value = 40 }}}}

[[campaigns]]
cid = "c"
strict_fields = true

[[campaigns.events]]
event_id = "sale"
conversion = true
allow_duplicates = true

[[campaigns.events]]
event_id = "small_sale"
conversion = true
max_revenue = 500

[[campaigns.events]]
event_id = "step"
"""


def config_text(server: str = "") -> str:
    return CONFIG.replace("{server}", server).replace("{{", "{").replace("}}", "}")


@pytest.fixture(params=BACKENDS)
async def largest(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Both stores, with the largest bound the service allows: 10^12 per amount."""
    config = parse_config(config_text("max_revenue = 1000000000000"), origin="test")
    async with running_on(request, with_server_overrides(
            config, "test", db=str(tmp_path / "e.db"))) as harness:
        yield harness


@pytest.fixture
async def bounded(db_path: Path) -> AsyncIterator[Harness]:
    """The default bound: 10^9 per amount."""
    config = parse_config(config_text(), origin="test")
    async with running(with_server_overrides(config, "test", db=str(db_path))) as harness:
        yield harness


async def fire(api: Harness, transaction_id: str, event_id: str, **fields: Any) -> Any:
    return await api.client.post("/api/event/trigger", json={
        "cid": "c", "event_id": event_id, "transaction_id": transaction_id, "pid": PID,
        **fields})


async def test_ten_of_the_largest_sales_in_one_hour_report_exactly(largest: Harness) -> None:
    transaction_id = await largest.click(cid="c", pid=PID)
    for _ in range(10):
        sale = await fire(largest, transaction_id, "sale", revenue="1e12",
                          conversion_date="2026-11-03 10:15:00")
        assert sale.status_code == 200, sale.text
        largest.clock.advance(3)  # past the lock window
    await rollups_match(largest)
    report = await largest.client.get("/api/reports", headers=AUTH, params={
        "from": "2026-11-01", "to": "2026-11-30", "group_by": "event_id"})
    assert report.status_code == 200, report.text
    [row] = [row for row in report.json()["data"]["rows"] if row["event_id"] == "sale"]
    assert (row["conversions"], row["revenue"], row["payout"]) == (
        10, "10000000000000.00", "4000000000000.00")
    # The raw rows, read when a zone cannot be cut out of whole hours, say the same.
    kolkata = await largest.client.get("/api/reports", headers=AUTH, params={
        "from": "2026-11-01", "to": "2026-11-30", "group_by": "event_id",
        "tz": "Asia/Kolkata"})
    assert kolkata.status_code == 200, kolkata.text
    assert kolkata.json()["data"]["totals"]["revenue"] == "10000000000000.00"


@pytest.mark.parametrize(("event_id", "field", "value", "bound"), [
    ("sale", "revenue", "1000000000.01", "1000000000"),
    ("sale", "amount", "1e10", "1000000000"),
    ("small_sale", "revenue", "500.01", "500"),
    ("step", "cost", "1000000001", "1000000000"),
    ("step", "adSpend", "2e9", "1000000000"),
    ("step", "min_price", "1000000000.000001", "1000000000"),
])
async def test_an_amount_past_its_bound_is_refused(
        bounded: Harness, event_id: str, field: str, value: str, bound: str) -> None:
    transaction_id = await bounded.click(cid="c", pid=PID)
    refused = await fire(bounded, transaction_id, event_id, **{field: value})
    assert (refused.status_code, refused.json()) == (400, error(
        400, f"Invalid {field}", invalidFields={field: f"Expected a number <= {bound}"}))
    # Nothing of it was stored.
    assert (await bounded.view(transaction_id))["events"] == []


@pytest.mark.parametrize(("event_id", "fields"), [
    ("sale", {"revenue": "1000000000"}),
    ("small_sale", {"revenue": "500"}),
    ("step", {"cost": "1e9", "adSpend": "1000000000", "min_price": "999999999.99"}),
])
async def test_an_amount_at_its_bound_is_taken(
        bounded: Harness, event_id: str, fields: dict[str, str]) -> None:
    transaction_id = await bounded.click(cid="c", pid=PID)
    answer = await fire(bounded, transaction_id, event_id, **fields)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("server", "event", "problem"), [
    ("max_revenue = 0", "", "server.max_revenue: must be more than 0 and at most"
                            " 1000000000000"),
    ("max_revenue = 1e13", "", "server.max_revenue: must be more than 0 and at most"
                               " 1000000000000"),
    ("max_revenue = 100", "max_revenue = 101", "campaigns[0].events[0].max_revenue: must be"
                                               " more than 0 and at most [server]"
                                               " max_revenue (100)"),
    ("", "max_revenue = -1", "campaigns[0].events[0].max_revenue: must be more than 0 and at"
                             " most [server] max_revenue (1000000000)"),
])
def test_a_bound_that_cannot_hold_is_a_config_error(server: str, event: str,
                                                     problem: str) -> None:
    text = (f"[server]\n{server}\n[[campaigns]]\ncid = \"c\"\n[[campaigns.events]]\n"
            f"event_id = \"sale\"\nconversion = true\n{event}\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="my.toml")
    assert str(raised.value) == f"my.toml: {problem}"


async def test_a_reload_moves_the_bound_at_once(tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, config_text(), db) as (client, path):
        click = await client.post("/api/click", json={"cid": "c", "pid": PID})
        transaction_id = click.json()["data"]["transaction_id"]
        sale = {"cid": "c", "event_id": "sale", "transaction_id": transaction_id,
                "pid": PID, "revenue": "5e9"}
        refused = await client.post("/api/event/trigger", json=sale)
        assert (refused.status_code, refused.json()["message"]) == (400, "Invalid revenue")
        path.write_text(config_text("max_revenue = 1e10"))
        assert (await reload(client)).status_code == 200
        taken = await client.post("/api/event/trigger", json=sale)
        assert taken.status_code == 200, taken.text
        assert taken.json()["data"]["conversion"] is True
