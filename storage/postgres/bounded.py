"""Every wait on PostgreSQL ends: within the write timeout, or as StoreUnavailable.

A database that stops, restarts or hangs shows up as many different errors (refused,
reset, "connection does not exist", "the database system is starting up", a pool closing,
or nothing at all): to a client each means the same, 503 ``Store unavailable``, never a
500. The pool replaces a broken connection on its next acquire, so the service recovers
by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
import structlog

from storage.errors import StoreUnavailable

log = structlog.get_logger("storage.postgres")

T = TypeVar("T")

# OSError covers refused and reset connections (ConnectionError) and DNS failures;
# InterfaceError a pool or connection that was closed under the call; the operator
# intervention class (57P01 admin shutdown, 57P03 cannot connect now, ...) a server
# stopping or starting; InternalClientError a connection whose backend was ended in the
# middle of a statement ("cannot switch to state ...").
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InternalClientError,
    OSError)

# Calls given up on, still cleaning up: asyncpg cancels a query on a connection of its own,
# which waits as long as the database does. Kept here until they end.
_abandoned: set[asyncio.Task[object]] = set()


async def within(seconds: float, call: Awaitable[T]) -> T:
    """``call``'s result; StoreUnavailable past ``seconds`` or with the database out of
    reach. The caller is answered at the deadline even while ``call`` is still being
    cancelled."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait((task,), timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        raise StoreUnavailable
    if task.cancelled():  # by the driver, its connection closed under it
        raise StoreUnavailable
    try:
        return task.result()
    except CONNECTION_ERRORS as exc:
        log.warning("store_unreachable", error=repr(exc))
        raise StoreUnavailable from exc


async def acquire_within(seconds: float, pool: asyncpg.Pool) -> Any:
    """A connection of ``pool``, had within ``seconds`` (as ``within``). One acquired just
    as its caller was cancelled or gave up goes back to the pool instead of being lost:
    the pool's close would wait for it for ever."""
    task = asyncio.ensure_future(pool.acquire())
    try:
        return await within(seconds, task)
    except BaseException:
        task.add_done_callback(functools.partial(_release_unused, pool))
        raise


def _release_unused(pool: asyncpg.Pool, task: asyncio.Future[Any]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    release = asyncio.ensure_future(pool.release(task.result()))
    _abandoned.add(release)
    release.add_done_callback(_forget)


def _forget(task: asyncio.Task[T]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: it was answered for already
