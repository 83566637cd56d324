"""How every kind of lead value writes out in a postback macro."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from actors.messages import FireEvent
from app.postbacks.macros import macro_values

NON_CONVERSION = FireEvent(transaction_id="t", cid="c", event_id="e", pid="p",
                           conversion=False, once=True)


def text_of(name: str, value: Any) -> str:
    return macro_values(NON_CONVERSION, {name: value}, "", "2026-01-01T00:00:00.000000Z",
                        status="")[name]


@pytest.mark.parametrize(("name", "value", "text"), [
    ("sub1", None, ""),
    ("vip", True, "true"),
    ("vip", False, "false"),
    ("age", 37, "37"),
    ("sub1", "as sent", "as sent"),
    # Numbers that are not money are written in full, never in E notation.
    ("score", Decimal("1E+3"), "1000"),
    ("score", Decimal("4.50"), "4.50"),
    ("score", Decimal("1E+64"), "1" + "0" * 64),
    ("score", Decimal("1E-64"), "0." + "0" * 63 + "1"),
    # Past that, a number stored before numbers were bounded stays short.
    ("score", Decimal("1E+65"), "1E+65"),
    ("min_price", Decimal("7"), "7.00"),
])
def test_a_lead_value_as_macro_text(name: str, value: Any, text: str) -> None:
    assert text_of(name, value) == text


def test_a_non_conversion_has_no_revenue_payout_or_conversion() -> None:
    values = macro_values(NON_CONVERSION, {}, "", "2026-01-01T00:00:00.000000Z", status="")
    assert (values["revenue"], values["payout"], values["conversion"],
            values["conversion_id"]) == ("", "", "0", "")
