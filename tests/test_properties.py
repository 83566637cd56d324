"""Property tests: whatever a client sends, only the API's own answers come back.

The examples are derandomized, so a failure in CI reproduces on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.messages import FireEvent
from app.edge.bodies import fields_from_body
from app.edge.errors import ApiError
from app.events.lead_fields import EVENT_LEAD_FIELDS
from app.events.payloads import EventFields, parse_click, parse_event
from app.factory import create_app
from app.postbacks.macros import macro_values, render_body, render_url
from storage.money import MAX_MONEY, MoneyError, parse_money, round_money
from tests.conftest import CID, make_config
from tests.threaded import ThreadedServer

SETTINGS = settings(derandomize=True, deadline=None, max_examples=300,
                    suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = sorted(set(EventFields.__struct_fields__) | {"zz", "first_name", "format"})

# Numbers as a client may write them: any size, any exponent (past Decimal's 18 digits
# too), any sign, and in any script's digits (Decimal reads "\u0661" or "\uff15" as numbers).
_significand = st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?", fullmatch=True)
number_text = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,10})?",
                  fullmatch=True),
    st.builds("{}{}{}{}".format, _significand, st.sampled_from("eE"),
              st.sampled_from(["", "+", "-"]), st.integers(10**17, 10**30)),
    st.from_regex(r"-?\d{1,5}(\.\d{1,5})?([eE][+-]?\d{1,5})?", fullmatch=True).filter(
        lambda text: not text.isascii()),
    st.sampled_from(["1e-200000000", "1E+300000000", "-0.0", "1e12", "1000000000000.0000001",
                     "99999999999999999999999999", "0.0000005", "NaN", "Infinity", "null",
                     "1e9999999999999999999", "0e-9999999999999999999",
                     "1" * 30 + "e999999999999999999", "\u0661\u0662\u0663", "\uff15"]),
)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=300), number_text,
    st.sampled_from(["", "null", "NaN", "Infinity", "9999-12-31 23:00:00", "PST", "a\x00b",
                     "2026-02-30", "2026-01-01 24:00:00"]),
)
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
fields = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=10), value,
                         max_size=12)


def _raw_json(data: dict[str, Any]) -> bytes:
    """JSON with number-like texts written as bare numbers, as a hostile client would."""
    parts = []
    for key, item in data.items():
        if isinstance(item, str) and item and item[0] in "-0123456789" and " " not in item:
            encoded = item
        else:
            encoded = json.dumps(item)
        parts.append(f"{json.dumps(key)}: {encoded}")
    return ("{" + ", ".join(parts) + "}").encode()


@SETTINGS
@given(body=st.binary(max_size=2000), form=st.booleans())
def test_any_bytes_read_as_fields_or_refused_with_400(body: bytes, form: bool) -> None:
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    try:
        result = fields_from_body(body, content_type)
    except ApiError as error:
        assert (error.status, error.message) == (400, "Invalid JSON body")
    else:
        assert isinstance(result, dict)


@SETTINGS
@given(data=fields)
def test_any_fields_parse_or_are_refused_with_a_4xx(data: dict[str, Any]) -> None:
    raw = fields_from_body(_raw_json(data), "application/json") if _decodes(data) else data
    for parse in (parse_event, parse_click):
        try:
            parse(dict(raw))
        except ApiError as error:
            assert 400 <= error.status < 500


def _decodes(data: dict[str, Any]) -> bool:
    try:
        fields_from_body(_raw_json(data), "application/json")
    except ApiError:
        return False
    return True


@SETTINGS
@given(data=fields)
def test_macros_of_any_accepted_event_are_bounded(data: dict[str, Any]) -> None:
    raw = {"cid": "c", "event_id": "e", "transaction_id": "t"} | data
    if not _decodes(raw):
        return
    try:
        event = parse_event(fields_from_body(_raw_json(raw), "application/json"))
    except ApiError:
        return
    stored, lead = event.stored_fields()
    fire = FireEvent(transaction_id="t", cid="c", event_id="e", pid="p", conversion=True,
                     once=True, revenue=event.revenue, payout=event.revenue, cost=None,
                     lead_fields=lead, event_fields=stored)
    values = macro_values(fire, lead, "conv_x", "2026-11-28T00:00:00.000000Z", status="")
    # Every value writes out in at most 255 characters, however its number was spelled.
    assert all(len(text) <= 255 for text in values.values()), values
    template = "http://b.example/p?" + "&".join(f"{name}={{{name}}}"
                                                for name in sorted(EVENT_LEAD_FIELDS | {"zz"}))
    assert len(render_url(template, values)) <= len(template) + 3 * 255 * len(values)
    assert len(render_body(values)) <= 6 * 300 * len(values)
    for name in ("revenue", "payout"):
        if values[name]:
            assert "E" not in values[name] and "e" not in values[name]
            assert Decimal(values[name]) <= Decimal(10) ** 12


@SETTINGS
@given(text=number_text)
def test_any_number_text_is_a_bounded_amount_or_refused(text: str) -> None:
    try:
        amount = parse_money(text)
    except MoneyError:
        return
    assert text.isascii()
    assert Decimal(0) <= amount <= MAX_MONEY
    assert amount == round_money(amount)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db: Path = tmp_path_factory.mktemp("properties") / "p.db"
    server = ThreadedServer(create_app(make_config(db)), lifespan="on")
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            transaction_id = client.post("/api/click", json={"cid": CID}).json()["data"][
                "transaction_id"]
        yield server.url, transaction_id
    finally:
        server.stop()


@settings(derandomize=True, deadline=None, max_examples=200,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=fields, route=st.sampled_from(["/api/event/trigger", f"/api/event/{CID}",
                                          "/api/click"]),
       how=st.sampled_from(["json", "form", "query", "bytes"]), noise=st.binary(max_size=50))
def test_the_served_app_never_answers_5xx(
    served: tuple[str, str], data: dict[str, Any], route: str, how: str, noise: bytes
) -> None:
    url, transaction_id = served
    body = {"cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id} | data
    flat = {key: str(item) for key, item in body.items()}
    with httpx.Client(base_url=url, timeout=10) as client:
        if how == "json":
            response = client.post(route, content=_raw_json(body))
        elif how == "form":
            response = client.post(route, data=flat)
        elif how == "query":
            response = client.get(route, params=flat)
        else:
            response = client.post(route, content=_raw_json(body)[:-1] + noise)
    assert response.status_code < 500, response.text
    # A click's GET form may redirect to the landing page and format=gif answers a pixel;
    # every other answer is the envelope.
    if response.headers.get("content-type") == "application/json":
        answer = response.json()
        assert answer["status"] == response.status_code
        assert answer["type"] == ("success" if response.status_code < 400 else "error")
    else:
        assert response.status_code == 302 or response.headers["content-type"] == "image/gif"
