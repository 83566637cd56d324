"""A report as CSV (the download and ``event-postback report --csv``) or a text table."""

from __future__ import annotations

import csv
import io
from typing import Any

from app.reports.figures import FIGURES, Report


def _cells(report: Report) -> list[list[str]]:
    """Header, one line per row, the totals last (named in the first key column)."""
    lines = [[*report.group_by, *FIGURES]]
    for row in report.rows:
        lines.append([_cell(row[name]) for name in (*report.group_by, *FIGURES)])
    keys = ["totals", *[""] * (len(report.group_by) - 1)]
    lines.append([*keys, *(_cell(report.totals[name]) for name in FIGURES)])
    return lines


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


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
