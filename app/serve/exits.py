"""The command line's exit codes, and the one-line refusals that come with them.

Scripts and service managers tell failures apart by the code alone, so each code means
one thing for every command; docs/configuration.md's Command line section lists them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from storage.backend import EventStore, is_postgres_url
from storage.postgres.store import without_password
from storage.sqlite.claim import DatabaseInUse

OK = 0
# Partly done or not done: the lines printed say which.
FAILED = 1
# Bad flags, a config error, a file or database that does not exist.
USAGE = 2
# An SQLite file another live event-postback process serves.
IN_USE = 3
# The database cannot be reached or opened.
UNREACHABLE = 4

# The first bytes of every SQLite 3 database file (its file format, section 1.3).
_SQLITE_HEADER = b"SQLite format 3\x00"

# What PostgreSQL or the network answer to a connection that cannot be made: refusals of
# this URL, not faults of this program.
_CANNOT_CONNECT = (
    OSError,  # refused, no route, unknown host, timed out
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown role, wrong password
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.TooManyConnectionsError,
)


class Refusal(Exception):
    """An expected failure: the one line it prints on stderr and its exit code."""

    def __init__(self, line: str, code: int) -> None:
        super().__init__(line)
        self.line = line
        self.code = code


def check_database(db: str, *, existing: bool) -> None:
    """Raise Refusal unless ``db`` can be opened now.

    ``existing``: an SQLite file that does not exist is refused rather than created (a
    command that reads one would otherwise report on an empty file it just made).
    """
    if is_postgres_url(db):
        asyncio.run(_connect(db))
        return
    path = Path(db)
    if existing and not path.is_file():
        raise Refusal(f"{db}: no such database", USAGE)
    if not path.parent.is_dir():
        raise Refusal(f"{db}: no such directory", USAGE)
    if not _holds_sqlite(path):
        raise Refusal(f"{db}: not an SQLite database", USAGE)


def _holds_sqlite(path: Path) -> bool:
    """False for a file that is there and is something else (a config given as --db);
    an empty or missing file becomes a database on first start."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        return False
    except OSError as exc:
        raise Refusal(f"{path}: cannot open: {_reason(exc)}", UNREACHABLE) from None
    return not header or header == _SQLITE_HEADER


async def _connect(url: str) -> None:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        raise Refusal(f"{without_password(url)}: no such database", USAGE) from None
    except _CANNOT_CONNECT as exc:
        raise Refusal(f"{without_password(url)}: cannot connect: {_reason(exc)}",
                      UNREACHABLE) from None
    await conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    # A timeout carries no text of its own.
    return str(exc) or type(exc).__name__


def claim(store: EventStore, *, when_served: str = "") -> None:
    """Take the store's one-server lock, or raise Refusal; ``when_served`` follows the
    line of a file another process serves (what to use instead)."""
    try:
        store.claim()
    except DatabaseInUse as exc:
        raise Refusal(f"{exc}{when_served}", IN_USE) from None
    except OSError as exc:
        raise Refusal(f"{store.location}: cannot open: {_reason(exc)}", UNREACHABLE) from None
