"""Caps: exact under any concurrency, given back on rejection and reversal, per local day."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from app.config.schema import ConfigError, parse_config
from tests.conftest import ADMIN_TOKEN, Harness, error, running_on
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CID, PID = "cmp_caps", "src_a"


def cap_config(db: Path, caps: str, *, approval: str = "auto") -> Any:
    return parse_config(f"""
[server]
admin_token = "{ADMIN_TOKEN}"
db = "{db}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 10 }}

[[sources]]
pid = "src_b"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale"
conversion = true
approval = "{approval}"
{caps}""", origin="caps")


async def sale(api: Harness, revenue: str = "10", pid: str = PID) -> Any:
    transaction_id = await api.click(CID, pid=pid)
    return await api.client.post("/api/event/trigger", json={
        "cid": CID, "event_id": "sale", "pid": pid, "revenue": revenue,
        "transaction_id": transaction_id})


async def change(api: Harness, conversion_id: str, action: str) -> Any:
    return await api.client.post(f"/api/conversions/{conversion_id}/{action}", json={},
                                 headers=AUTH)


CONVERSIONS_CAP = """
[[campaigns.caps]]
metric = "conversions"
period = "day"
limit = 50
"""


async def test_200_at_once_on_a_cap_of_50_store_exactly_50(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, cap_config(db_path, CONVERSIONS_CAP)) as api:
        answers = await asyncio.gather(*(sale(api) for _ in range(200)))
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200] * 50 + [400] * 150
        refused = [answer.json() for answer in answers if answer.status_code == 400]
        assert all(body == error(400, "Cap reached", code="cap_reached") for body in refused)
        stored = await api.query("SELECT count(*) FROM events WHERE conversion = ?", True)
        assert stored == [(50,)]
        assert await api.query("SELECT used FROM cap_usage") == [(50,)]
        # Reversing one frees one place, and only one.
        paid = next(answer.json()["data"]["conversion_id"] for answer in answers
                    if answer.status_code == 200)
        assert (await change(api, paid, "reverse")).status_code == 200
        again = await asyncio.gather(*(sale(api) for _ in range(3)))
        assert sorted(answer.status_code for answer in again) == [200, 400, 400]


async def test_a_money_cap_is_never_passed(backend: pytest.FixtureRequest,
                                           db_path: Path) -> None:
    caps = """
