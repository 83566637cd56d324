"""Reports are computed in processes of their own, at a lower CPU priority.

A month's report is ~20 ms of CPU, most of it Python (folding the SQL's rows into
figures). In a thread of the serving process it holds the interpreter that the event
path needs: with two reports at a time the events' p99 went from 13 ms to 120 ms. In a
process of its own it shares nothing with the event loop but the machine, and a niced
process yields the CPU to the event path whenever both want it. The processes start at
the first report (one per ``max_concurrent_reports``) and live as long as the app.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import structlog

from app.edge import errors

T = TypeVar("T")

log = structlog.get_logger()

# How much lower than the server the report processes run (nice(1): 0 to 19).
NICENESS = 10


def _lower_priority() -> None:
    os.nice(NICENESS)


class ReportProcesses:
    """A pool of report processes, started when first needed; one per app."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a report process (both picklable: module-level functions)."""
        if self._pool is None:
            # Spawned, not forked: a fork of a serving process would copy its threads'
            # locks and its event loop mid-flight.
            self._pool = ProcessPoolExecutor(
                self.size, mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority)
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, func, *args)
        except BrokenProcessPool:
            # A report process died (killed, out of memory): the next report starts a
            # new pool; this one is told to retry.
            log.warning("report_process_died")
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise errors.busy() from None

    def resize(self, size: int) -> None:
        """Use ``size`` processes from the next report on (a reload changed the bound)."""
        if size != self.size:
            self.size = size
            self.close()

    def close(self) -> None:
        """Stop the processes; reports running now finish first, in the background."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
