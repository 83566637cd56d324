"""The postback rules as plain functions: macros, money text, retry policy."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from actors.messages import FireEvent
from app.postbacks.macros import macro_values, money_macro, render_url
from app.postbacks.retry import next_delay, outcome_of_status, retry_after_seconds


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("45"), "45.00"), (Decimal("45.0"), "45.00"), (Decimal("45.10"), "45.10"),
    (Decimal("0.0125"), "0.0125"), (Decimal("1E+3"), "1000.00"), (Decimal("0"), "0.00"),
    (Decimal("22.500"), "22.50"), (Decimal("-0.0"), "0.00"), (Decimal("1E-200000000"), "0.00"),
    (Decimal("0.0000125"), "0.000012"), (Decimal("0.0000135"), "0.000014"), (None, ""),
])
def test_money_macro_is_plain_text_rounded_half_even_to_six_places(
        value: Decimal | None, text: str) -> None:
    assert money_macro(value) == text


def test_no_value_can_add_a_parameter_or_change_the_path() -> None:
    url = render_url("https://b.example/pb/{sub1}?s1={sub1}&s2={sub2}&x={missing}",
                     {"sub1": "a&b=c/d?e#f", "sub2": "../admin"})
    parts = urlsplit(url)
    assert parts.netloc == "b.example"
    assert parts.path == "/pb/a%26b%3Dc%2Fd%3Fe%23f"
    assert parse_qs(parts.query, keep_blank_values=True) == {
        "s1": ["a&b=c/d?e#f"], "s2": ["../admin"], "x": [""]}


def test_event_values_win_over_lead_fields_of_the_same_name() -> None:
    event = FireEvent(transaction_id="t", cid="c", event_id="e", pid="p", conversion=True,
                      once=True, revenue=Decimal("5"), payout=Decimal("2.5"))
    values = macro_values(event, {"revenue": "999", "vip": True, "score": Decimal("4.5"),
                                  "adSpend": Decimal("3")}, "conv_1", "2026-01-01T00:00:00Z",
                          status="")
    assert (values["revenue"], values["payout"], values["conversion"]) == ("5.00", "2.50", "1")
    assert (values["vip"], values["score"], values["adSpend"]) == ("true", "4.5", "3.00")


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (204, "delivered"), (299, "delivered"), (301, "failed"),
    (400, "failed"), (401, "failed"), (404, "failed"), (410, "failed"), (408, "retry"),
    (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (599, "retry"),
])
def test_outcome_of_status(status: int, outcome: str) -> None:
    assert outcome_of_status(status) == outcome


def test_default_schedule_runs_from_a_second_to_about_an_hour() -> None:
    waits = [next_delay(attempt, first=1, cap=3600, jitter=0.5) for attempt in range(1, 8)]
    assert waits == [1, 4, 16, 64, 256, 1024, 3600]
    assert next_delay(3, first=1, cap=3600, jitter=0.0) == 12.8
    assert next_delay(3, first=1, cap=3600, jitter=0.999) < 20
    assert next_delay(9, first=1, cap=3600, jitter=0.999) == 3600


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), (" 7 ", 7.0), ("99999", 3600.0), (None, None), ("soon", None),
    ("Sat, 28 Nov 2026 12:02:00 GMT", 120.0), ("Wed, 21 Oct 2026 07:28:00 GMT", 0.0),
])
def test_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert retry_after_seconds(header, 3600, now=now) == seconds


def test_a_lead_number_stored_before_the_bound_renders_short_not_in_full() -> None:
    # 1e+300000000 written out in full would be 300 million digits.
    event = FireEvent(transaction_id="t", cid="c", event_id="e", pid="p", conversion=True,
                      once=True, revenue=Decimal("1"))
    values = macro_values(event, {"zz": Decimal("1e+300000000"),
                                  "adSpend": Decimal("-1e-300000000")}, "conv_1", "now", status="")
    assert values["zz"] == "1E+300000000"
    assert values["adSpend"] == "-1E-300000000"
    assert values["revenue"] == "1.00"
