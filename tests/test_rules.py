"""The pure rules, called directly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from actors.messages import FireEvent, Verdict
from actors.rows import _cost_delta
from actors.rules import apply_cost, decide, opens_window
from actors.state import TransactionState
from app.config.money_rules import FixedPayout, PercentPayout
from app.events.field_checks import TIMEZONES, conversion_time


def event(**overrides: object) -> FireEvent:
    fields: dict[str, object] = {"transaction_id": "t", "cid": "c", "event_id": "e",
                                 "pid": "organic", "conversion": False, "once": True}
    return FireEvent(**(fields | overrides))  # type: ignore[arg-type]


def state(**overrides: object) -> TransactionState:
    return TransactionState(**({"cid": "c", "pid": "organic"} | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "request_", "expected"), [
    (None, event(), Verdict.UNKNOWN_TRANSACTION),
    (state(cid="other"), event(), Verdict.UNKNOWN_TRANSACTION),
    (state(), event(conversion=True), Verdict.REVENUE_REQUIRED),
    (state(windows={"e": 11.0}), event(conversion=True), Verdict.REVENUE_REQUIRED),
    (state(windows={"e": 11.0}), event(), Verdict.LOCKED),
    (state(windows={"e": 11.0}, fired={"e"}), event(), Verdict.LOCKED),
    (state(windows={"e": 10.0}, fired={"e"}), event(), Verdict.DUPLICATE),
    (state(fired={"e"}), event(once=False), Verdict.FIRED),
    (state(windows={"other": 99.0}, fired={"other"}), event(), Verdict.FIRED),
    (state(), event(conversion=True, revenue=Decimal(0)), Verdict.FIRED),
])
def test_decide_applies_checks_7_to_10_in_order(
    current: TransactionState | None, request_: FireEvent, expected: Verdict
) -> None:
    assert decide(current, request_, now=10.0) is expected


def test_only_requests_that_reach_the_lock_check_open_the_window() -> None:
    assert {verdict for verdict in Verdict if opens_window(verdict)} == {
        Verdict.DUPLICATE, Verdict.FIRED}


@pytest.mark.parametrize(("current", "amount", "operation", "expected"), [
    (None, "5", "add", "5"),
    (Decimal("1.10"), "2.20", "add", "3.30"),
    (Decimal("10"), "2.5", "subtract", "7.5"),
    (None, "2.5", "subtract", "-2.5"),
    (Decimal("10"), "0.01", "override", "0.01"),
])
def test_apply_cost(current: Decimal | None, amount: str, operation: str, expected: str) -> None:
    result = apply_cost(current, Decimal(amount), operation)  # type: ignore[arg-type]
    assert str(result) == expected


def test_payouts_are_exact_then_rounded_half_even_to_six_places() -> None:
    assert str(PercentPayout(value=Decimal("33.3")).amount(Decimal("10.00"))) == "3.33"
    assert str(PercentPayout(value=Decimal("50")).amount(Decimal("0.1"))) == "0.05"
    assert str(FixedPayout(value=Decimal("12.5")).amount(Decimal("1000"))) == "12.50"
    # 28 significant digits would round this product; the payout is exact to the sixth place.
    big = PercentPayout(value=Decimal("33.333333333333333333333333333333"))
    assert str(big.amount(Decimal("999999999999.999999"))) == "333333333333.333333"
    assert str(PercentPayout(value=Decimal("1")).amount(Decimal("0.000250"))) == "0.000002"
    assert str(PercentPayout(value=Decimal("1")).amount(Decimal("0.000350"))) == "0.000004"


@pytest.mark.parametrize(("text", "zone", "expected"), [
    ("2026-01-31", "UTC", "2026-01-31T00:00:00+00:00"),
    ("2026-01-31 10:00:00", "PST", "2026-01-31T18:00:00+00:00"),
    ("2026-01-31 10:00:00", "EST", "2026-01-31T15:00:00+00:00"),
    ("2026-01-31 10:00:00", "CST", "2026-01-31T16:00:00+00:00"),
    ("2026-01-31 10:00:00", "MST", "2026-01-31T17:00:00+00:00"),
    ("2026-01-31 10:00:00", "AKST", "2026-01-31T19:00:00+00:00"),
    ("2026-01-31 10:00:00", "HST", "2026-01-31T20:00:00+00:00"),
    ("2026-01-31 10:00:00", "SST", "2026-01-31T21:00:00+00:00"),
    ("2026-01-31 10:00:00", "AST", "2026-01-31T14:00:00+00:00"),
    ("2026-01-31 20:00:00", "PST", "2026-02-01T04:00:00+00:00"),
])
def test_conversion_time_is_converted_to_utc(text: str, zone: str, expected: str) -> None:
    moment = conversion_time(text, TIMEZONES[zone])
    assert moment.tzinfo == dt.UTC
    assert moment.isoformat() == expected


@pytest.mark.parametrize("text", ["2026-1-31", "31/01/2026", "2026-01-31 25:00:00", "",
                                  "20260131", "2026-02-29", "2026-01-31 10:00"])
def test_bad_conversion_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        conversion_time(text, dt.UTC)


@pytest.mark.parametrize(("operation", "cost", "moved_by"), [
    ("add", "10", "10.00"), ("subtract", "2.5", "-2.50"), ("add", "-3", "-3.00"),
    ("subtract", "-3", "3.00"), ("override", "7", None), ("add", None, None),
])
def test_a_cost_change_carries_the_signed_amount_it_moves_the_cost_by(
    operation: str, cost: str | None, moved_by: str | None
) -> None:
    # PostgreSQL applies this amount to the cost it holds, under the lead's row lock.
    change = event(cost=None if cost is None else Decimal(cost), cost_operation=operation)
    assert _cost_delta(change) == moved_by
