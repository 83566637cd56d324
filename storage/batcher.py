"""Requests gathered while the last batch was answered, answered together by one query.

Cold loads (both stores) and PostgreSQL's lock-window claims arrive many at a time under
load; one query per batch costs one round trip instead of one per request. Every future
completes exactly once: with the batch's answer, with the query's error, or with
"store closed" when the store closes first, the batch being read included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("storage.batcher")

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
R = TypeVar("R")

# A batch: each key with its argument and everyone waiting on it.
_Waiting = dict[K, tuple[A, list["asyncio.Future[R]"]]]


class Batcher(Generic[K, A, R]):
    """``query`` answers a batch (key -> argument) with key -> result; a key it leaves
    out gets ``missing``. A failed query is logged as ``failure`` with the batch's size
    under ``size_name``, fails that batch's callers, and the next batch is read."""

    def __init__(self, query: Callable[[dict[K, A]], Awaitable[Mapping[K, R]]], *,
                 missing: R, max_batch: int, task_name: str, failure: str,
                 size_name: str, after: Callable[[], Awaitable[object]] | None = None,
                 ) -> None:
        self._query = query
        self._missing = missing
        self._max_batch = max_batch
        self._task_name = task_name
        self._failure = failure
        self._size_name = size_name
        # Run once the queue is empty, before waiting for more (housekeeping).
        self._after = after
        self._waiting: _Waiting[K, A, R] = {}
        # The batch being read: close() cancels the read, and must fail these too.
        self._reading: _Waiting[K, A, R] = {}
        self._has_work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.asked = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=self._task_name)  # pragma: no mutate (a debugging label)

    def __contains__(self, key: K) -> bool:
        """Whether ``key`` waits for the next batch."""
        return key in self._waiting

    def ask(self, key: K, argument: A) -> asyncio.Future[R]:
        """The answer for ``key``; a key asked again before its batch shares the answer
        (and the first argument)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, (argument, []))[1].append(future)
        self._has_work.set()
        return future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, futures in [*self._reading.values(), *self._waiting.values()]:
            for future in futures:
                if not future.done():
                    future.set_exception(RuntimeError("store closed"))
        self._reading = {}
        self._waiting.clear()

    async def _run(self) -> None:
        while True:
            await self._has_work.wait()
            self._has_work.clear()
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                batch = self._reading = {key: self._waiting.pop(key) for key in keys}
                self.asked += len(keys)
                try:
                    found = await self._query({key: batch[key][0] for key in keys})
                except Exception as exc:
                    self._reading = {}
                    log.error(self._failure, error=repr(exc), **{self._size_name: len(keys)})
                    for _, futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                self._reading = {}
                for key, (_, futures) in batch.items():
                    result = found.get(key, self._missing)
                    for future in futures:
                        if not future.done():
                            future.set_result(result)
            if self._after is not None:
                await self._after()
