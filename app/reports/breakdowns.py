"""The store's roll-ups by tracking field follow ``[reports] breakdowns``.

At start-up the store is brought to the config's fields before serving; a reload hands
the new list on and returns at once: the store counts a newly listed field from the rows
in the background, one transaction between two batches, and until it has, reports by
that field count the rows (exact either way: see storage/tag_rollups.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from storage.backend import EventStore
from storage.reports import TagKey

log = structlog.get_logger("app.reports")


class Breakdowns:
    """Keeps the store's tag roll-ups to the config in force; owns the task doing it."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._task: asyncio.Task[None] | None = None

    async def use(self, fields: Sequence[TagKey]) -> None:
        """Bring the store to ``fields`` now (after any change still running)."""
        await self.settled()
        await self._keep(list(fields))

    def follow(self, fields: Sequence[TagKey]) -> None:
        """Bring the store to ``fields`` in the background (a reload's new config)."""
        self._task = asyncio.get_running_loop().create_task(
            self._after(self._task, list(fields)), name="report-breakdowns")

    async def _after(self, before: asyncio.Task[None] | None, fields: list[TagKey]) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        try:
            await self._keep(fields)
        except Exception as exc:  # reports by the field keep counting the rows
            log.error("report_breakdowns_failed", fields=fields, error=repr(exc))

    async def _keep(self, fields: list[TagKey]) -> None:
        added, removed = await self._store.keep_breakdowns(fields)
        if added or removed:
            log.info("report_breakdowns_changed", added=added, removed=removed)

    async def settled(self) -> None:
        """Wait until the last change asked for is done (or has failed, logged)."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Stop waiting for a change still running: it is one transaction, so the store
        ends with the old fields kept or the new ones, never half of a field."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
