"""Lock windows claimed in the database, with its clock: every process sees the same ones.

Claims asked for meanwhile go in one statement: a window opens (or reopens) only where
none is open ``now()``, and RETURNING says which were opened, and until when. One actor
per transaction and process asks at a time, so a batch holds each (transaction_id,
event_id) once; a second ask in the same batch would find the window just opened, and
gets None.

A request whose write is then refused (the queue full, the store closing) gives its
window back, so that the client's retry is not locked out by its own refused attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
import structlog

from storage.batcher import Batcher
from storage.postgres.bounded import within

log = structlog.get_logger("storage.postgres.windows")


def _claim(now: str) -> str:
    return f"""
INSERT INTO windows AS w (transaction_id, event_id, open_until)
SELECT c.transaction_id, c.event_id, {now} + make_interval(secs => c.seconds)
FROM unnest($1::text[], $2::text[], $3::float8[]) AS c(transaction_id, event_id, seconds)
ON CONFLICT (transaction_id, event_id) DO UPDATE SET open_until = excluded.open_until
WHERE w.open_until <= {now}
RETURNING transaction_id, event_id, open_until
"""


# Only the window this claim opened: once it has run out another process may hold the
# row with its own open_until, which stays.
_RELEASE = """
DELETE FROM windows WHERE transaction_id = $1 AND event_id = $2 AND open_until = $3
"""


# Closed windows are dead rows (a missing row is a closed window): cleared now and then.
_PURGE = "DELETE FROM windows WHERE open_until <= now()"
PURGE_EVERY_SECONDS = 600.0

_Key = tuple[str, str]


class WindowClaimer:
    """``clock`` None (always, when serving): the database's ``now()`` decides. Tests give
    their fake clock's time instead, so windows close without waiting."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], datetime] | None = None,
                 max_batch: int = 1000, timeout: float = 5.0) -> None:
        self._pool = pool
        self._clock = clock
        # Every statement ends within this: a claim with StoreUnavailable (503), a release
        # or a purge with a warning.
        self._timeout = timeout
        self._sql = _claim("now()" if clock is None else "$4::timestamptz")
        self._purged_at = time.monotonic()
        self._batches: Batcher[_Key, float, datetime | None] = Batcher(
            self._open, missing=None, max_batch=max_batch, task_name="windows",
            failure="window_claims_failed", size_name="claims", after=self._purge_if_due)

    def start(self) -> None:
        self._batches.start()

    async def claim(self, transaction_id: str, event_id: str,
                    seconds: float) -> datetime | None:
        key = (transaction_id, event_id)
        if key in self._batches:
            return None  # the claim before it in this batch opens the window
        return await self._batches.ask(key, seconds)

    async def release(self, transaction_id: str, event_id: str, until: datetime) -> None:
        """Close the window a claim opened until ``until``, unless it has been claimed
        again since. Never raises: a window not given back runs out on its own."""
        try:
            await asyncio.wait_for(
                self._pool.execute(_RELEASE, transaction_id, event_id, until), self._timeout)
        except Exception as exc:
            log.warning("window_release_failed", error=repr(exc))

    async def close(self) -> None:
        await self._batches.close()

    async def _open(self, batch: dict[_Key, float]) -> dict[_Key, datetime | None]:
        """Claim a batch of windows in one statement: when each one it opened closes."""
        keys = list(batch)
        args: list[object] = [[key[0] for key in keys], [key[1] for key in keys],
                              [batch[key] for key in keys]]
        if self._clock is not None:
            args.append(self._clock())
        rows = await within(self._timeout, self._pool.fetch(self._sql, *args))
        return {(row[0], row[1]): row[2] for row in rows}

    async def _purge_if_due(self) -> None:
        if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
            await self.purge()

    async def purge(self) -> int:
        """Delete the windows closed by now (by the database's clock); how many went."""
        self._purged_at = time.monotonic()
        try:
            done = await asyncio.wait_for(self._pool.execute(_PURGE), self._timeout)
        except Exception as exc:  # only housekeeping: claims go on without it
            log.warning("window_purge_failed", error=repr(exc))
            return 0
        return int(done.rpartition(" ")[2])
