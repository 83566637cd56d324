"""Lenient optional fields: a bad optional field is dropped and reported, the event fires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from app.config.schema import PostbackConfig, parse_config
from app.observe.logs import merge_request_fields
from tests.conftest import CID, PID, Harness, error, make_config, running, with_campaign

BUYER = "http://127.0.0.1:9/p?s2={sub2}&tc={tcpa_consent}&ad={adSpend}&u={utm_content}"


@pytest.fixture
async def lenient(db_path: Path) -> AsyncIterator[Harness]:
    config = with_campaign(make_config(db_path), CID, strict_fields=False,
                           postbacks=[PostbackConfig(url=BUYER)])
    async with running(config) as harness:
        yield harness


# Every kind of optional field, each with a value that fails its check.
OPTIONAL = [
    ("utm_content", "u" * 300),
    ("sub2", 12),
    ("sub1", ["a"]),
    ("conversion_timezone", "PDT"),
    ("conversion_date", "2026-01-31 10:00"),
    ("conversion_date", "2026-02-30"),
    ("tcpa_consent", True),
    ("tcpa_consent", "yes"),
    ("tcpa_consent_date", "31/01/2026"),
    ("cost", "-5"),
    ("cost_operation", "multiply"),
    ("adSpend", "lots"),
    ("min_price", "NaN"),
    ("first_name", {"nested": "object"}),
    ("notes", "n" * 256),
    ("zz", [1, 2]),
]


@pytest.mark.parametrize(("field", "value"), OPTIONAL)
async def test_invalid_optional_field_is_dropped_reported_and_the_event_fires(
    lenient: Harness, field: str, value: Any
) -> None:
    transaction_id = await lenient.click(sub2="from_click")
    response = await lenient.fire(transaction_id, "sale_completed", revenue="10",
                                  **{field: value})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["status", "type", "message", "data", "invalidFields"]
    assert list(answer["invalidFields"]) == [field]
    assert answer["invalidFields"][field]  # says why
    assert answer["data"]["conversion_id"].startswith("conv_")
    view = await lenient.view(transaction_id)
    # Neither the stored event, nor the lead, nor a postback macro saw the dropped value.
    assert field not in view["events"][0]["fields"]
    assert view["fields"] == {"sub2": "from_click"}
    [(url,)] = await lenient.query("SELECT url FROM postbacks WHERE transaction_id = ?",
                                   transaction_id)
    assert url == "http://127.0.0.1:9/p?s2=from_click&tc=&ad=&u="


async def test_valid_fields_beside_a_dropped_one_are_kept(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", revenue="10",
                                  sub2=5, sub3="kept", adSpend="2.5", tcpa_consent=1)
    assert response.json()["invalidFields"] == {"sub2": "Expected `str | null`, got `int`"}
    event = (await lenient.view(transaction_id))["events"][0]
    assert event["fields"] == {"revenue": "10.00", "sub3": "kept", "adSpend": "2.50",
                               "tcpa_consent": 1}
    [(url,)] = await lenient.query("SELECT url FROM postbacks WHERE transaction_id = ?",
                                   transaction_id)
    assert url == "http://127.0.0.1:9/p?s2=&tc=1&ad=2.50&u="


async def test_a_success_without_dropped_fields_has_exactly_the_old_shape(
    lenient: Harness
) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id)
    assert response.content == (
        b'{"status":200,"type":"success","message":"Event triggered successfully","data":'
        b'{"cid":"%s","pid":"organic","transaction_id":"%s","conversion_id":"",'
        b'"conversion":false}}' % (CID.encode(), transaction_id.encode()))


async def test_campaign_route_reports_dropped_fields_with_201(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.client.post(f"/api/event/{CID}", json={
        "event_id": "quote_viewed", "transaction_id": transaction_id, "sub1": 7})
    assert response.status_code == 201
    assert response.json()["invalidFields"] == {"sub1": "Expected `str | null`, got `int`"}


async def test_query_route_reports_dropped_fields(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.client.get("/api/event/trigger", params={
        "cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
        "tcpa_consent": "maybe"})
    assert response.status_code == 200
    assert list(response.json()["invalidFields"]) == ["tcpa_consent"]


async def test_form_text_beside_a_dropped_field_is_still_read_as_its_type(
    lenient: Harness
) -> None:
    """A query string or form sends every value as text; a dropped neighbour changes nothing."""
    transaction_id = await lenient.click()
    response = await lenient.client.get("/api/event/trigger", params={
        "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
        "revenue": "10", "tcpa_consent": "1", "sub1": "s" * 256})
    assert response.status_code == 200, response.text
    assert list(response.json()["invalidFields"]) == ["sub1"]
    event = (await lenient.view(transaction_id))["events"][0]
    assert event["fields"] == {"revenue": "10.00", "tcpa_consent": 1}


async def test_a_dropped_conversion_date_dates_the_conversion_when_it_fired(
    lenient: Harness
) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", revenue="1",
                                  conversion_date="yesterday")
    assert list(response.json()["invalidFields"]) == ["conversion_date"]
    event = (await lenient.view(transaction_id))["events"][0]
    assert event["converted_at"] == event["fired_at"] == "2026-11-28T12:00:00.000000Z"


async def test_a_date_whose_zone_pushes_it_past_9999_is_dropped(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", revenue="1",
                                  conversion_date="9999-12-31 23:00:00",
                                  conversion_timezone="PST")
    assert list(response.json()["invalidFields"]) == ["conversion_date"]
    event = (await lenient.view(transaction_id))["events"][0]
    assert event["converted_at"] == event["fired_at"]
    assert "conversion_date" not in event["fields"]


async def test_a_dropped_timezone_reads_the_date_as_utc(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", revenue="1",
                                  conversion_date="2026-01-31 10:00:00",
                                  conversion_timezone="CET")
    assert list(response.json()["invalidFields"]) == ["conversion_timezone"]
    event = (await lenient.view(transaction_id))["events"][0]
    assert event["converted_at"] == "2026-01-31T10:00:00.000000Z"


@pytest.mark.parametrize(("fields", "refused"), [
    ({"revenue": "abc"}, "revenue"),
    ({"revenue": "-1", "amount": "5"}, "revenue"),
    ({"amount": "twelve"}, "amount"),
])
async def test_the_money_field_carrying_a_conversions_revenue_still_refuses(
    lenient: Harness, fields: dict[str, str], refused: str
) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", sub1=9, **fields)
    assert response.status_code == 400
    assert response.json()["message"] == f"Invalid {refused}"
    assert set(response.json()["invalidFields"]) == {"sub1", refused}
    assert (await lenient.view(transaction_id))["events"] == []


async def test_amount_beside_a_valid_revenue_is_optional(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, "sale_completed", revenue="5",
                                  amount="x", cost="-1")
    assert response.status_code == 200
    assert list(response.json()["invalidFields"]) == ["amount", "cost"]
    view = await lenient.view(transaction_id)
    assert view["events"][0]["revenue"] == "5.00"
    assert view["cost"] is None


async def test_revenue_on_an_event_that_is_no_conversion_is_optional(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    response = await lenient.fire(transaction_id, revenue="abc")
    assert (response.status_code, list(response.json()["invalidFields"])) == (200, ["revenue"])


@pytest.mark.parametrize(("field", "value"), [
    ("transaction_id", 12345), ("event_id", "e" * 256), ("pid", {"id": 1}), ("cid", ["x"])])
async def test_an_invalid_id_always_refuses(lenient: Harness, field: str, value: Any) -> None:
    transaction_id = await lenient.click()
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            field: value}
    response = await lenient.client.post("/api/event/trigger", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == f"Invalid {field}"


async def test_field_checks_stay_before_the_campaign_and_event_checks(
    lenient: Harness
) -> None:
    # Whether a field may be dropped depends on the campaign and event: unknown ones keep
    # the answer check 3 has always given.
    for cid, event_id in (("cmp_missing", "quote_viewed"), (CID, "no_such_event")):
        body = {"cid": cid, "event_id": event_id, "transaction_id": "t", "sub1": 5}
        response = await lenient.client.post("/api/event/trigger", json=body)
        assert response.json() == error(400, "Invalid sub1", invalidFields={
            "sub1": "Expected `str | null`, got `int`"})


async def test_strict_fields_keeps_the_400(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed", revenue="1", sub2=5)
    assert response.json() == error(400, "Invalid sub2", invalidFields={
        "sub2": "Expected `str | null`, got `int`"})
    assert (await api.view(transaction_id))["events"] == []


def test_lenient_is_the_default() -> None:
    config = parse_config('[[campaigns]]\ncid = "c"\n', origin="test")
    assert config.campaigns[0].strict_fields is False


async def test_the_request_log_names_the_dropped_fields(lenient: Harness) -> None:
    transaction_id = await lenient.click()
    with structlog.testing.capture_logs(processors=[merge_request_fields]) as logs:
        await lenient.fire(transaction_id, "sale_completed", revenue="1", pid=PID,
                           sub1=5, tcpa_consent="no")
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert (line["outcome"], line["dropped_fields"]) == ("converted", ["sub1", "tcpa_consent"])
