"""Money as the service keeps it: exact decimals, bounded, six decimal places, plain text.

Every amount a client sends is read here before any arithmetic, so no number can make
the service format or compute with millions of digits: its size is checked on the
exponent, which costs nothing, and only then is it rounded.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal

MAX_MONEY = Decimal(10) ** 12
PLACES = 6
_QUANTUM = Decimal(1).scaleb(-PLACES)
_CENTS = Decimal("0.01")
_ZERO = Decimal("0.00")
# Wide enough for any product of two bounded amounts, so payouts are computed exactly.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)
# ASCII digits only: Python's Decimal would also read Arabic-Indic or fullwidth digits.
_NUMBER = re.compile(
    r"(?P<significand>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE](?P<exponent>[+-]?[0-9]+))?")
# Decimal refuses exponents near 10**18. Past this one a number is, for every bound and
# rounding here, simply huge or simply zero, whatever its digits (bodies are far shorter).
_EXPONENT_CLAMP = 10**12
_BLANKS = " \t\n\r\f\v"
_RANGE = f"Expected a finite number >= 0 and <= {MAX_MONEY:f}"


class MoneyError(ValueError):
    """A value that cannot be an amount of money; the message says what was expected."""


def parse_money(value: object) -> Decimal:
    """An amount from a JSON number or numeric text: 0 <= x <= 10^12, rounded to 6 places."""
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        amount = decimal_from_text(value.strip(_BLANKS))
    else:
        raise MoneyError("Expected a number")
    if not amount.is_finite() or amount < 0 or amount > MAX_MONEY:
        raise MoneyError(_RANGE)
    return round_money(amount)


def decimal_from_text(text: str) -> Decimal:
    """Numeric text in ASCII digits (a JSON number, say) as an exact Decimal.

    An exponent too long for Decimal is clamped: 1e-9999999999999999999 reads as a number
    too small to be anything but zero once rounded, as 1e-300000000 does.
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise MoneyError("Expected a number")
    significand, exponent = match["significand"], match["exponent"]
    if exponent is None:
        return Decimal(significand)
    # Compared as text first: int() refuses digit strings past 4300 characters.
    digits = exponent.lstrip("+-").lstrip("0")
    if len(digits) > len(str(_EXPONENT_CLAMP)) or int(digits or 0) > _EXPONENT_CLAMP:
        exponent = ("-" if exponent.startswith("-") else "") + str(_EXPONENT_CLAMP)
    return Decimal(f"{significand}e{exponent}")


def round_money(amount: Decimal) -> Decimal:
    """Half-even to six places, then no trailing zeros past the cents; -0 becomes 0.

    The result always prints as plain fixed-point text: 45 -> 45.00, 1E+3 -> 1000.00,
    0.01250 -> 0.0125.
    """
    rounded = _EXACT.quantize(amount, _QUANTUM)
    if rounded.is_zero():
        return _ZERO
    trimmed = _EXACT.normalize(rounded)
    # `>= -2` would do the same: quantizing two decimals to cents changes nothing.
    if trimmed.as_tuple().exponent > -2:  # type: ignore[operator]  # pragma: no mutate
        trimmed = _EXACT.quantize(trimmed, _CENTS)
    return trimmed


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``percent`` % of ``amount``, computed exactly and then rounded like any amount."""
    return round_money(_EXACT.divide(_EXACT.multiply(amount, percent), Decimal(100)))


def money_text(amount: Decimal | None) -> str | None:
    """Plain fixed-point text with at least two decimals (None stays None)."""
    return None if amount is None else str(round_money(amount))


def micro(amount: Decimal) -> int:
    """The amount in millionths, exact: stored beside the text so SQL sums stay integers.

    SQLite's ``sum()`` over decimal text goes through floating point; over these it
    does not.
    """
    return int(round_money(amount).scaleb(PLACES))


def from_micro(units: int) -> Decimal:
    """An amount from its millionths, in canonical form."""
    return round_money(Decimal(units).scaleb(-PLACES))


def money_value(text: str | None) -> Decimal | None:
    """An amount as stored, in its canonical form."""
    return None if text is None else round_money(Decimal(text))
