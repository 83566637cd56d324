"""The catalog's versions on PostgreSQL (storage/sqlite/catalog.py, in PostgreSQL's SQL).

Two nodes writing on the same version both find it the newest and both insert the next
one: the primary key lets one through, and the other's insert does nothing once the
first has committed, so it is refused.
"""

from __future__ import annotations

from asyncpg.pool import Pool, PoolConnectionProxy

from storage.catalog import (
    INSERT_COLUMNS,
    CatalogVersionInfo,
    CatalogVersionRow,
    CatalogVersionTaken,
    info_of,
    insert_params,
    row_of,
)

_INSERT = (f"INSERT INTO catalog_versions ({INSERT_COLUMNS})"
           " SELECT $1, $2, $3, $4, $5"
           " WHERE (SELECT coalesce(max(version), 0) FROM catalog_versions) = $1 - 1"
           " ON CONFLICT (version) DO NOTHING RETURNING 1")
_HEAD = "SELECT coalesce(max(version), 0) FROM catalog_versions"
_ONE = f"SELECT {INSERT_COLUMNS} FROM catalog_versions WHERE version = $1"
_ALL = "SELECT version, created_at, token, changes FROM catalog_versions ORDER BY version DESC"


async def insert(conn: PoolConnectionProxy, rows: list[CatalogVersionRow]) -> None:
    """Store each new version; CatalogVersionTaken if one is not the next."""
    for row in rows:
        if await conn.fetchval(_INSERT, *insert_params(row)) is None:
            raise CatalogVersionTaken(row.version)


async def head(pool: Pool) -> int:
    """The newest version's number; 0 before the first."""
    return int(await pool.fetchval(_HEAD))


async def version(pool: Pool, number: int) -> CatalogVersionRow | None:
    found = await pool.fetchrow(_ONE, number)
    return None if found is None else row_of(found)


async def versions(pool: Pool) -> list[CatalogVersionInfo]:
    """Every version, the newest first, without their documents."""
    return [info_of(row) for row in await pool.fetch(_ALL)]
