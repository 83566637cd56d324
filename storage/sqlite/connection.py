"""Opening connections: every pragma the store relies on is set here and nowhere else.

Every connection uses SQLite's ``unix-excl`` VFS: the process holds an exclusive lock on
the file, and the WAL index lives in this process's heap instead of a shared-memory
``-shm`` file. A ``-shm`` file truncated or made unwritable under a running server would
kill it with SIGBUS; in heap memory nothing outside the process can touch the index. The
price is that no other process can open the file while it is served: backups go through
the service (``POST /api/admin/backup``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite

from storage.sqlite.schema import migrate


def _pragmas(*, synchronous: str, writer: bool) -> list[str]:
    pragmas = [
        "PRAGMA busy_timeout = 5000",
        "PRAGMA temp_store = MEMORY",
        "PRAGMA cache_size = -16000",
    ]
    if writer:
        pragmas += [
            "PRAGMA journal_mode = WAL",
            f"PRAGMA synchronous = {synchronous}",
            "PRAGMA foreign_keys = ON",
        ]
    else:
        pragmas.append("PRAGMA query_only = ON")
    return pragmas


def _uri(path: str | Path) -> str:
    return f"file:{quote(str(Path(path).absolute()))}?vfs=unix-excl"


def connect_sync(path: str | Path) -> sqlite3.Connection:
    """A blocking connection, for start-up and backups (run in a thread of their own)."""
    return sqlite3.connect(_uri(path), uri=True, isolation_level=None)


def connect_reader_sync(path: str | Path) -> sqlite3.Connection:
    """A blocking read-only connection, for reports run in a thread of their own."""
    conn = connect_sync(path)
    for pragma in _pragmas(synchronous="NORMAL", writer=False):
        conn.execute(pragma)
    return conn


def prepare(path: str | Path) -> None:
    """Create the database file if needed, switch it to WAL and apply migrations."""
    conn = connect_sync(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
    finally:
        conn.close()


T = TypeVar("T")


class WriteConnection:
    """The one connection that writes, used only from one thread of its own.

    ``run`` hands that thread a function of the plain ``sqlite3.Connection``: the writer
    sends a whole batch, BEGIN to COMMIT, as one function, so a batch costs one round trip
    between the event loop and the thread (and one handoff of the interpreter lock)
    instead of one per statement. ``round_trips`` counts them.
    """

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread
        self._closed = False
        self.round_trips = 0

    @property
    def in_transaction(self) -> bool:
        """Only meaningful while no call runs (SQLite's own flag, read without a lock)."""
        return self._conn.in_transaction

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in the connection's thread."""
        self.round_trips += 1
        return await self._call(work)

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._conn)

    async def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        """One statement; its rows."""
        return await self.run(lambda conn: conn.execute(sql, parameters).fetchall())

    async def rollback(self) -> None:
        await self.run(_roll_back)

    def interrupt(self) -> None:
        """Abort the statement the thread is running, if any (safe from any thread)."""
        if not self._closed:
            self._conn.interrupt()

    async def close(self) -> None:
        """Close the connection, then stop its thread. Idempotent."""
        if self._closed:
            return
        try:
            await self._call(sqlite3.Connection.close)
        finally:
            self._closed = True
            self._thread.shutdown(wait=False)


def _roll_back(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


async def open_writer(path: str | Path, *, synchronous: str,
                      thread: ThreadPoolExecutor | None = None) -> WriteConnection:
    """The one connection that writes. Autocommit mode: the writer issues BEGIN itself.

    ``thread`` is the pool of one thread the connection will live in (one is made when
    None); the connection owns it from then on.
    """
    thread = thread or ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    def connect() -> sqlite3.Connection:
        # Made in its own thread: sqlite3 refuses a connection's use from any other.
        conn = connect_sync(path)
        try:
            for pragma in _pragmas(synchronous=synchronous, writer=True):
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        conn = await asyncio.get_running_loop().run_in_executor(thread, connect)
    except BaseException:
        thread.shutdown(wait=False)
        raise
    return WriteConnection(conn, thread)


async def open_reader(path: str | Path) -> aiosqlite.Connection:
    """A read-only connection; under WAL it never blocks the writer."""
    conn = await aiosqlite.connect(_uri(path), uri=True, isolation_level=None)
    for pragma in _pragmas(synchronous="NORMAL", writer=False):
        await conn.execute(pragma)
    return conn
