"""``rates import``: a published rate table as ``[[rates]]`` entries for the config.

The table is the ECB's reference rates CSV (eurofxref-hist.csv, or the daily
eurofxref.csv): a Date column, then one column per currency, each cell that currency's
units per one euro. The entries printed are into the configured report currency: for EUR
one over the cell, for another (a column of the table) its cell over the currency's, each
cross rate rounded half-even to 12 significant digits, exactly in Decimal. A cell of "N/A"
or nothing has no rate that day, and the day's earlier one stays in force. Nothing is
fetched: the operator downloads the file and appends what this prints to the config.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from app.config.rates import CURRENCY, MAX_RATE, MIN_RATE
from app.config.schema import demo_config, load_config
from app.serve import exits
from app.serve.exits import Refusal

BASE = "EUR"
# As many digits as the table's own rates carry and more: a cross rate's rounding moves a
# converted amount by far less than a cent.
_CROSS = Context(prec=12, rounding=ROUND_HALF_EVEN)
_NO_RATE = frozenset({"", "N/A"})
# Only drops trailing zeros: wide enough for any rate the table gives as it is.
_PLAIN = Context(prec=100)


def add_rates_parser(commands: Any) -> None:
    rates = commands.add_parser(
        "rates", help="turn a published rate table into [[rates]] config entries",
        description="Rates into the report currency, for amounts events send in another.")
    actions = rates.add_subparsers(dest="action", required=True)
    load = actions.add_parser(
        "import", help="print a rate table CSV as [[rates]] entries",
        description="Read the ECB's reference rates CSV (eurofxref-hist.csv: a Date "
                    "column, then units of each currency per one euro) and print the "
                    "[[rates]] entries into the config's [reports] currency, cross rates "
                    "via the euro, to append to the config. Nothing is fetched.")
    load.add_argument("file", metavar="FILE", type=Path, help="the rate table, CSV")
    load.add_argument("--config", metavar="FILE",
                      help="TOML configuration file whose [reports] currency the rates go "
                           "into (default: the built-in demo config)")
    load.add_argument("--since", metavar="DAY", type=dt.date.fromisoformat,
                      help="only the days from this one on, YYYY-MM-DD")
    load.add_argument("--currency", action="append", metavar="CODE",
                      help="only this currency (repeatable; default: every column)")


def run_rates_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the entries on ``out`` (stdout); raises Refusal for a table it cannot read."""
    config = load_config(args.config) if args.config else demo_config()
    report = config.reports.currency
    wanted = set(args.currency or ())
    for code in sorted(wanted):
        if not CURRENCY.fullmatch(code) or code == report:
            raise Refusal(f"--currency {code}: expected a currency code other than the "
                          f"report currency {report}", exits.USAGE)
    entries = sorted(
        (day, code, rate) for day, code, rate in _cross_rates(args.file, report)
        if (args.since is None or day >= args.since) and (not wanted or code in wanted))
    write = (out or sys.stdout).write
    write(f"# [[rates]] into {report} from {args.file.name}, per one unit of each currency\n")
    for day, code, rate in entries:
        write(f'\n[[rates]]\ncurrency = "{code}"\nrate = "{rate:f}"\nfrom = {day}\n')
    return exits.OK


def _cross_rates(path: Path, report: str) -> Iterator[tuple[dt.date, str, Decimal]]:
    """Each (day, currency, report-currency units per one of it) the table gives."""
    for line, day, cells in _rows(path):
        if report == BASE:
            per_euro = Decimal(1)
        elif report in cells:
            per_euro = cells[report]
        else:
            continue  # no report-currency rate that day: no cross rate either
        if report != BASE:
            yield day, BASE, _checked(per_euro, path, line, BASE)
        for code, units in cells.items():
            if code != report:
                yield day, code, _checked(_CROSS.divide(per_euro, units), path, line, code)


def _rows(path: Path) -> Iterator[tuple[int, dt.date, dict[str, Decimal]]]:
    """Each row's line number, day, and the rates it has (units per one euro)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [name.strip() for name in next(reader, [])]
            if not header or header[0] != "Date":
                raise Refusal(f"{path}: expected a CSV whose first column is Date, then "
                              "one column per currency (the ECB's eurofxref-hist.csv)",
                              exits.USAGE)
            for code in header[1:]:
                if code and not CURRENCY.fullmatch(code):
                    raise Refusal(f"{path}: column {code!r} is not a currency code",
                                  exits.USAGE)
            seen: set[dt.date] = set()
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                day = _day(row[0].strip(), path, line)
                if day in seen:
                    raise Refusal(f"{path}: line {line}: {day} is listed twice", exits.USAGE)
                seen.add(day)
                yield line, day, {
                    code: _rate(cell.strip(), path, line, code)
                    for code, cell in zip(header[1:], row[1:], strict=False)
                    if code and cell.strip() not in _NO_RATE}
    except OSError as exc:
        raise Refusal(f"{path}: cannot read: {exc.strerror or exc}", exits.USAGE) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise Refusal(f"{path}: not a CSV file: {exc}", exits.USAGE) from None


def _day(text: str, path: Path, line: int) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:  # the daily eurofxref.csv writes "05 January 2024"
        return dt.datetime.strptime(text, "%d %B %Y").date()
    except ValueError:
        raise Refusal(f"{path}: line {line}: {text!r} is not a date", exits.USAGE) from None


def _rate(text: str, path: Path, line: int, code: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        rate = Decimal(0)
    if not rate.is_finite() or rate <= 0:
        raise Refusal(f"{path}: line {line}: {code}: {text!r} is not a rate", exits.USAGE)
    return rate


def _checked(rate: Decimal, path: Path, line: int, code: str) -> Decimal:
    """The rate in plain form, if the config would take it."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise Refusal(f"{path}: line {line}: {code}: a rate of {rate} is outside what a "
                      f"config takes ({MIN_RATE:f} to {MAX_RATE:f})", exits.USAGE)
    return _PLAIN.normalize(rate)
