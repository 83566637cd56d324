"""Writing the catalog: each change is a new version, made on the version its writer read.

The store refuses a version that is not the next one (storage/catalog.py), so of two
operators changing the same version the second is told it changed (412) instead of
silently undoing the first one's change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from actors.clock import utc_text
from app.catalog.documents import applied
from app.config.reload import changes
from app.config.schema import Config
from storage.backend import EventStore
from storage.catalog import CatalogVersionRow
from storage.records import WriteOp

# Who imported the config file's catalog into an empty database.
FILE_IMPORT = "config file"


def what_changed(old: Config, new: Config) -> dict[str, list[str]]:
    """Campaigns, sources and events added, removed or changed (as a reload says it)."""
    return {kind: ids for kind, ids in changes(old, new).items() if kind != "sections_changed"}


def next_version(base: Config, head: CatalogVersionRow | None,
                 document: Mapping[str, Any], *, token: str, now: datetime,
                 origin: str, note: Mapping[str, list[str]] | None = None,
                 ) -> tuple[CatalogVersionRow, Config]:
    """The version after ``head`` holding ``document``, and the config it makes of
    ``base`` (the config in force: its server settings stay); raises ConfigError when the
    result breaks a rule of the config."""
    new = applied(base, document, origin)
    old = applied(base, {} if head is None else head.document, origin, check=False)
    changed = what_changed(old, new)
    row = CatalogVersionRow(
        version=1 if head is None else head.version + 1, created_at=utc_text(now),
        token=token, changes={**changed, **(note or {})}, document=dict(document))
    return row, new


async def store(store: EventStore, row: CatalogVersionRow) -> None:
    """Commit ``row``; raises CatalogVersionTaken when it is not the next version."""
    await store.commit(WriteOp(catalog=row))
