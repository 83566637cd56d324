"""``event-postback rates import``: the ECB's rate table as [[rates]] entries into the
report currency, cross rates via the euro, exact, with N/A days left out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from app.config.schema import parse_config
from app.serve.cli import main
from tests.test_currency_config import CAMPAIGN

# As eurofxref-hist.csv gives it: newest first, a trailing comma on every line.
ECB = """Date,USD,JPY,GBP,CYP,
2024-01-05,1.0921,158.38,0.86,N/A,
2024-01-04,1.0953,N/A,0.8635,N/A,
2024-01-03,N/A,157.56,0.8658,N/A,
"""


def imported(tmp_path: Path, capsys: pytest.CaptureFixture[str], report: str,
             *flags: str, table: str = ECB) -> tuple[int, str, str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[reports]\ncurrency = "{report}"\n' + CAMPAIGN)
    csv = tmp_path / "eurofxref-hist.csv"
    csv.write_text(table)
    code = main(["rates", "import", str(csv), "--config", str(config), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def entries(report: str, out: str) -> dict[tuple[str, str], Decimal]:
    """The printed entries, read back as the config reads them."""
    config = parse_config(f'[reports]\ncurrency = "{report}"\n' + CAMPAIGN + out, origin="t")
    return {(entry.currency, str(entry.since)): entry.rate for entry in config.rates}


def test_into_euros_each_rate_is_one_over_the_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = imported(tmp_path, capsys, "EUR")
    assert (code, err) == (0, "")
    assert entries("EUR", out) == {
        ("GBP", "2024-01-03"): Decimal("1.15500115500"),
        ("JPY", "2024-01-03"): Decimal("0.00634678852501"),
        ("GBP", "2024-01-04"): Decimal("1.1580775912"),
        ("USD", "2024-01-04"): Decimal("0.912991874372"),
        ("GBP", "2024-01-05"): Decimal("1.16279069767"),
        ("JPY", "2024-01-05"): Decimal("0.00631392852633"),
        ("USD", "2024-01-05"): Decimal("0.915667063456"),
    }
    # Oldest first, plain text the config takes exactly.
    assert out.startswith("# [[rates]] into EUR from eurofxref-hist.csv")
    assert '[[rates]]\ncurrency = "GBP"\nrate = "1.155001155"\nfrom = 2024-01-03\n' in out


def test_into_another_currency_rates_cross_via_the_euro(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = imported(tmp_path, capsys, "USD")
    assert code == 0
    assert entries("USD", out) == {
        # No USD rate on the 3rd: no entry that day, the 2nd's stay in force.
        ("EUR", "2024-01-04"): Decimal("1.0953"),
        ("GBP", "2024-01-04"): Decimal("1.26844238564"),  # 1.0953 / 0.8635
        ("EUR", "2024-01-05"): Decimal("1.0921"),
        ("GBP", "2024-01-05"): Decimal("1.26988372093"),  # 1.0921 / 0.86
        ("JPY", "2024-01-05"): Decimal("0.00689544134360"),  # 1.0921 / 158.38
    }


def test_the_days_and_currencies_can_be_narrowed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = imported(tmp_path, capsys, "USD", "--since", "2024-01-05",
                            "--currency", "EUR", "--currency", "JPY")
    assert code == 0
    assert set(entries("USD", out)) == {("EUR", "2024-01-05"), ("JPY", "2024-01-05")}


def test_the_daily_file_reads_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daily = "Date, USD, JPY, \n05 January 2024, 1.0921, 158.38, \n"
    code, out, _ = imported(tmp_path, capsys, "EUR", table=daily)
    assert code == 0
    assert entries("EUR", out) == {("USD", "2024-01-05"): Decimal("0.915667063456"),
                                   ("JPY", "2024-01-05"): Decimal("0.00631392852633")}
    assert dt.date(2024, 1, 5).isoformat() in out


@pytest.mark.parametrize(("table", "report", "flags", "line"), [
    ("When,USD\n2024-01-05,1.09\n", "EUR", (),
     "expected a CSV whose first column is Date"),
    ("Date,US Dollar\n2024-01-05,1.09\n", "EUR", (), "column 'US Dollar' is not a currency"),
    ("Date,USD\n5/1/2024,1.09\n", "EUR", (), "line 2: '5/1/2024' is not a date"),
    ("Date,USD\n2024-01-05,-1.09\n", "EUR", (), "line 2: USD: '-1.09' is not a rate"),
    ("Date,USD\n2024-01-05,abc\n", "EUR", (), "line 2: USD: 'abc' is not a rate"),
    ("Date,USD\n2024-01-05,1.09\n2024-01-05,1.1\n", "EUR", (),
     "line 3: 2024-01-05 is listed twice"),
    (ECB, "USD", ("--currency", "usd"), "--currency usd: expected a currency code"),
])
def test_a_table_it_cannot_read_exits_2_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, report: str,
        flags: tuple[str, ...], line: str) -> None:
    code, out, err = imported(tmp_path, capsys, report, *flags, table=table)
    assert (code, out) == (2, "")
    assert line in err
    assert err.count("\n") == 1


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rates", "import", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: cannot read" in capsys.readouterr().err
