"""Lock windows claimed in the database, with its clock: every process sees the same ones.

Claims asked for meanwhile go in one statement: a window opens (or reopens) only where
none is open ``now()``, and RETURNING says which were opened. One actor per transaction
and process asks at a time, so a batch holds each (transaction_id, event_id) once; a
second ask in the same batch would find the window just opened, and gets False.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
import structlog

log = structlog.get_logger("storage.postgres.windows")


def _claim(now: str) -> str:
    return f"""
INSERT INTO windows AS w (transaction_id, event_id, open_until)
SELECT c.transaction_id, c.event_id, {now} + make_interval(secs => c.seconds)
FROM unnest($1::text[], $2::text[], $3::float8[]) AS c(transaction_id, event_id, seconds)
ON CONFLICT (transaction_id, event_id) DO UPDATE SET open_until = excluded.open_until
WHERE w.open_until <= {now}
RETURNING transaction_id, event_id
"""


# Closed windows are dead rows (a missing row is a closed window): cleared now and then.
_PURGE = "DELETE FROM windows WHERE open_until <= now()"
PURGE_EVERY_SECONDS = 600.0

_Key = tuple[str, str]


class WindowClaimer:
    """``clock`` None (always, when serving): the database's ``now()`` decides. Tests give
    their fake clock's time instead, so windows close without waiting."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], datetime] | None = None,
                 max_batch: int = 1000) -> None:
        self._pool = pool
        self._clock = clock
        self._sql = _claim("now()" if clock is None else "$4::timestamptz")
        self._max_batch = max_batch
        self._purged_at = time.monotonic()
        self._waiting: dict[_Key, tuple[float, asyncio.Future[bool]]] = {}
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="windows")

    async def claim(self, transaction_id: str, event_id: str, seconds: float) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        key = (transaction_id, event_id)
        if key in self._waiting:
            future.set_result(False)
            return False
        self._waiting[key] = (seconds, future)
        self._has_work.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, future in self._waiting.values():
            if not future.done():
                future.set_exception(RuntimeError("store closed"))
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                batch = {key: self._waiting.pop(key) for key in keys}
                args: list[object] = [[key[0] for key in keys], [key[1] for key in keys],
                                      [batch[key][0] for key in keys]]
                if self._clock is not None:
                    args.append(self._clock())
                try:
                    rows = await self._pool.fetch(self._sql, *args)
                except Exception as exc:
                    log.error("window_claims_failed", error=repr(exc), claims=len(keys))
                    for _, future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                opened = {(row[0], row[1]) for row in rows}
                for key, (_, future) in batch.items():
                    if not future.done():
                        future.set_result(key in opened)
            if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
                await self.purge()

    async def purge(self) -> int:
        """Delete the windows closed by now (by the database's clock); how many went."""
        self._purged_at = time.monotonic()
        try:
            done = await self._pool.execute(_PURGE)
        except Exception as exc:  # only housekeeping: claims go on without it
            log.warning("window_purge_failed", error=repr(exc))
            return 0
        return int(done.rpartition(" ")[2])
