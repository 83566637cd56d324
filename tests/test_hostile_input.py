"""Bodies an attacker or a broken client sends: each gets its documented 4xx, never a 500.

Money is bounded before any arithmetic and always written as plain fixed-point text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import CID, PID, TEST_CONFIG, Harness, error, running

# A buyer postback on a closed port: rendered and stored, never delivered.
POSTBACK_CONFIG = TEST_CONFIG.replace("[[campaigns]]\ncid = \"cmp_other\"", """
[[campaigns.postbacks]]
url = "http://127.0.0.1:9/pb?rev={revenue}&pay={payout}&zz={zz}&ad={adSpend}"

[[campaigns]]
cid = "cmp_other"
""")


@pytest.fixture
async def api(db_path: Path) -> AsyncIterator[Harness]:
    assert "127.0.0.1:9/pb" in POSTBACK_CONFIG
    config = parse_config('lead_fields = ["zz"]\n' + POSTBACK_CONFIG, origin="test")
    config = with_server_overrides(config, "test", db=str(db_path))
    async with running(config) as harness:
        yield harness


def sale(transaction_id: str, **fields: Any) -> dict[str, Any]:
    return {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
            "pid": PID, **fields}


async def post(api: Harness, body: bytes, content_type: str = "application/json") -> Any:
    return await api.client.post("/api/event/trigger", content=body,
                                 headers={"Content-Type": content_type})


@pytest.mark.parametrize("body", [
    b'{"k": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    b'{"cid": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}",
    b'{"cid": "a\xffb"}',
    b'{"cid": "\xc3"}',
    b'{"cid": "\\ud800"}',
    b'{"cid": 1' + b"0" * 5000 + b"}",
    b"\xff\xfe{}",
])
async def test_malformed_json_is_400_invalid_json_body(api: Harness, body: bytes) -> None:
    response = await post(api, body)
    assert (response.status_code, response.json()) == (400, error(400, "Invalid JSON body"))


async def test_invalid_utf8_in_a_form_is_400_invalid_json_body(api: Harness) -> None:
    response = await post(api, b"cid=a%FF&x=\xff", "application/x-www-form-urlencoded")
    assert response.json() == error(400, "Invalid JSON body")


@pytest.mark.parametrize("field", ["revenue", "amount", "cost", "adSpend", "min_price"])
@pytest.mark.parametrize("text", ["null", "NaN", "Infinity", "-Infinity", "1e", "0x10", " "])
async def test_money_text_that_is_no_number_is_refused(
    api: Harness, field: str, text: str
) -> None:
    transaction_id = await api.click()
    fields = {"revenue": "1"} | {field: text}
    response = await api.fire(transaction_id, "sale_completed", **fields)
    assert response.json() == error(400, f"Invalid {field}",
                                    invalidFields={field: "Expected a number"})


async def test_null_money_text_beside_another_invalid_field_names_both(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed", revenue="null", sub1=5)
    assert response.json() == error(400, "Invalid sub1", invalidFields={
        "sub1": "Expected `str | null`, got `int`", "revenue": "Expected a number"})


@pytest.mark.parametrize("revenue", [-1, "-0.000001", "1000000000000.000001", "1e13",
                                     "1e+300000000"])
async def test_money_out_of_range_is_refused(api: Harness, revenue: Any) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed", revenue=revenue)
    assert response.json() == error(400, "Invalid revenue", invalidFields={
        "revenue": "Expected a finite number >= 0 and <= 1000000000000"})


async def stored_money(api: Harness, transaction_id: str) -> tuple[str, str, str]:
    event = (await api.view(transaction_id))["events"][-1]
    [(url,)] = await api.query("SELECT url FROM postbacks WHERE transaction_id = ?",
                               transaction_id)
    return event["revenue"], event["payout"], url.split("?", 1)[1]


@pytest.mark.parametrize(("raw", "revenue", "payout"), [
    (b"1e-200000000", "0.00", "0.00"),
    (b'"1E-300000000"', "0.00", "0.00"),
    (b"-0.0", "0.00", "0.00"),
    (b"1E+3", "1000.00", "500.00"),
    (b"1000000000000", "1000000000000.00", "500000000000.00"),
    (b"12.3456785", "12.345678", "6.172839"),
    (b"12.3456795", "12.34568", "6.17284"),
    (b"0.0000125", "0.000012", "0.000006"),
    (b'"45.10"', "45.10", "22.55"),
])
async def test_money_is_rounded_half_even_to_six_places_and_written_plain(
    api: Harness, raw: bytes, revenue: str, payout: str
) -> None:
    transaction_id = await api.click()
    body = b'{"cid": "%s", "event_id": "sale_completed", "transaction_id": "%s", ' \
           b'"pid": "%s", "revenue": %s}' % (CID.encode(), transaction_id.encode(),
                                             PID.encode(), raw)
    response = await post(api, body)
    assert response.status_code == 200, response.text
    assert await stored_money(api, transaction_id) == (
        revenue, payout, f"rev={revenue}&pay={payout}&zz=&ad=")


async def test_an_extra_number_too_long_to_write_out_is_an_invalid_field(
    api: Harness
) -> None:
    for value in (b"1e+300000000", b"1e-300000000", b"1" + b"0" * 64, b"0." + b"1" * 63):
        body = b'{"cid": "%s", "zz": %s}' % (CID.encode(), value)
        response = await api.client.post("/api/click", content=body)
        assert response.json() == error(400, "Invalid zz", invalidFields={
            "zz": "Expected a number of at most 64 characters"}), value


async def test_an_extra_number_of_64_characters_reaches_the_postback(api: Harness) -> None:
    number = "1" * 32 + "." + "2" * 31
    body = '{"cid": "%s", "pid": "%s", "zz": %s}' % (CID, PID, number)
    transaction_id = (await api.client.post("/api/click", content=body)).json()["data"][
        "transaction_id"]
    assert (await api.fire(transaction_id, "sale_completed", pid=PID,
                           revenue="1")).status_code == 200
    *_, query = await stored_money(api, transaction_id)
    assert f"zz={number}&" in query


async def test_a_conversion_date_past_year_9999_once_its_zone_applies_is_invalid(
    api: Harness
) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed", revenue="1",
                              conversion_date="9999-12-31 23:00:00", conversion_timezone="PST")
    assert response.json() == error(400, "Invalid conversion_date", invalidFields={
        "conversion_date": "Expected a date between 0001-01-01 and 9999-12-31 in UTC"})
    ok = await api.fire(transaction_id, "sale_completed", revenue="1",
                        conversion_date="9999-12-31 15:59:59", conversion_timezone="PST")
    assert ok.status_code == 200, ok.text


async def test_duplicate_keys_and_nul_bytes_get_an_answer(api: Harness) -> None:
    transaction_id = await api.click()
    body = ('{"cid": "nope", "cid": "%s", "event_id": "quote_viewed", '
            '"transaction_id": "%s", "sub1": "a\\u0000b"}' % (CID, transaction_id))
    response = await post(api, body.encode())
    # The last cid wins; a NUL no store keeps alike is refused (strict_fields here).
    assert response.json() == error(400, "Invalid sub1", invalidFields={
        "sub1": "Expected text without NUL characters"})


async def test_query_strings_with_bad_escapes_get_an_answer(api: Harness) -> None:
    response = await api.client.get("/api/event/trigger?cid=%FF%00&event_id=%&transaction_id=x")
    assert response.json() == error(400, "Invalid cid", invalidFields={
        "cid": "Expected text without NUL characters"})
