"""With ``[server] catalog = "database"``: every process serves the newest catalog version.

At start-up the config file's campaigns and sources are imported as version 1 into a
database that has none (of several nodes starting at once, one import wins and the others
read it). Then each process asks the database for the newest version's number a few times
a second, a one-row query, and swaps in a newer one the way a reload swaps a config: every
request sees the old catalog or the new one, never a mix. A version that does not pass the
config's checks with this process's server settings is not applied: the old catalog stays
in force and a warning says why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from actors.clock import Clock
from app.catalog.documents import Document, applied, document_of
from app.catalog.versions import FILE_IMPORT, next_version, store
from app.config.schema import Config, ConfigError
from storage.backend import EventStore
from storage.catalog import CatalogVersionRow, CatalogVersionTaken

log = structlog.get_logger("app.catalog")

# Well within the second a change has to reach every process, for a query of one row.
POLL_SECONDS = 0.25


class CatalogFollower:
    """Keeps this process on the newest catalog version in the database.

    ``apply(config, version)`` swaps in a config and the version its catalog is; it must
    swap everything at once (see app/config/reload.py Reloader).
    """

    def __init__(self, store: EventStore, clock: Clock, current: Callable[[], Config],
                 apply: Callable[[Config, int], None], *,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._current = current
        self._apply = apply
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self.version = 0
        self.document: Document = {}
        # The newest version refused, so that its warning is logged once.
        self._refused = 0
        self._poll_failing = False

    async def start(self) -> None:
        """Import the config file's catalog into an empty database, serve the newest
        version, and follow the ones to come; raises ConfigError when the newest version
        does not pass the config's checks with the file's server settings."""
        if await self._store.catalog_head() == 0:
            await self._import()
        await self.follow()
        self._task = asyncio.create_task(self._poll(), name="catalog-follower")

    async def _import(self) -> None:
        config = self._current()
        row, _ = next_version(config, None, document_of(config), token=FILE_IMPORT,
                              now=self._clock.now(), origin="config file")
        try:
            await store(self._store, row)
        except CatalogVersionTaken:
            return  # another process imported it first; follow() reads theirs
        log.info("catalog_imported", version=row.version,
                 campaigns=len(row.document["campaigns"]),
                 sources=len(row.document["sources"]))

    async def follow(self) -> None:
        """Swap in the newest version if it is newer than the one in force; raises
        ConfigError, once per version, for one that does not pass the checks."""
        head = await self._store.catalog_head()
        if head <= self.version or head == self._refused:
            return
        row = await self._store.catalog_version(head)
        if row is None:
            return
        try:
            self.take(row)
        except ConfigError:
            self._refused = head
            raise

    def take(self, row: CatalogVersionRow) -> None:
        """Swap in ``row``'s catalog unless a newer one is in force; raises ConfigError
        (nothing swapped) when it does not pass the checks."""
        if row.version <= self.version:
            return
        new = applied(self._current(), row.document, f"catalog version {row.version}")
        self._apply(new, row.version)
        self.version, self.document = row.version, row.document
        log.info("catalog_applied", version=row.version, token=row.token, **row.changes)

    def overlay(self, file_config: Config) -> Config:
        """The config file's settings with the catalog in force (a reload keeps it);
        raises ConfigError when the two do not pass the checks together."""
        new = applied(file_config, self.document, f"catalog version {self.version}")
        self._refused = 0  # a version refused with the old settings may pass the new ones
        return new

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.follow()
            except ConfigError as exc:
                log.warning("catalog_version_refused", error=str(exc), serving=self.version)
            except Exception as exc:  # the database away: the next poll tries again
                self._warn_once(exc)
                continue
            self._poll_failing = False

    def _warn_once(self, exc: Exception) -> None:
        if not self._poll_failing:
            self._poll_failing = True
            log.warning("catalog_poll_failed", error=repr(exc), serving=self.version)

    async def close(self) -> None:
        """Stop following. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

