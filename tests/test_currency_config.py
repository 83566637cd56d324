"""The report currency and the ``[[rates]]`` timeline: what loads, each diagnosis, and the
rate in force on a day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.config.rates import RateTable
from app.config.schema import ConfigError, parse_config

CAMPAIGN = '[[campaigns]]\ncid = "c"\n'


def rates(*entries: tuple[str, str, str], currency: str | None = None) -> str:
    text = "" if currency is None else f'[reports]\ncurrency = "{currency}"\n'
    for code, rate, since in entries:
        text += f'[[rates]]\ncurrency = "{code}"\nrate = {rate}\nfrom = {since}\n'
    return text + CAMPAIGN


def test_the_report_currency_is_usd_unless_configured() -> None:
    assert parse_config(CAMPAIGN, origin="t").reports.currency == "USD"
    config = parse_config(rates(("USD", '"0.9231"', "2024-01-02"), currency="EUR"),
                          origin="t")
    assert config.reports.currency == "EUR"
    [entry] = config.rates
    assert (entry.currency, entry.rate, entry.since) == (
        "USD", Decimal("0.9231"), dt.date(2024, 1, 2))


def test_a_rate_written_as_a_toml_number_keeps_its_decimal_digits() -> None:
    [entry] = parse_config(rates(("EUR", "1.0825", "2024-01-02")), origin="t").rates
    assert entry.rate == Decimal("1.0825")


@pytest.mark.parametrize(("text", "diagnosis"), [
    (rates(currency="usd"),
     "t: reports.currency: Expected a currency code of three capital letters (ISO 4217)"),
    (rates(("EURO", "1", "2024-01-01")), "t: rates[0].currency: Expected a currency code"),
    (rates(("USD", "1", "2024-01-01")),
     "t: rates[0].currency: USD is the report currency ([reports] currency)"),
    (rates(("GBP", "1.2", "2024-01-01"), ("EUR", "0", "2024-01-01")),
     "t: rates[1].rate: must be a number from 0.000000000001 to 1000000000 (USD per one EUR)"),
    (rates(("EUR", "-1", "2024-01-01")), "t: rates[0].rate: must be a number from"),
    (rates(("EUR", '"NaN"', "2024-01-01")), "t: rates[0].rate: must be a number from"),
    (rates(("EUR", "1e10", "2024-01-01")), "t: rates[0].rate: must be a number from"),
    (rates(("EUR", "1.1", "2024-01-01"), ("EUR", "1.2", "2024-01-01")),
     "t: rates[1].from: EUR already has a rate from 2024-01-01 (rates[0])"),
    (rates(("EUR", "1.1", '"yesterday"')), "t: rates[0].from: Expected `date`"),
    ('[[rates]]\ncurrency = "EUR"\nrate = 1\n' + CAMPAIGN,
     "t: rates[0]: Object missing required field `from`"),
    ('[[rates]]\ncurrency = "EUR"\nrate = 1\nfrom = 2024-01-01\nto = 2024-02-01\n' + CAMPAIGN,
     "t: rates[0]: Object contains unknown field `to`"),
])
def test_each_mistake_is_one_line_naming_the_place(text: str, diagnosis: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="t")
    assert diagnosis in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_rate_in_force_is_the_latest_from_on_or_before_the_day() -> None:
    config = parse_config(rates(("EUR", '"1.10"', "2024-03-01"), ("EUR", '"1.05"', "2024-01-01"),
                                ("GBP", '"1.25"', "2024-02-01")), origin="t")
    table = RateTable(config.reports.currency, config.rates)
    day = dt.date.fromisoformat
    assert table.rate("EUR", day("2023-12-31")) is None
    assert table.rate("EUR", day("2024-01-01")) == Decimal("1.05")
    assert table.rate("EUR", day("2024-02-29")) == Decimal("1.05")
    assert table.rate("EUR", day("2024-03-01")) == Decimal("1.10")
    assert table.rate("EUR", day("2030-01-01")) == Decimal("1.10")
    assert table.rate("GBP", day("2024-01-15")) is None
    assert table.rate("JPY", day("2024-05-01")) is None
    assert table.problem("USD", day("1999-01-01")) is None
    assert table.problem("EUR", day("2024-01-01")) is None
    assert table.problem("EUR", day("2023-12-31")) == (
        "Expected a currency with a rate in force on 2023-12-31 (EUR: from 2024-01-01)")
    assert table.problem("JPY", day("2024-05-01")) == (
        "Expected USD or a currency with a rate in the config's [[rates]]")
