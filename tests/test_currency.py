"""Events sent in another currency: converted into the report currency as they arrive, at
the rate in force on the conversion's day, with what was sent kept beside the result."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.config.money_rules import CapConfig
from app.config.schema import Config, parse_config, with_server_overrides
from tests.conftest import ADMIN_TOKEN, CID, PID, TEST_CONFIG, Harness, running_on, with_campaign
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The test clock's day is 2026-11-28: the second EUR rate is in force, since that day.
RATES = """
[reports]
currency = "USD"

[[rates]]
currency = "EUR"
rate = "1.10"
from = 2026-11-01

[[rates]]
currency = "EUR"
rate = 1.0825
from = 2026-11-28

[[rates]]
currency = "GBP"
rate = "1.25"
from = 2026-11-28
"""


def currency_config(db_path: Path, rates: str = RATES, *, strict: bool = False,
                    **server: Any) -> Config:
    """The test config with the rates above; its campaign drops invalid fields unless
    ``strict``."""
    config = parse_config(TEST_CONFIG + rates, origin="test")
    config = with_server_overrides(config, "test", db=str(db_path), **server)
    return with_campaign(config, CID, strict_fields=strict)


async def sale(api: Harness, revenue: str, **fields: Any) -> dict[str, Any]:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue=revenue,
                              **fields)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def conversions(api: Harness) -> dict[str, dict[str, Any]]:
    response = await api.client.get("/api/conversions", headers=AUTH)
    assert response.status_code == 200, response.text
    return {c["conversion_id"]: c for c in response.json()["data"]["conversions"]}


def money(view: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(view.get(name) for name in names)


SHOWN = ("revenue", "payout", "original_revenue", "currency", "rate")


async def test_a_sale_in_euros_is_paid_on_its_converted_revenue_at_its_days_rate(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        dated = await sale(api, "100", currency="EUR", conversion_date="2026-11-15")
        today = await sale(api, "100", currency="EUR")
        # 33.333333 * 1.0825 = 36.0833329725, rounded half-even to six places.
        exact = await sale(api, "33.333333", currency="EUR")
        pounds = await sale(api, "10", currency="GBP")
        found = await conversions(api)
        assert money(found[dated["conversion_id"]], *SHOWN) == (
            "110.00", "55.00", "100.00", "EUR", "1.10")
        assert money(found[today["conversion_id"]], *SHOWN) == (
            "108.25", "54.125", "100.00", "EUR", "1.0825")
        assert money(found[exact["conversion_id"]], "revenue", "original_revenue") == (
            "36.083333", "33.333333")
        assert money(found[pounds["conversion_id"]], *SHOWN) == (
            "12.50", "6.25", "10.00", "GBP", "1.25")
        [event] = (await api.view(dated["transaction_id"]))["events"]
        assert money(event, *SHOWN) == ("110.00", "55.00", "100.00", "EUR", "1.10")
        # The event keeps every field as it was sent.
        assert event["fields"]["revenue"] == "100.00"
        assert event["fields"]["currency"] == "EUR"
        rows = await api.query("SELECT revenue, revenue_micro, payout_micro, original_revenue,"
                               " currency, rate FROM events WHERE conversion_id = ?",
                               today["conversion_id"])
        assert rows == [("108.25", 108_250_000, 54_125_000, "100.00", "EUR", "1.0825")]


async def test_a_sale_in_the_report_currency_keeps_no_original(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        named = await sale(api, "100", currency="USD")
        unnamed = await sale(api, "100")
        found = await conversions(api)
        for data in (named, unnamed):
            view = found[data["conversion_id"]]
            assert (view["revenue"], view["payout"]) == ("100.00", "50.00")
            assert not {"original_revenue", "currency", "rate"} & view.keys()
        [event] = (await api.view(named["transaction_id"]))["events"]
        assert money(event, "original_revenue", "currency", "rate") == (None, None, None)


async def test_a_lead_cost_in_pounds_is_converted_too(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        transaction_id = await api.click(pid=PID)
        fired = await api.fire(transaction_id, cost="10", currency="GBP", pid=PID)
        assert fired.status_code == 200, fired.text
        view = await api.view(transaction_id)
        assert view["cost"] == "12.50"
        assert money(view["events"][0], "original_revenue", "currency", "rate") == (
            None, "GBP", "1.25")


def _invalid_currency(why: str) -> dict[str, Any]:
    return {"status": 400, "type": "error", "message": "Invalid currency",
            "invalidFields": {"currency": why}}


UNKNOWN = "Expected USD or a currency with a rate in the config's [[rates]]"
FORM = "Expected a currency code of three capital letters (ISO 4217), such as EUR"


@pytest.mark.parametrize(("fields", "why"), [
    ({"currency": "JPY"}, UNKNOWN),
    ({"currency": "eur"}, FORM),
    ({"currency": "EUR", "conversion_date": "2026-10-31"},
     "Expected a currency with a rate in force on 2026-10-31 (EUR: from 2026-11-01)"),
    # Still the 31st in UTC: the day a rate is chosen by is UTC's.
    ({"currency": "EUR", "conversion_date": "2026-10-31 18:59:59", "conversion_timezone": "EST"},
     "Expected a currency with a rate in force on 2026-10-31 (EUR: from 2026-11-01)"),
])
async def test_a_sale_in_a_currency_it_cannot_convert_is_refused_even_where_fields_are_dropped(
        backend: pytest.FixtureRequest, db_path: Path, fields: dict[str, Any], why: str) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        transaction_id = await api.click(pid=PID)
        refused = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="100",
                                 **fields)
        assert refused.status_code == 400
        assert refused.json() == _invalid_currency(why)
        # Anything else carrying an amount to convert is refused likewise.
        cost = await api.fire(transaction_id, "form_step", cost="5", **fields)
        assert cost.json() == _invalid_currency(why)
        assert await api.query("SELECT count(*) FROM events") == [(0,)]


async def test_a_currency_on_the_next_utc_day_converts(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        data = await sale(api, "100", currency="EUR", conversion_date="2026-10-31 19:00:00",
                          conversion_timezone="EST")
        assert (await conversions(api))[data["conversion_id"]]["rate"] == "1.10"


async def test_a_bad_currency_on_an_event_without_amounts_is_dropped_as_any_field(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        transaction_id = await api.click(pid=PID)
        fired = await api.fire(transaction_id, currency="JPY", utm_source="mail")
        assert fired.status_code == 200, fired.text
        assert fired.json()["invalidFields"] == {"currency": UNKNOWN}
        [event] = (await api.view(transaction_id))["events"]
        assert event["fields"] == {"utm_source": "mail"}
        assert event["currency"] is None


async def test_a_strict_campaign_refuses_a_bad_currency_on_any_event(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path, strict=True)) as api:
        transaction_id = await api.click(pid=PID)
        refused = await api.fire(transaction_id, currency="JPY")
        assert refused.json() == _invalid_currency(UNKNOWN)


async def test_the_revenue_bound_applies_to_the_converted_amount(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path, max_revenue=100)) as api:
        assert (await sale(api, "92.37", currency="EUR"))["status"] == "approved"
        transaction_id = await api.click(pid=PID)
        refused = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="92.38",
                                 currency="EUR")  # 100.00135 once converted
        assert refused.json()["invalidFields"] == {"revenue": "Expected a number <= 100"}


async def test_caps_count_the_converted_revenue(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    config = currency_config(db_path)
    cap = CapConfig(metric="revenue", period="total", limit=Decimal(200))
    config = with_campaign(config, CID, caps=[cap])
    async with running_on(backend, config) as api:
        await sale(api, "100", currency="EUR")
        transaction_id = await api.click(pid=PID)
        # 100 + 100 would fit; 108.25 + 108.25 does not.
        refused = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="100",
                                 currency="EUR")
        assert (refused.status_code, refused.json()["message"]) == (400, "Cap reached")


async def test_reports_sum_the_converted_amounts(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, currency_config(db_path)) as api:
        await sale(api, "100", currency="EUR")
        await sale(api, "10", currency="GBP")
        await sale(api, "1.75")
        transaction_id = await api.click(pid=PID)
        await api.fire(transaction_id, cost="10", currency="GBP", pid=PID)
        response = await api.client.get(
            "/api/reports", params={"from": "2026-11-28", "to": "2026-11-28"}, headers=AUTH)
        assert response.status_code == 200, response.text
        totals = response.json()["data"]["totals"]
        assert (totals["revenue"], totals["payout"], totals["cost"]) == (
            "122.50", "61.25", "12.50")


def _served_config(eur: str) -> str:
    return (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[[sources]]\npid = "{PID}"\n'
            'payout = { type = "percent", value = 50 }\n'
            f'[[campaigns]]\ncid = "{CID}"\n[[campaigns.events]]\n'
            'event_id = "sale_completed"\nconversion = true\n'
            f'[[rates]]\ncurrency = "EUR"\nrate = "{eur}"\nfrom = 2026-01-01\n')


async def test_a_reload_changing_a_rate_applies_to_later_conversions_only(
        tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, _served_config("1.10"), db) as (client, path):
        async def convert() -> str:
            click = await client.post("/api/click", json={"cid": CID, "pid": PID})
            fired = await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale_completed", "pid": PID, "revenue": "10",
                "currency": "EUR", "conversion_date": "2026-06-01",
                "transaction_id": click.json()["data"]["transaction_id"]})
            assert fired.status_code == 200, fired.text
            conversion_id: str = fired.json()["data"]["conversion_id"]
            return conversion_id

        before = await convert()
        path.write_text(_served_config("1.20"))
        assert (await reload(client)).status_code == 200
        after = await convert()
        found = {c["conversion_id"]: c for c in (await client.get(
            "/api/conversions", headers=AUTH)).json()["data"]["conversions"]}
        assert money(found[before], *SHOWN) == ("11.00", "5.50", "10.00", "EUR", "1.10")
        assert money(found[after], *SHOWN) == ("12.00", "6.00", "10.00", "EUR", "1.20")


def test_a_converted_amount_is_exact() -> None:
    from app.events.currency import convert

    assert convert(Decimal("1000000000000"), Decimal("0.000000000001")) == Decimal("1.00")
    assert convert(Decimal("0.000001"), Decimal("0.5")) == Decimal("0.00")  # half-even
    assert convert(Decimal("0.000003"), Decimal("0.5")) == Decimal("0.000002")
    assert msgspec.json.encode(convert(Decimal("1e12"), Decimal("1e9"))) == (
        b'"1000000000000000000000.00"')
