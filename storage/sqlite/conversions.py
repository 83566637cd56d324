"""Queries on conversions and their audit trail, on the read connection."""

from __future__ import annotations

from typing import Any

import aiosqlite
import msgspec

from storage.records import ConversionCounts, ConversionStatus, ConversionView, HistoryEntry
from storage.views import CONVERSION_COLUMNS, conversion_row

_ids = msgspec.json.Encoder()


async def conversions(
    conn: aiosqlite.Connection,
    *,
    status: ConversionStatus | None,
    reason: str | None = None,
    cid: str | None,
    pid: str | None,
    converted_from: str | None,
    converted_before: str | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[int, ConversionView]]:
    """Conversions, newest first, each with the row id that the next page starts below."""
    sql = [f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion = 1"]
    params: list[Any] = []
    for clause, value in (("status = ?", status), ("hold_reason = ?", reason),
                          ("cid = ?", cid), ("pid = ?", pid),
                          ("converted_at >= ?", converted_from),
                          ("converted_at < ?", converted_before), ("id < ?", before_id)):
        if value is not None:
            sql.append(f"AND {clause}")
            params.append(value)
    sql.append("ORDER BY id DESC LIMIT ?")
    params.append(limit)
    return [conversion_row(row) for row in await conn.execute_fetchall(" ".join(sql), params)]


async def conversion(conn: aiosqlite.Connection, conversion_id: str) -> ConversionView | None:
    """One conversion with its history: its firing, then every change in order."""
    rows = list(await conn.execute_fetchall(
        f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion_id = ?", (conversion_id,)))
    if not rows:
        return None
    _, found = conversion_row(rows[0])
    changes = list(await conn.execute_fetchall(
        "SELECT from_status, to_status, reason, source, changed_at, token"
        " FROM conversion_changes"
        " WHERE conversion_id = ? ORDER BY id", (conversion_id,)))
    first = changes[0][0] if changes else found.status
    # The firing's reason is why it was held, if it was.
    history = [HistoryEntry(from_status=None, to_status=first, at=found.fired_at,
                            reason=found.reason, source="fire")]
    history += [HistoryEntry(from_status=before, to_status=after, at=at, reason=reason,
                             source=source, token=token)
                for before, after, reason, source, at, token in changes]
    return msgspec.structs.replace(found, history=history)


async def statuses(conn: aiosqlite.Connection,
                   conversion_ids: list[str]) -> dict[str, ConversionView]:
    """The conversions among ``conversion_ids`` that exist, by id."""
    rows = await conn.execute_fetchall(
        f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion_id IN"
        " (SELECT value FROM json_each(?))", (_ids.encode(conversion_ids).decode(),))
    return {view.conversion_id: view for _, view in map(conversion_row, rows)}


async def counts_by_status(conn: aiosqlite.Connection) -> ConversionCounts:
    """How many conversions are in each status, per hold reason."""
    rows = await conn.execute_fetchall(
        "SELECT status, hold_reason, count(*) FROM events WHERE conversion = 1"
        " GROUP BY status, hold_reason")
    return {(status, reason): count for status, reason, count in rows}
