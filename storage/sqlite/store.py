"""The store as the rest of the program sees it: queue writes, load and read transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from storage.backend import WindowClaims
from storage.batched import BatchedStore
from storage.catalog import CatalogVersionInfo, CatalogVersionRow
from storage.endpoints import EndpointHealth
from storage.loader import BatchLoader
from storage.pacing import Slot, Slots
from storage.records import (
    AnswerRow,
    ConversionCounts,
    ConversionView,
    DuePostback,
    HostLoad,
    PostbackStatus,
    PostbackView,
    TransactionView,
)
from storage.reports import RawFigures, ReportRows, ReportSpan, TagKey
from storage.sqlite import (
    caps,
    catalog,
    conversions,
    endpoints,
    idempotency,
    lead_keys,
    outbox,
    reader,
    reports,
    tag_rollups,
)
from storage.sqlite.backup import Backups, FreeSpace, free_bytes
from storage.sqlite.claim import Claim
from storage.sqlite.connection import WriteConnection, open_reader, open_writer, prepare
from storage.sqlite.loader import query_sqlite
from storage.sqlite.writer import Writer


class Store(BatchedStore[Writer]):
    """Owns the writer task and both connections.

    ``synchronous`` is SQLite's: ``FULL`` makes every commit survive power loss, ``NORMAL``
    only a crash of this process. ``gather_seconds`` > 0 makes the writer wait that long
    after the first queued op so a whole flush interval commits as one batch.
    ``write_timeout`` bounds how long a flush, and closing, wait for a failing store.
    ``free_space`` reads the free bytes of the backup directory's filesystem.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        max_pending: int = 10_000,
        gather_seconds: float = 0.0,
        write_timeout: float = 5.0,
        free_space: FreeSpace = free_bytes,
    ) -> None:
        super().__init__(write_timeout=write_timeout)
        self.path = Path(path)
        self._synchronous = synchronous
        self._max_pending = max_pending
        self._gather_seconds = gather_seconds
        self._write_conn: WriteConnection | None = None
        self._read_conn: aiosqlite.Connection | None = None
        # Lists, counts and the read API's views read on a connection of their own:
        # aiosqlite runs one call at a time per connection, so a long list or a metrics
        # scrape on the event path's connection would hold up its cold loads.
        self._list_conn: aiosqlite.Connection | None = None
        self._claim: Claim | None = None
        self._backups = Backups(self.path, free_space=free_space)
        # One process sends from an SQLite file: its host slots live in memory.
        self._slots = Slots()

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def windows(self) -> WindowClaims | None:
        """None: one process serves the file, and its actors keep the lock windows."""
        return None

    def claim(self) -> None:
        """Take the one-server lock on the file; raises DatabaseInUse. Idempotent."""
        if self._claim is None:
            self._claim = Claim(self.path)

    async def open(self) -> None:
        self.claim()
        await asyncio.to_thread(prepare, self.path)
        self._write_conn = await open_writer(self.path, synchronous=self._synchronous)
        self._read_conn = await open_reader(self.path)
        self._list_conn = await open_reader(self.path)
        self._loader = BatchLoader(partial(query_sqlite, self._read_conn))
        self._loader.start()
        self._writer = Writer(
            self._write_conn,
            max_pending=self._max_pending,
            gather_seconds=self._gather_seconds,
            on_commit=self._committed,
        )
        self._writer.start()

    async def close(self) -> None:
        """Flush every queued write, then close every connection. Idempotent."""
        await self._close_queues()
        for conn in (self._write_conn, self._read_conn, self._list_conn):
            if conn is not None:
                await conn.close()
        self._write_conn = self._read_conn = self._list_conn = None
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    async def conversion_counts(self) -> ConversionCounts:
        return await conversions.counts_by_status(self._lister())

    async def postback_counts(self) -> dict[PostbackStatus, int]:
        return await outbox.counts_by_status(self._lister())

    async def take_send_slot(self, host: str, now: datetime, interval: float,
                             horizon: float) -> Slot:
        return self._slots.take(host, now, interval, horizon)

    async def endpoint_health(self, configured: list[str], since: str, *,
                              counts: bool = True) -> list[EndpointHealth]:
        return await endpoints.health(self._lister(), configured, since, counts=counts)

    async def healthy(self, timeout: float = 2.0) -> bool:
        """True when an (empty) write transaction commits within ``timeout`` seconds."""
        if self._writer is None or self._writer.failing:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(self._writer.barrier()), timeout)
        except Exception:
            return False
        return True

    def backup_target(self, moment: datetime) -> Path:
        """``backups/`` beside the database file, named by the UTC time."""
        return self._backups.target(moment)

    async def backup(self, target: Path, *, keep: int | None = None) -> int:
        """A consistent copy of everything committed so far, written to ``target``; then
        only the ``keep`` newest backups stay. One at a time, and only with room for it."""
        return await self._backups.take(target, keep)

    async def transaction_view(self, transaction_id: str) -> TransactionView | None:
        return await reader.transaction_view(self._lister(), transaction_id)

    async def claim_answer(self, key: str, fingerprint: str, now: str,
                           until: str) -> AnswerRow | None:
        # One process serves the file: its claim in memory is the reservation.
        return await idempotency.stored_answer(self._reader(), key, now)

    def release_answer(self, key: str) -> None:
        """Nothing was reserved in the file."""

    async def lead_fields(self, transaction_id: str) -> dict[str, Any]:
        return await reader.lead_fields(self._reader(), transaction_id)

    async def first_lead_sharing(self, cid: str, transaction_id: str,
                                 digests: tuple[str, ...], days: int, *,
                                 new_at: str) -> str | None:
        return await lead_keys.first_lead_sharing(self._reader(), cid, transaction_id,
                                                  digests, days, new_at)

    async def due_postbacks(
        self, now: str, *, limit: int, skip_ids: list[int], hosts: HostLoad
    ) -> list[DuePostback]:
        return await outbox.due(self._reader(), now, limit=limit, skip_ids=skip_ids,
                                hosts=hosts)

    async def next_postback_due_at(
        self, skip_ids: list[int], skip_hosts: list[str]
    ) -> str | None:
        return await outbox.next_due_at(self._reader(), skip_ids, skip_hosts)

    async def postbacks(
        self, *, status: PostbackStatus | None, cid: str | None, limit: int,
        source: str | None = None,
    ) -> list[PostbackView]:
        return await outbox.postbacks(self._lister(), status=status, cid=cid, limit=limit,
                                      source=source)

    async def postback(self, postback_id: int) -> PostbackView | None:
        return await outbox.postback(self._lister(), postback_id)

    async def conversions(self, **filters: Any) -> list[tuple[int, ConversionView]]:
        """See ``storage.sqlite.conversions.conversions``."""
        return await conversions.conversions(self._lister(), **filters)

    async def conversion(self, conversion_id: str) -> ConversionView | None:
        return await conversions.conversion(self._lister(), conversion_id)

    async def conversion_statuses(self, conversion_ids: list[str]) -> dict[str, ConversionView]:
        return await conversions.statuses(self._lister(), conversion_ids)

    async def cap_usage(
            self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        return await caps.usage(self._lister(), wanted)

    async def report_figures(self, span: ReportSpan) -> RawFigures:
        """See ``storage.reports``: on a connection of its own, in a thread."""
        if self._write_conn is None:
            raise RuntimeError("store is not open")
        return await asyncio.to_thread(reports.read_report_figures, self.path, span)

    async def report_rows(self, span: ReportSpan) -> ReportRows:
        """``report_figures``'s SQL alone, in a thread on a connection of its own."""
        if self._write_conn is None:
            raise RuntimeError("store is not open")
        return await asyncio.to_thread(reports.read_report_rows, self.path, span)

    async def catalog_head(self) -> int:
        return await catalog.head(self._reader())

    async def catalog_version(self, version: int) -> CatalogVersionRow | None:
        return await catalog.version(self._reader(), version)

    async def catalog_versions(self) -> list[CatalogVersionInfo]:
        return await catalog.versions(self._lister())

    async def keep_breakdowns(
            self, fields: Sequence[TagKey]) -> tuple[list[TagKey], list[TagKey]]:
        """Keep roll-ups by exactly ``fields`` (storage/tag_rollups.py): one transaction
        between two batches counts the new ones from the rows and drops the others."""
        if self._write_conn is None:
            raise RuntimeError("store is not open")
        return await self._write_conn.run(partial(_keep_breakdowns, fields))

    def _lister(self) -> aiosqlite.Connection:
        if self._list_conn is None:
            raise RuntimeError("store is not open")
        return self._list_conn

    def _reader(self) -> aiosqlite.Connection:
        if self._read_conn is None:
            raise RuntimeError("store is not open")
        return self._read_conn


def _keep_breakdowns(fields: Sequence[TagKey],
                     conn: sqlite3.Connection) -> tuple[list[TagKey], list[TagKey]]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = tag_rollups.keep(conn, fields)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return changed
