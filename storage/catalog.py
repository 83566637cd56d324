"""The catalog's versions as both stores keep them (``catalog_versions``).

Each change of the campaigns and sources managed through the API is a new row holding the
whole catalog. A row is written as version ``expected + 1`` only while ``expected`` is the
newest one, so of two operators writing on the same version one wins and the other is
refused (CatalogVersionTaken), with no lock held between their read and their write.
"""

from __future__ import annotations

from typing import Any

import msgspec


class CatalogVersionTaken(ValueError):
    """The catalog has a newer version than the one a change was made on: nothing was
    written. A ValueError, so the batch writers refuse the op alone without retrying it."""


class CatalogVersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A version without its document: who made it, when, and what it changed."""

    version: int
    created_at: str
    # The name of the token that made it ("config file" for the import at start-up).
    token: str
    # e.g. {"sources_added": ["src_a"]}, as a reload describes its changes.
    changes: dict[str, list[str]]


class CatalogVersionRow(CatalogVersionInfo, frozen=True, kw_only=True):
    """A version as stored: its info and the whole catalog, {"campaigns": [...],
    "sources": [...]}, as the JSON the API shows."""

    document: dict[str, Any]


INSERT_COLUMNS = "version, created_at, token, changes, document"


def insert_params(row: CatalogVersionRow) -> tuple[Any, ...]:
    """The INSERT's values, in ``INSERT_COLUMNS``'s order (both stores keep JSON text)."""
    return (row.version, row.created_at, row.token,
            msgspec.json.encode(row.changes).decode(),
            msgspec.json.encode(row.document).decode())


def info_of(values: tuple[Any, ...] | Any) -> CatalogVersionInfo:
    """A stored row's first four columns (version, created_at, token, changes)."""
    version, created_at, token, changes = tuple(values)[:4]
    return CatalogVersionInfo(version=version, created_at=created_at, token=token,
                              changes=msgspec.json.decode(changes))


def row_of(values: tuple[Any, ...] | Any) -> CatalogVersionRow:
    """A stored row (``INSERT_COLUMNS``) as a CatalogVersionRow."""
    found = tuple(values)
    info = info_of(found)
    return CatalogVersionRow(**msgspec.structs.asdict(info),
                             document=msgspec.json.decode(found[4]))
