"""The PostgreSQL store: the same interface as SQLite's, for any number of processes.

The database decides what one process's memory cannot: lock windows (WindowClaimer) and
the duplicate rule (a unique index). Writes are group-committed by the same queue as on
SQLite; every answer waits for its commit, as the database must decide before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.backend import Unsupported, WindowClaims
from storage.batched import BatchedStore
from storage.catalog import CatalogVersionInfo, CatalogVersionRow
from storage.endpoints import EndpointHealth
from storage.errors import StoreBusy, StoreClosed, StoreUnavailable
from storage.loader import BatchLoader
from storage.pacing import Slot
from storage.postgres import (
    caps,
    catalog,
    endpoints,
    lead_keys,
    queries,
    reports,
    tag_rollups,
)
from storage.postgres.bounded import CONNECTION_ERRORS, acquire_within, within
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
    StoredTransaction,
    TransactionView,
    WriteOp,
)
from storage.reports import RawFigures, ReportRows, ReportSpan, TagKey

P = ParamSpec("P")
T = TypeVar("T")


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
        # A connection that cannot be made within the write timeout fails the request
        # that needed it (503) rather than holding it.
        # A process frozen (SIGSTOP, a stalled VM) inside a transaction would hold its row
        # locks, the roll-ups' among them, and so every other node's writes, for as long as
        # it stays frozen: PostgreSQL ends such a session once it has been idle in its
        # transaction for the write timeout; its batch rolls back and is retried whole.
        idle_ms = max(1000, int(self.write_timeout * 1000))
        pool = self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self._pool_size, timeout=self.write_timeout,
            server_settings={"idle_in_transaction_session_timeout": str(idle_ms)})
        async with pool.acquire() as conn:
            await migrate(conn)
        self._loader = BatchLoader(self._load)
        self._loader.start()
        self._windows = WindowClaimer(pool, clock=self._db_clock, timeout=self.write_timeout)
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
            # However the database fails: refused, reset, hung (the timeout).
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

    async def _load(self, ids: list[str]) -> dict[str, StoredTransaction]:
        return await self._read(queries.load, ids)

    async def _read(self, query: Callable[Concatenate[asyncpg.Pool, P], Awaitable[T]],
                    *args: P.args, **kwargs: P.kwargs) -> T:
        """``query`` on the pool, within the write timeout; StoreUnavailable if not."""
        return await within(self.write_timeout, query(self._db(), *args, **kwargs))

    async def transaction_view(self, transaction_id: str) -> TransactionView | None:
        return await self._read(queries.transaction_view, transaction_id)

    async def lead_fields(self, transaction_id: str) -> dict[str, Any]:
        return await self._read(queries.lead_fields, transaction_id)

    async def first_lead_sharing(self, cid: str, transaction_id: str,
                                 digests: tuple[str, ...], days: int, *,
                                 new_at: str) -> str | None:
        return await self._read(lead_keys.first_lead_sharing, cid, transaction_id, digests,
                                days, new_at)

    async def claim_answer(self, key: str, fingerprint: str, now: str,
                           until: str) -> AnswerRow | None:
        return await self._read(queries.claim_answer, key, fingerprint, now, until)

    def release_answer(self, key: str) -> None:
        # Queued like any write, so it commits after the reservation it undoes; a store
        # that is closing leaves the reservation to run out.
        with contextlib.suppress(StoreBusy, StoreClosed):
            self.writer.submit(WriteOp(released_key=key), bounded=False)

    async def due_postbacks(self, now: str, *, limit: int, skip_ids: list[int],
                            hosts: HostLoad) -> list[DuePostback]:
        """Due postbacks, each leased to this process (see lease_seconds)."""
        return await self._read(queries.lease_due_postbacks, now, limit=limit,
                                skip_ids=skip_ids, hosts=hosts,
                                lease_seconds=self.lease_seconds, db_now=self._db_now())

    async def next_postback_due_at(self, skip_ids: list[int],
                                   skip_hosts: list[str]) -> str | None:
        return await self._read(queries.next_postback_due_at, skip_ids, skip_hosts,
                                self._db_now())

    def _db_now(self) -> datetime | None:
        return None if self._db_clock is None else self._db_clock()

    async def postbacks(self, *, status: PostbackStatus | None, cid: str | None,
                        limit: int, source: str | None = None) -> list[PostbackView]:
        return await self._read(queries.postbacks, status=status, cid=cid, limit=limit,
                                source=source)

    async def postback(self, postback_id: int) -> PostbackView | None:
        return await self._read(queries.postback, postback_id)

    async def postback_counts(self) -> dict[PostbackStatus, int]:
        return await self._read(queries.postback_counts)

    async def take_send_slot(self, host: str, now: datetime, interval: float,
                             horizon: float) -> Slot:
        return await self._read(queries.take_send_slot, host, now, interval, horizon)

    async def endpoint_health(self, configured: list[str], since: str, *,
                              counts: bool = True) -> list[EndpointHealth]:
        return await self._read(endpoints.health, configured, since, counts=counts)

    async def conversions(self, **filters: Any) -> list[tuple[int, ConversionView]]:
        return await self._read(queries.conversions, **filters)

    async def conversion(self, conversion_id: str) -> ConversionView | None:
        return await self._read(queries.conversion, conversion_id)

    async def conversion_statuses(self, conversion_ids: list[str]) -> dict[str, ConversionView]:
        return await self._read(queries.conversion_statuses, conversion_ids)

    async def conversion_counts(self) -> ConversionCounts:
        return await self._read(queries.conversion_counts)

    async def cap_usage(
            self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return await self._read(caps.usage, wanted)

    async def report_figures(self, span: ReportSpan) -> RawFigures:
        async with self._report_connection() as conn:
            return await reports.report_figures(conn, span)

    async def report_rows(self, span: ReportSpan) -> ReportRows:
        async with self._report_connection() as conn:
            return await reports.report_rows(conn, span)

    async def catalog_head(self) -> int:
        return await self._read(catalog.head)

    async def catalog_version(self, version: int) -> CatalogVersionRow | None:
        return await self._read(catalog.version, version)

    async def catalog_versions(self) -> list[CatalogVersionInfo]:
        return await self._read(catalog.versions)

    async def keep_breakdowns(
            self, fields: Sequence[TagKey]) -> tuple[list[TagKey], list[TagKey]]:
        """Keep roll-ups by exactly ``fields`` (storage/postgres/tag_rollups.py): one
        transaction, between other processes' batches, counts the new ones from the rows
        and drops the others."""
        async with self._report_connection() as conn:
            return await tag_rollups.keep(conn, fields)

    @contextlib.asynccontextmanager
    async def _report_connection(self) -> AsyncIterator[PoolConnectionProxy]:
        """A connection for a report: had within the write timeout, and a database lost
        meanwhile is StoreUnavailable; the report itself may take as long as it takes."""
        conn = await acquire_within(self.write_timeout, self._db())
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable from exc
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._db().release(conn)
