"""A report from the store: the SQL's raw counts, folded by the report rules."""

from __future__ import annotations

from app.reports.figures import Report, build
from app.reports.params import ReportParams
from app.reports.period import span_of
from storage.backend import EventStore


async def report(store: EventStore, params: ReportParams) -> Report:
    """The report of ``params`` over what the store has committed."""
    return build(params, await store.report_figures(span_of(params)))
