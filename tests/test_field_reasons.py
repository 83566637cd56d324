"""Each invalid field says why, in words a client can act on, and valid forms are kept.

The reasons are part of the answer (`invalidFields`), so they are checked word for word:
a reason that turns into noise, or a check that refuses the valid form, fails here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.events.payloads import parse_event
from tests.conftest import CID, Harness

ZONES = {"UTC", "PST", "MST", "CST", "EST", "AST", "AKST", "HST", "SST"}


async def reasons(api: Harness, **fields: Any) -> dict[str, str]:
    body = {"cid": CID, "event_id": "form_step", "transaction_id": "txn_x", **fields}
    response = await api.client.post("/api/event/trigger", json=body)
    assert response.status_code == 400, response.text
    found: dict[str, str] = response.json()["invalidFields"]
    return found


@pytest.mark.parametrize(("field", "value", "why"), [
    ("tcpa_consent_date", "2026/01/31", "Expected 'YYYY-MM-DD'"),
    ("tcpa_consent_date", "2026-02-30", "Expected 'YYYY-MM-DD'"),
    ("conversion_date", "yesterday", "Expected 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"),
    ("conversion_date", "2026-02-30 10:00:00",
     "Expected 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'"),
    ("notes", "n" * 256, "Expected `str` of length <= 255"),
    ("colors", ["red"], "Expected a string, number or boolean"),
    ("shape", {"a": 1}, "Expected a string, number or boolean"),
])
async def test_the_reason_for_an_invalid_field(
    api: Harness, field: str, value: Any, why: str
) -> None:
    assert await reasons(api, **{field: value}) == {field: why}


async def test_an_extra_number_too_long_says_its_limit(api: Harness) -> None:
    body = '{"cid": "%s", "event_id": "form_step", "transaction_id": "t", "n": %s}'
    for number in ("1" * 65, "1e70", "0.%s1" % ("0" * 70)):
        response = await api.client.post("/api/event/trigger", content=body % (CID, number))
        assert response.json()["invalidFields"] == {
            "n": "Expected a number of at most 64 characters"}, number


async def test_an_extra_number_of_exponent_64_is_refused_by_its_length(api: Harness) -> None:
    transaction_id = await api.click()
    body = '{"cid": "%s", "event_id": "form_step", "transaction_id": "%s", "n": %s}'
    # 1e63 writes out in 64 characters: kept. 1e64 needs 65: refused.
    ok = await api.client.post("/api/event/trigger", content=body % (CID, transaction_id,
                                                                     "1e63"))
    assert ok.status_code == 200, ok.text
    api.clock.advance(3)
    refused = await api.client.post("/api/event/trigger",
                                    content=body % (CID, transaction_id, "1e64"))
    assert refused.json()["invalidFields"] == {
        "n": "Expected a number of at most 64 characters"}


async def test_an_unknown_time_zone_lists_the_documented_ones(api: Harness) -> None:
    why = (await reasons(api, conversion_timezone="CET"))["conversion_timezone"]
    prefix = "Expected one of "
    assert why.startswith(prefix)
    assert set(why.removeprefix(prefix).split(", ")) == ZONES


async def test_a_valid_consent_date_is_stored(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "form_step", tcpa_consent=1,
                              tcpa_consent_date="2026-01-31")
    assert response.status_code == 200, response.text
    lead = await api.view(transaction_id)
    assert lead["fields"]["tcpa_consent_date"] == "2026-01-31"
    assert lead["fields"]["tcpa_consent"] == 1


async def test_query_string_values_are_read_as_their_types(api: Harness) -> None:
    # A pixel can only send text: "1" is the consent flag and "12.50" the cost.
    transaction_id = await api.click()
    params = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
              "revenue": "20", "tcpa_consent": "1", "cost": "12.50",
              "tcpa_consent_date": "2026-01-31"}
    response = await api.client.get("/api/event/trigger", params=params)
    assert response.status_code == 200, response.text
    lead = await api.view(transaction_id)
    assert lead["cost"] == "12.50"
    assert lead["fields"]["tcpa_consent"] == 1


async def test_a_wrong_typed_query_value_is_named(api: Harness) -> None:
    params = {"cid": CID, "event_id": "form_step", "transaction_id": "t",
              "tcpa_consent": "yes", "conversion_timezone": "XYZ"}
    response = await api.client.get("/api/event/trigger", params=params)
    assert response.status_code == 400
    assert set(response.json()["invalidFields"]) == {"tcpa_consent", "conversion_timezone"}


def test_a_number_that_is_not_finite_is_refused_as_an_extra_field() -> None:
    # JSON cannot spell NaN, but a caller of the parser can hand one over.
    raw = {"cid": CID, "event_id": "e", "transaction_id": "t", "score": Decimal("NaN")}
    event = parse_event(raw)
    assert event.invalid == {"score": "Expected a finite number"}
    assert "score" not in event.extra
