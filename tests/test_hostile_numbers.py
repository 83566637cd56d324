"""Numbers no client should send: exponents of any length and non-ASCII digits.

Each gets the field's own 400 on every form of the event routes (a JSON number, JSON
text, a form, a query string, a .gif pixel), never a 500; a number that rounds to zero
is zero, however long its exponent.
"""

from __future__ import annotations

import json

import httpx
import pytest

from app.routes.events import PIXEL
from tests.conftest import CID, PID, Harness, error

# The answers hold on both stores.
pytestmark = pytest.mark.both_stores

MONEY = ("revenue", "amount", "cost", "adSpend", "min_price")
OUT_OF_RANGE = "Expected a finite number >= 0 and <= 1000000000000"
TOO_LARGE = ("1e9999999999999999999", "1E+9999999999999999999", "-1e-9999999999999999999",
             "1" * 100 + "e999999999999999999", "5e" + "9" * 5000)
ZERO = ("0e-9999999999999999999", "1e-9999999999999999999", "0e9999999999999999999",
        "0.5e-" + "9" * 5000)
# Arabic-Indic, fullwidth, Devanagari and mixed digits: Decimal would read every one.
NOT_ASCII = ("\u0661\u0662\u0663", "\uff15", "\u0967\u0966", "1\u0665.5", "1e\uff15",
             "\u0660.\u0665")
FORMS = ("json_number", "json_text", "form", "query", "gif")


async def send(api: Harness, form: str, fields: dict[str, str]) -> httpx.Response:
    """An event whose every value is sent as ``form`` says; numbers bare in JSON."""
    if form in ("query", "gif"):
        params = fields | ({"format": "gif"} if form == "gif" else {})
        return await api.client.get("/api/event/trigger", params=params)
    if form == "form":
        return await api.client.post("/api/event/trigger", data=fields)
    text = ", ".join(f"{json.dumps(name)}: " + (
        value if form == "json_number" and name in MONEY else json.dumps(value))
        for name, value in fields.items())
    return await api.client.post("/api/event/trigger", content="{" + text + "}")


def sale(transaction_id: str, field: str, value: str) -> dict[str, str]:
    # `cost_operation` too: an operation on the cost takes the same route to the lead.
    return {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
            "pid": PID, "revenue": "1", "cost_operation": "override", field: value}


def assert_refused(response: httpx.Response, form: str, field: str, why: str) -> None:
    if form == "gif":
        assert (response.status_code, response.content) == (400, PIXEL)
    else:
        assert response.json() == error(400, f"Invalid {field}", invalidFields={field: why})


@pytest.mark.parametrize("form", FORMS)
async def test_a_money_exponent_of_any_length_past_the_bound_is_out_of_range(
    api: Harness, form: str
) -> None:
    transaction_id = await api.click(pid=PID)
    for field in MONEY:
        for value in TOO_LARGE:
            response = await send(api, form, sale(transaction_id, field, value))
            assert_refused(response, form, field, OUT_OF_RANGE)


@pytest.mark.parametrize("form", ("json_text", "form", "query", "gif"))
async def test_money_in_digits_other_than_ascii_is_not_a_number(
    api: Harness, form: str
) -> None:
    transaction_id = await api.click(pid=PID)
    for field in MONEY:
        for value in NOT_ASCII:
            response = await send(api, form, sale(transaction_id, field, value))
            assert_refused(response, form, field, "Expected a number")


@pytest.mark.parametrize("form", FORMS)
async def test_money_with_a_long_negative_exponent_rounds_to_zero(
    api: Harness, form: str
) -> None:
    for value in ZERO:
        transaction_id = await api.click(pid=PID)
        fields = sale(transaction_id, "revenue", value)
        response = await send(api, form, fields | {"cost": value})
        assert response.status_code == 200, (value, response.text)
        view = await api.view(transaction_id)
        assert (view["events"][-1]["revenue"], view["cost"]) == ("0.00", "0.00"), value


@pytest.mark.parametrize("route", ("/api/click", "/api/event/trigger"))
async def test_an_extra_number_with_a_long_exponent_is_too_long_to_write_out(
    api: Harness, route: str
) -> None:
    transaction_id = await api.click()
    for value in (*TOO_LARGE[:2], *ZERO):
        body = ('{"cid": "%s", "event_id": "quote_viewed", "transaction_id": "%s", '
                '"zz": %s}' % (CID, transaction_id, value))
        response = await api.client.post(route, content=body)
        assert response.json() == error(400, "Invalid zz", invalidFields={
            "zz": "Expected a number of at most 64 characters"}), value
