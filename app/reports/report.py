"""A report from the store: the SQL's raw counts, folded by the report rules."""

from __future__ import annotations

from app.reports.figures import Report, build
from app.reports.params import ReportParams
from app.reports.period import span_of
from app.reports.processes import ReportProcesses
from storage.backend import EventStore
from storage.reports import ReportRows, fold


def fold_and_build(params: ReportParams, rows: ReportRows) -> Report:
    """Everything of a report after its SQL: pure Python, run in a report process."""
    return build(params, fold(span_of(params), rows))


async def report(store: EventStore, params: ReportParams,
                 processes: ReportProcesses | None = None) -> Report:
    """The report of ``params`` over what the store has committed.

    With ``processes``, only the SQL runs in this process (in a thread, or on
    PostgreSQL); the folding of its rows into figures runs there.
    """
    if processes is None:
        return build(params, await store.report_figures(span_of(params)))
    rows = await store.report_rows(span_of(params))
    return await processes.run(fold_and_build, params, rows)
