"""Opening connections: every pragma the store relies on is set here and nowhere else.

Every connection uses SQLite's ``unix-excl`` VFS: the process holds an exclusive lock on
the file, and the WAL index lives in this process's heap instead of a shared-memory
``-shm`` file. A ``-shm`` file truncated or made unwritable under a running server would
kill it with SIGBUS; in heap memory nothing outside the process can touch the index. The
price is that no other process can open the file while it is served: backups go through
the service (``POST /api/admin/backup``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
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


async def open_writer(path: str | Path, *, synchronous: str) -> aiosqlite.Connection:
    """The one connection that writes. Autocommit mode: the writer issues BEGIN itself."""
    conn = await aiosqlite.connect(_uri(path), uri=True, isolation_level=None)
    for pragma in _pragmas(synchronous=synchronous, writer=True):
        await conn.execute(pragma)
    return conn


async def open_reader(path: str | Path) -> aiosqlite.Connection:
    """A read-only connection; under WAL it never blocks the writer."""
    conn = await aiosqlite.connect(_uri(path), uri=True, isolation_level=None)
    for pragma in _pragmas(synchronous="NORMAL", writer=False):
        await conn.execute(pragma)
    return conn
