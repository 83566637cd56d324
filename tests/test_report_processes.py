"""Reports are folded in processes of their own, at a lower priority than the server."""

from __future__ import annotations

import os

import pytest

from app.edge.errors import ApiError
from app.reports.processes import NICENESS, ReportProcesses
from tests.conftest import ADMIN_TOKEN, Harness

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_the_work_runs_in_another_process_at_a_lower_priority() -> None:
    processes = ReportProcesses(1)
    try:
        assert await processes.run(os.getpid) != os.getpid()
        assert await processes.run(os.nice, 0) == min(19, os.nice(0) + NICENESS)
    finally:
        processes.close()


async def test_a_report_process_that_dies_is_a_503_and_the_next_report_runs() -> None:
    processes = ReportProcesses(1)
    try:
        with pytest.raises(ApiError) as refused:
            await processes.run(os._exit, 9)
        assert (refused.value.status, refused.value.message) == (503, "Server busy")
        assert await processes.run(os.getpid) != os.getpid()
    finally:
        processes.close()


async def test_a_served_report_is_folded_in_a_report_process(
        api: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    processes = api.services.report_processes
    real = processes.run

    async def run(func: object, *args: object) -> object:
        ran.append(getattr(func, "__name__", ""))
        return await real(func, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "run", run)
    answer = await api.client.get("/api/reports", headers=AUTH,
                                  params={"from": "2026-11-01", "to": "2026-11-30"})
    assert answer.status_code == 200
    assert ran == ["fold_and_build"]
