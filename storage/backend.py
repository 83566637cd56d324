"""What the actors, routes and services use of a store, whichever database is behind it.

SQLite (``storage.sqlite.store.Store``) and PostgreSQL (``storage.postgres``) both satisfy
``EventStore``; nothing outside ``storage/`` and the factory knows which one it talks to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from storage.catalog import CatalogVersionInfo, CatalogVersionRow
from storage.endpoints import EndpointHealth
from storage.pacing import Slot
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


class WriteQueue(Protocol):
    """The queue of writes in front of the database, as the metrics and health see it."""

    @property
    def pending(self) -> int: ...

    @property
    def failing(self) -> bool: ...

    # Told the size and duration of every committed batch.
    commit_observer: Callable[[int, float], None] | None


class WindowClaims(Protocol):
    """Lock windows decided by the database, for stores that several processes share."""

    async def claim(self, transaction_id: str, event_id: str,
                    seconds: float) -> datetime | None:
        """Open the window of (transaction_id, event_id) for ``seconds`` of the database's
        clock and say when it closes; None while it is still open (claimed by anyone,
        anywhere)."""
        ...

    async def release(self, transaction_id: str, event_id: str, until: datetime) -> None:
        """Close the window that ``claim`` opened until ``until``, one claimed again since
        staying open; for a request whose write was refused before it was queued. Never
        raises: a window not given back runs out."""
        ...


class EventStore(Protocol):
    @property
    def location(self) -> str:
        """Where the data lives, for logs (a file path, or a URL without its password)."""
        ...

    @property
    def writer(self) -> WriteQueue: ...

    @property
    def cold_loads(self) -> int:
        """How many transactions were read back from the database since it opened."""
        ...

    @property
    def windows(self) -> WindowClaims | None:
        """None when this process alone serves the data and its memory keeps the windows."""
        ...

    def claim(self) -> None:
        """Take whatever makes this process the one to serve the data; raises
        DatabaseInUse when another has it. Idempotent."""

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Flush every queued write, then let go of the database. Idempotent."""

    def on_commit(self, listener: Callable[[list[WriteOp]], None]) -> None:
        """Call ``listener`` with the ops of every batch, right after it commits."""

    def has_room(self) -> bool: ...

    def submit(self, op: WriteOp, *, bounded: bool = True) -> asyncio.Future[None]:
        """Queue ``op``; the future completes when it has committed, or with why not.

        Raises StoreBusy at the queue's bound and StoreClosed once closing.
        """
        ...

    async def commit(self, op: WriteOp) -> None:
        """Write ``op`` and wait for its commit; StoreUnavailable past the write timeout."""

    async def flush(self) -> None:
        """Wait until every write queued so far has committed."""

    def settled(self) -> asyncio.Future[None]:
        """A future that completes once every write queued so far has committed or been
        refused for good (StoreClosed if the store closes first); raises StoreClosed once
        closing."""
        ...

    async def healthy(self, timeout: float = 2.0) -> bool: ...

    def backup_target(self, moment: datetime) -> Path:
        """Where a backup taken at ``moment`` goes; raises Unsupported if nowhere."""
        ...

    async def backup(self, target: Path, *, keep: int | None = None) -> int:
        """A consistent copy of everything committed so far; returns its size in bytes.

        Then only the ``keep`` newest backups in its directory stay (None: all of them).
        Raises BackupInProgress while another runs, NoRoomForBackup when the disk has no
        room for the copy (nothing of it is left).
        """
        ...

    async def load_transaction(self, transaction_id: str) -> StoredTransaction | None: ...

    async def transaction_view(self, transaction_id: str) -> TransactionView | None: ...

    async def lead_fields(self, transaction_id: str) -> dict[str, Any]: ...

    async def first_lead_sharing(self, cid: str, transaction_id: str,
                                 digests: tuple[str, ...], days: int, *,
                                 new_at: str) -> str | None:
        """The earliest other lead of ``cid`` with one of ``digests`` (lead_keys), created
        within ``days`` before the lead of ``transaction_id`` (at ``new_at`` if it is not
        stored) and not after it: its transaction id, or None."""
        ...

    async def claim_answer(self, key: str, fingerprint: str, now: str,
                           until: str) -> AnswerRow | None:
        """The live answer stored under ``key``, or None: then this request handles it.

        Where several processes share the database, None also reserves the key there
        until ``until`` (or until ``release_answer``), and a key another process has
        reserved comes back as a row whose ``status`` is ``RESERVED``.
        """
        ...

    def release_answer(self, key: str) -> None:
        """Let go of a key this process claimed and stored nothing under."""

    async def due_postbacks(
        self, now: str, *, limit: int, skip_ids: list[int], hosts: HostLoad
    ) -> list[DuePostback]:
        """Up to ``limit`` due postbacks, oldest first, none in ``skip_ids`` and none
        beyond the room each host has (on PostgreSQL, each leased to this process)."""

    async def next_postback_due_at(
        self, skip_ids: list[int], skip_hosts: list[str]
    ) -> str | None: ...

    async def postbacks(
        self, *, status: PostbackStatus | None, cid: str | None, limit: int,
        source: str | None = None,
    ) -> list[PostbackView]:
        """The newest first; with ``source``, only that source's own postbacks (a
        partner's view: none of the buyers')."""
        ...

    async def postback(self, postback_id: int) -> PostbackView | None: ...

    async def postback_counts(self) -> dict[PostbackStatus, int]: ...

    async def take_send_slot(self, host: str, now: datetime, interval: float,
                             horizon: float) -> Slot:
        """The next slot to send to ``host`` at, one ``interval`` after the last one
        taken by any process, granted only within ``horizon`` seconds of ``now``."""
        ...

    async def endpoint_health(self, configured: list[str], since: str, *,
                              counts: bool = True) -> list[EndpointHealth]:
        """Every endpoint attempted or in ``configured`` (keys), with its attempts in the
        hourly buckets from ``since`` on and, with ``counts``, its postbacks by status."""
        ...

    async def conversions(self, **filters: Any) -> list[tuple[int, ConversionView]]: ...

    async def conversion(self, conversion_id: str) -> ConversionView | None: ...

    async def conversion_statuses(
        self, conversion_ids: list[str]) -> dict[str, ConversionView]: ...

    async def conversion_counts(self) -> ConversionCounts: ...

    async def report_figures(self, span: ReportSpan) -> RawFigures: ...

    async def cap_usage(
        self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """What each (cap, period) asked for has counted; one not charged yet is left out
        (storage/caps.py)."""
        ...

    async def catalog_head(self) -> int:
        """The newest catalog version's number (storage/catalog.py); 0 before the first."""
        ...

    async def catalog_version(self, version: int) -> CatalogVersionRow | None: ...

    async def catalog_versions(self) -> list[CatalogVersionInfo]:
        """Every catalog version, the newest first, without their documents."""
        ...

    async def keep_breakdowns(
            self, fields: Sequence[TagKey]) -> tuple[list[TagKey], list[TagKey]]:
        """Keep roll-ups by exactly these tracking fields ([reports] breakdowns): the
        fields newly counted from the rows, and those dropped."""
        ...

    async def report_rows(self, span: ReportSpan) -> ReportRows:
        """What ``report_figures`` reads, before ``storage.reports.fold`` works on it."""
        ...


class Unsupported(Exception):
    """What was asked of this store is not available on its database; says why."""


def is_postgres_url(db: str) -> bool:
    """A ``[server] db`` that names a PostgreSQL database rather than an SQLite file."""
    return db.startswith(("postgresql://", "postgres://"))
