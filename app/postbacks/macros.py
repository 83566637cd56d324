"""Macro values and their substitution into postback URLs and bodies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import msgspec

from actors.messages import FireEvent
from storage.money import money_text

_MACRO = re.compile(r"\{(\w*)\}")
MONEY_MACROS = frozenset({"revenue", "payout", "adSpend", "min_price"})
_PLAIN = "f"  # a number without an exponent
_ENCODE_ALL = ""  # no character is safe: a value cannot add a path segment or a parameter
# Numbers are written out in full only up to this exponent; a lead stored before numbers
# were bounded could otherwise make one postback write out millions of digits.
_MAX_FIXED_EXPONENT = 64


def money_macro(value: Decimal | None) -> str:
    """Money as plain text with at least two decimals: 45 -> 45.00, 0.0125 -> 0.0125."""
    return money_text(value) or ""


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if abs(value.adjusted()) > _MAX_FIXED_EXPONENT or not value.is_finite():
            return str(value)
        return money_macro(value) if name in MONEY_MACROS else format(value, _PLAIN)
    return str(value)


def macro_values(
    event: FireEvent, lead_fields: Mapping[str, Any], conversion_id: str, fired_at: str,
    *, status: str, reason: str = "",
) -> dict[str, str]:
    """Every macro's value as text: the lead's fields, then the event's own, which win.

    ``status`` is the conversion's status the postback reports (empty for other events);
    ``reason`` is, for a postback sent as a conversion fires, why it is held (a hold
    reason code, empty when approved at once), and for one sent on a change of status,
    the reason given for that change.
    """
    values = {name: _text(name, value) for name, value in lead_fields.items()}
    values.update(
        cid=event.cid,
        pid=event.pid,
        event_id=event.event_id,
        transaction_id=event.transaction_id,
        conversion_id=conversion_id,
        revenue=money_macro(event.revenue),
        payout=money_macro(event.payout),
        conversion="1" if event.conversion else "0",
        fired_at=fired_at,
        status=status,
        reason=reason,
    )
    return values


def render_url(template: str, values: Mapping[str, str]) -> str:
    """Fill in the macros, percent-encoding each value whole.

    Nothing a value holds (``&``, ``=``, ``/``, ``?``, ``#``) can add a parameter or change
    the path; a macro with no value becomes empty.
    """
    return _MACRO.sub(lambda match: quote(values.get(match[1], ""), safe=_ENCODE_ALL), template)


def render_body(values: Mapping[str, str]) -> str:
    """The JSON object of every macro, for POST postbacks."""
    return msgspec.json.encode(dict(values)).decode()
