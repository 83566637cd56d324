"""Queries on postbacks and their attempts, on the read connection."""

from __future__ import annotations

import aiosqlite
import msgspec

from storage.records import (
    DUE_SCAN,
    AttemptView,
    DuePostback,
    HostLoad,
    PostbackStatus,
    PostbackView,
)
from storage.views import POSTBACK_COLUMNS, postback_row

# The statements are module constants, like every other query's, read in one place.
# The oldest due postbacks (up to ?4 looked at), ranked within their host: a host takes
# per_host (?5) less what it has in flight (?3, a JSON object host -> count).
_DUE = """
SELECT id, method, url, host, body, secret, attempts, max_attempts, endpoint,
       signing_secrets FROM (
    SELECT *, row_number() OVER (PARTITION BY host ORDER BY next_attempt_at, id) AS rank
    FROM (
        SELECT id, method, url, host, body, secret, attempts, max_attempts, endpoint,
               signing_secrets, next_attempt_at
        FROM postbacks
        WHERE status = 'pending' AND next_attempt_at <= ?1
          AND id NOT IN (SELECT value FROM json_each(?2))
          AND host NOT IN (SELECT key FROM json_each(?3) WHERE value >= ?5)
        ORDER BY next_attempt_at, id LIMIT ?4))
WHERE rank <= ?5 - coalesce((SELECT value FROM json_each(?3) WHERE key = host), 0)
ORDER BY next_attempt_at, id LIMIT ?6
"""
_NEXT_DUE_AT = (
    "SELECT min(next_attempt_at) FROM postbacks WHERE status = 'pending'"
    " AND id NOT IN (SELECT value FROM json_each(?))"
    " AND host NOT IN (SELECT value FROM json_each(?))"
)
_POSTBACKS = (
    f"SELECT {POSTBACK_COLUMNS} FROM postbacks"
    " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR cid = ?2)"
    " AND (?4 IS NULL OR (kind = 'source' AND pid = ?4))"
    " ORDER BY id DESC LIMIT ?3"
)
_OF_TRANSACTION = f"SELECT {POSTBACK_COLUMNS} FROM postbacks WHERE transaction_id = ? ORDER BY id"
_POSTBACK = f"SELECT {POSTBACK_COLUMNS} FROM postbacks WHERE id = ?"
_ATTEMPTS = (
    "SELECT attempt, started_at, url, status_code, error, latency_ms, response"
    " FROM postback_attempts WHERE postback_id = ? ORDER BY id"
)
_COUNTS = "SELECT status, count(*) FROM postbacks GROUP BY status"
_ids = msgspec.json.Encoder()


async def due(
    conn: aiosqlite.Connection,
    now: str,
    *,
    limit: int,
    skip_ids: list[int],
    hosts: HostLoad,
) -> list[DuePostback]:
    """Pending postbacks due by ``now``, oldest first, leaving out ``skip_ids`` and, for
    each host, any more than it has room for."""
    rows = await conn.execute_fetchall(_DUE, (
        now, _ids.encode(skip_ids), _ids.encode(hosts.in_flight), max(limit, DUE_SCAN),
        hosts.per_host, limit))
    return [
        DuePostback(id=id_, method=method, url=url, host=host, body=body, secret=secret,
                    attempts=attempts, max_attempts=max_attempts, endpoint=endpoint,
                    signing_secrets=signing_secrets)
        for id_, method, url, host, body, secret, attempts, max_attempts, endpoint,
        signing_secrets in rows
    ]


async def next_due_at(
    conn: aiosqlite.Connection, skip_ids: list[int], skip_hosts: list[str]
) -> str | None:
    """When the next pending postback that could be sent now falls due."""
    [(value,)] = await conn.execute_fetchall(  # an aggregate: always one row
        _NEXT_DUE_AT, (_ids.encode(skip_ids), _ids.encode(skip_hosts)))
    return value  # type: ignore[no-any-return]


async def postbacks(
    conn: aiosqlite.Connection,
    *,
    status: PostbackStatus | None,
    cid: str | None,
    limit: int,
    source: str | None = None,
) -> list[PostbackView]:
    """The newest postbacks first, optionally of one status and one campaign, or only a
    source's own."""
    rows = await conn.execute_fetchall(_POSTBACKS, (status, cid, limit, source))
    return [postback_row(row) for row in rows]


async def postbacks_of_transaction(
    conn: aiosqlite.Connection, transaction_id: str
) -> list[PostbackView]:
    rows = await conn.execute_fetchall(_OF_TRANSACTION, (transaction_id,))
    return [postback_row(row) for row in rows]


async def postback(conn: aiosqlite.Connection, postback_id: int) -> PostbackView | None:
    """One postback with every attempt made to deliver it."""
    rows = list(await conn.execute_fetchall(_POSTBACK, (postback_id,)))
    if not rows:
        return None
    attempts = [
        AttemptView(attempt=attempt, started_at=started_at, url=url, status_code=status_code,
                    error=error, latency_ms=latency_ms, response=response)
        for attempt, started_at, url, status_code, error, latency_ms, response
        in await conn.execute_fetchall(_ATTEMPTS, (postback_id,))
    ]
    return msgspec.structs.replace(postback_row(rows[0]), attempt_log=attempts)


async def counts_by_status(conn: aiosqlite.Connection) -> dict[PostbackStatus, int]:
    """How many postbacks are in each status (an index scan, not a table scan)."""
    rows = await conn.execute_fetchall(_COUNTS)
    return {status: count for status, count in rows}
