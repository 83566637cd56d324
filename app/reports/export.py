"""A report as CSV (the download and ``event-postback report --csv``) or a text table.

The columns are the JSON figures, in the same order, except that a ratio is shown as a
percentage to 2 decimals in a column named for it with ``_pct`` (``conversion_rate_pct``:
``47.20`` where the JSON has ``"0.4720"``), as a spreadsheet reader expects. The new name
makes a script that read the ratio fail loudly rather than read a percentage as one.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from app.reports.figures import FIGURES, RATIOS, Report

COLUMNS = tuple(f"{name}_pct" if name in RATIOS else name for name in FIGURES)


def _cells(report: Report) -> list[list[str]]:
    """Header, one line per row, the totals last (named in the first key column)."""
    lines = [[*report.group_by, *COLUMNS]]
    for row in report.rows:
        lines.append([*(_cell(row[name]) for name in report.group_by), *_figures(row)])
    keys = ["totals", *[""] * (len(report.group_by) - 1)]
    lines.append([*keys, *_figures(report.totals)])
    return lines


def _figures(row: dict[str, Any]) -> list[str]:
    return [_percent(row[name]) if name in RATIOS else _cell(row[name]) for name in FIGURES]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _percent(ratio: str | None) -> str:
    # A ratio has 4 decimals: times 100 it has exactly 2, no rounding.
    return "" if ratio is None else format(Decimal(ratio).scaleb(2), "f")


def to_csv(report: Report) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(_cells(report))
    return out.getvalue()


def to_table(report: Report) -> str:
    """Aligned columns for a terminal: keys to the left, figures to the right."""
    lines = _cells(report)
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    keys = len(report.group_by)
    return "\n".join(
        "  ".join(cell.ljust(width) if column < keys else cell.rjust(width)
                  for column, (cell, width) in enumerate(zip(line, widths, strict=True)))
        .rstrip()
        for line in lines) + "\n"