[[campaigns.caps]]
metric = "revenue"
period = "total"
limit = 1000.00
"""
    chooser = random.Random(7)
    amounts = [Decimal(chooser.randint(1, 30000)) / 100 for _ in range(60)]
    async with running_on(backend, cap_config(db_path, caps)) as api:
        answers = await asyncio.gather(*(sale(api, f"{amount}") for amount in amounts))
        taken = [amount for amount, answer in zip(amounts, answers, strict=True)
                 if answer.status_code == 200]
        assert all(answer.status_code in (200, 400) for answer in answers)
        assert sum(taken) <= Decimal(1000)
        rows = await api.query("SELECT revenue FROM events WHERE conversion = ?", True)
        assert sorted(Decimal(revenue) for (revenue,) in rows) == sorted(taken)
        # Every amount refused would have passed the limit when it was decided: the
        # smallest one refused does not fit beside what is stored.
        refused = [amount for amount, answer in zip(amounts, answers, strict=True)
                   if answer.status_code == 400]
        assert refused and sum(taken) + min(refused) > Decimal(1000)


async def test_over_pending_holds_and_approval_counts_against_the_cap(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", 'limit = 1\nover = "pending"')
    async with running_on(backend, cap_config(db_path, caps)) as api:
        first = (await sale(api)).json()["data"]
        second = (await sale(api)).json()["data"]
        assert (first["status"], first["reason"]) == ("approved", None)
        assert (second["status"], second["reason"]) == ("pending", "cap_reached")
        # Approving it would pass the cap: refused while the first one counts.
        refused = await change(api, second["conversion_id"], "approve")
        assert (refused.status_code, refused.json()) == (
            409, error(409, "Cap reached", code="cap_reached"))
        assert (await change(api, first["conversion_id"], "reverse")).status_code == 200
        approved = await change(api, second["conversion_id"], "approve")
        assert approved.status_code == 200, approved.text
        third = (await sale(api)).json()["data"]
        assert (third["status"], third["reason"]) == ("pending", "cap_reached")


async def test_over_unpaid_approves_with_no_payout(backend: pytest.FixtureRequest,
                                                   db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", 'limit = 1\nover = "unpaid"')
    async with running_on(backend, cap_config(db_path, caps)) as api:
        paid = (await sale(api, "100")).json()["data"]
        unpaid = (await sale(api, "100")).json()["data"]
        assert (unpaid["status"], unpaid["reason"]) == ("approved", "cap_reached_unpaid")
        found = await api.client.get(f"/api/conversions/{unpaid['conversion_id']}",
                                     headers=AUTH)
        assert (found.json()["data"]["payout"], found.json()["data"]["reason"]) == (
            "0.00", "cap_reached_unpaid")
        first = await api.client.get(f"/api/conversions/{paid['conversion_id']}",
                                     headers=AUTH)
        assert first.json()["data"]["payout"] == "10.00"


async def test_a_pending_conversion_holds_its_place_until_rejected(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", "limit = 1")
    async with running_on(backend, cap_config(db_path, caps, approval="manual")) as api:
        waiting = (await sale(api)).json()["data"]
        assert waiting["status"] == "pending"
        assert (await sale(api)).status_code == 400
        assert (await change(api, waiting["conversion_id"], "reject")).status_code == 200
        assert (await sale(api)).status_code == 200


async def test_a_day_cap_resets_at_the_midnight_of_its_zone(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", 'limit = 1\ntimezone = "America/New_York"')
    async with running_on(backend, cap_config(db_path, caps)) as api:
        # The fake clock starts at 2026-11-28 12:00 UTC: 07:00 in New York.
        assert api.clock.now() == datetime(2026, 11, 28, 12, tzinfo=UTC)
        assert (await sale(api)).status_code == 200
        api.clock.advance(11 * 3600)  # 23:00 UTC, 18:00 in New York: the same day there
        assert (await sale(api)).status_code == 400
        api.clock.advance(5 * 3600)  # 04:00 UTC: 23:00 in New York, still the 28th
        assert (await sale(api)).status_code == 400
        api.clock.advance(3600)  # 05:00 UTC: midnight in New York, the 29th
        assert (await sale(api)).status_code == 200
        assert sorted(await api.query("SELECT period FROM cap_usage")) == [
            ("2026-11-28",), ("2026-11-29",)]


async def test_a_cap_counts_only_the_source_and_event_it_names(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", f'limit = 1\npid = "{PID}"')
    async with running_on(backend, cap_config(db_path, caps)) as api:
        assert (await sale(api)).status_code == 200
        assert (await sale(api)).status_code == 400
        assert (await sale(api, pid="src_b")).status_code == 200


def test_a_cap_of_a_fraction_of_a_conversion_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a count of conversions is a whole number"):
        cap_config(tmp_path / "e.db", CONVERSIONS_CAP.replace("limit = 50", "limit = 1.5"))


async def test_caps_show_their_use_in_the_api_the_metrics_and_one_warning(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    caps = CONVERSIONS_CAP.replace("limit = 50", "limit = 10") + """
[[campaigns.caps]]
metric = "payout"
period = "month"
limit = 100.50
over = "unpaid"
"""
    async with running_on(backend, cap_config(db_path, caps)) as api:
        with capture_logs() as logs:
            for _ in range(9):
                assert (await sale(api, "20")).status_code == 200
        warned = [line for line in logs if line["event"] == "cap_nearly_reached"]
        # One line, as the ninth of ten crossed 90 %; the payout cap is at 18.00 of 100.50.
        assert [(line["used"], line["limit"]) for line in warned] == [(9, 10)]
        listed = await api.client.get("/api/caps", headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"]["caps"] == [
            {"cid": CID, "pid": None, "event_id": None, "metric": "conversions",
             "period": "day", "timezone": "UTC", "over": "reject", "current": "2026-11-28",
             "limit": 10, "used": 9, "key": f"{CID}|*|*|conversions|day|UTC"},
            {"cid": CID, "pid": None, "event_id": None, "metric": "payout",
             "period": "month", "timezone": "UTC", "over": "unpaid", "current": "2026-11",
             "limit": "100.50", "used": "18.00", "key": f"{CID}|*|*|payout|month|UTC"}]
        assert (await api.client.get("/api/caps")).status_code == 401
        scraped = (await api.client.get("/metrics", headers=AUTH)).text
        assert (f'event_postback_cap_used{{cap="{CID}|*|*|conversions|day|UTC",'
                f'cid="{CID}"}} 9.0') in scraped
        assert (f'event_postback_cap_limit{{cap="{CID}|*|*|payout|month|UTC",'
                f'cid="{CID}"}} 100.5') in scraped


async def test_a_reload_moves_the_limit_and_keeps_the_count(tmp_path: Path, db: str) -> None:
    def text(limit: int) -> str:
        return (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[[sources]]\npid = "{PID}"\n'
                f'[[campaigns]]\ncid = "{CID}"\n'
                '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n'
                '[[campaigns.caps]]\nmetric = "conversions"\nperiod = "total"\n'
                f"limit = {limit}\n")

    async with serving_on(tmp_path, text(2), db) as (client, path):
        async def one_sale() -> int:
            click = await client.post("/api/click", json={"cid": CID, "pid": PID})
            fired = await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale", "pid": PID, "revenue": "5",
                "transaction_id": click.json()["data"]["transaction_id"]})
            return fired.status_code

        assert [await one_sale() for _ in range(3)] == [200, 200, 400]
        path.write_text(text(3))
        assert (await reload(client)).status_code == 200
        # The two counted before the reload still count: one more place, not three.
        assert [await one_sale() for _ in range(2)] == [200, 400]
