"""The catalog's versions on SQLite: written in the writer's transaction, read for the API
and for the version poll (storage/catalog.py)."""

from __future__ import annotations

import sqlite3

import aiosqlite

from storage.catalog import (
    INSERT_COLUMNS,
    CatalogVersionInfo,
    CatalogVersionRow,
    CatalogVersionTaken,
    info_of,
    insert_params,
    row_of,
)

# Only while the version before it is the newest: a stale writer inserts nothing.
_INSERT = (f"INSERT INTO catalog_versions ({INSERT_COLUMNS}) SELECT ?, ?, ?, ?, ?"
           " WHERE (SELECT coalesce(max(version), 0) FROM catalog_versions) = ? - 1"
           " ON CONFLICT (version) DO NOTHING")
_HEAD = "SELECT coalesce(max(version), 0) FROM catalog_versions"
_ONE = f"SELECT {INSERT_COLUMNS} FROM catalog_versions WHERE version = ?"
_ALL = "SELECT version, created_at, token, changes FROM catalog_versions ORDER BY version DESC"


def insert(conn: sqlite3.Connection, rows: list[CatalogVersionRow]) -> None:
    """Store each new version; CatalogVersionTaken if one is not the next."""
    for row in rows:
        if conn.execute(_INSERT, (*insert_params(row), row.version)).rowcount != 1:
            raise CatalogVersionTaken(row.version)


async def head(conn: aiosqlite.Connection) -> int:
    """The newest version's number; 0 before the first."""
    [(found,)] = await conn.execute_fetchall(_HEAD)
    return int(found)


async def version(conn: aiosqlite.Connection, number: int) -> CatalogVersionRow | None:
    rows = list(await conn.execute_fetchall(_ONE, (number,)))
    return row_of(rows[0]) if rows else None


async def versions(conn: aiosqlite.Connection) -> list[CatalogVersionInfo]:
    """Every version, the newest first, without their documents."""
    return [info_of(row) for row in await conn.execute_fetchall(_ALL)]
