"""The PostgreSQL store: the same interface as SQLite's, for any number of processes.

The database decides what one process's memory cannot: lock windows (WindowClaimer) and
the duplicate rule (a unique index). Writes are group-committed by the same queue as on
SQLite; every answer waits for its commit, as the database must decide before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.backend import Unsupported, WindowClaims
from storage.batched import BatchedStore
from storage.errors import StoreBusy, StoreClosed
from storage.loader import BatchLoader
from storage.postgres import lead_keys, queries, reports
from storage.postgres.schema import migrate
from storage.postgres.windows import WindowClaimer
from storage.postgres.writer import PostgresWriter
from storage.records import (
    AnswerRow,
    ConversionCounts,
    ConversionView,
    DuePostback,
    HostLoad,
    PostbackStatus,
    PostbackView,
    TransactionView,
    WriteOp,
)
from storage.reports import RawFigures, ReportRows, ReportSpan


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class PostgresStore(BatchedStore[PostgresWriter]):
    """``lease_seconds``: how long a due postback handed to this process's dispatcher stays
    its own; past it (the process died mid-delivery) another process sends it again.
    ``db_clock``: None when serving, the database's clock; tests give their fake clock, so
    windows and leases run out without waiting (see WindowClaimer).
    """

    def __init__(self, url: str, *, max_pending: int = 10_000, write_timeout: float = 5.0,
                 pool_size: int = 10, lease_seconds: float = 60.0,
                 db_clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(write_timeout=write_timeout)
        self.url = url
        self.lease_seconds = lease_seconds
        self._db_clock = db_clock
        self._max_pending = max_pending
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._windows: WindowClaimer | None = None

    @property
    def location(self) -> str:
        return without_password(self.url)

    def claim(self) -> None:
        """Nothing to take: any number of processes serve one PostgreSQL database."""

    async def open(self) -> None:
        pool = self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self._pool_size)
        async with pool.acquire() as conn:
            await migrate(conn)
        self._loader = BatchLoader(partial(queries.load, pool))
        self._loader.start()
        self._windows = WindowClaimer(pool, clock=self._db_clock)
        self._windows.start()
        self._writer = PostgresWriter(pool, max_pending=self._max_pending, gather_seconds=0.0,
                                      on_commit=self._committed, db_clock=self._db_clock)
        self._writer.start()

    async def close(self) -> None:
        await self._close_queues()
        if self._windows is not None:
            await self._windows.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def windows(self) -> WindowClaims | None:
        return self._windows

    async def healthy(self, timeout: float = 2.0) -> bool:
        """True when the database answers and the writer is not failing."""
        if self._writer is None or self._writer.failing or self._pool is None:
            return False
        try:
            await asyncio.wait_for(self._pool.fetchval("SELECT 1"), timeout)
        except Exception:
            return False
        return True

    def backup_target(self, moment: datetime) -> Path:
        raise Unsupported("Backups of a PostgreSQL database are taken with pg_dump")

    async def backup(self, target: Path, *, keep: int | None = None) -> int:
        raise Unsupported("Backups of a PostgreSQL database are taken with pg_dump")

    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def transaction_view(self, transaction_id: str) -> TransactionView | None:
        return await queries.transaction_view(self._db(), transaction_id)

    async def lead_fields(self, transaction_id: str) -> dict[str, Any]:
        return await queries.lead_fields(self._db(), transaction_id)

    async def first_lead_sharing(self, cid: str, transaction_id: str,
                                 digests: tuple[str, ...], days: int, *,
                                 new_at: str) -> str | None:
        return await lead_keys.first_lead_sharing(self._db(), cid, transaction_id, digests,
                                                  days, new_at)

    async def claim_answer(self, key: str, fingerprint: str, now: str,
                           until: str) -> AnswerRow | None:
        return await queries.claim_answer(self._db(), key, fingerprint, now, until)

    def release_answer(self, key: str) -> None:
        # Queued like any write, so it commits after the reservation it undoes; a store
        # that is closing leaves the reservation to run out.
        with contextlib.suppress(StoreBusy, StoreClosed):
            self.writer.submit(WriteOp(released_key=key), bounded=False)

    async def due_postbacks(self, now: str, *, limit: int, skip_ids: list[int],
                            hosts: HostLoad) -> list[DuePostback]:
        """Due postbacks, each leased to this process (see lease_seconds)."""
        return await queries.lease_due_postbacks(
            self._db(), now, limit=limit, skip_ids=skip_ids, hosts=hosts,
            lease_seconds=self.lease_seconds, db_now=self._db_now())

    async def next_postback_due_at(self, skip_ids: list[int],
                                   skip_hosts: list[str]) -> str | None:
        return await queries.next_postback_due_at(self._db(), skip_ids, skip_hosts,
                                                  self._db_now())

    def _db_now(self) -> datetime | None:
        return None if self._db_clock is None else self._db_clock()

    async def postbacks(self, *, status: PostbackStatus | None, cid: str | None,
                        limit: int) -> list[PostbackView]:
        return await queries.postbacks(self._db(), status=status, cid=cid, limit=limit)

    async def postback(self, postback_id: int) -> PostbackView | None:
        return await queries.postback(self._db(), postback_id)

    async def postback_counts(self) -> dict[PostbackStatus, int]:
        return await queries.postback_counts(self._db())

    async def conversions(self, **filters: Any) -> list[tuple[int, ConversionView]]:
        return await queries.conversions(self._db(), **filters)

    async def conversion(self, conversion_id: str) -> ConversionView | None:
        return await queries.conversion(self._db(), conversion_id)

    async def conversion_statuses(self, conversion_ids: list[str]) -> dict[str, ConversionView]:
        return await queries.conversion_statuses(self._db(), conversion_ids)

    async def conversion_counts(self) -> ConversionCounts:
        return await queries.conversion_counts(self._db())

    async def report_figures(self, span: ReportSpan) -> RawFigures:
        async with self._db().acquire() as conn:
            return await reports.report_figures(conn, span)

    async def report_rows(self, span: ReportSpan) -> ReportRows:
        async with self._db().acquire() as conn:
            return await reports.report_rows(conn, span)
