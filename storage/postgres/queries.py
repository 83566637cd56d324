"""The read side on PostgreSQL: the same views as storage/sqlite/reader, outbox and conversions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from storage.currency import SENT_COLUMNS, sent_fields
from storage.errors import StoreUnavailable
from storage.money import money_value
from storage.pacing import Slot
from storage.records import (
    DUE_SCAN,
    RESERVED,
    AnswerRow,
    AttemptView,
    ConversionCounts,
    ConversionStatus,
    ConversionView,
    DuePostback,
    EventView,
    HistoryEntry,
    HostLoad,
    PostbackStatus,
    PostbackView,
    StoredTransaction,
    TransactionView,
    conversion_id_text,
    decode_fields,
)
from storage.views import (
    CONVERSION_COLUMNS,
    POSTBACK_COLUMNS,
    conversion_row,
    conversions_by_status,
    postback_row,
)

Pool = asyncpg.Pool


async def load(pool: Pool, ids: list[str]) -> dict[str, StoredTransaction]:
    """Every transaction among ``ids`` with its lead and fired event ids, in one query."""
    rows = await pool.fetch(
        "SELECT l.transaction_id, l.cid, l.pid, l.cost, l.created_at,"
        " ARRAY(SELECT DISTINCT e.event_id FROM events AS e"
        "       WHERE e.transaction_id = l.transaction_id)"
        " FROM leads AS l WHERE l.transaction_id = ANY($1::text[])", ids)
    return {
        transaction_id: StoredTransaction(
            cid=cid, pid=pid, cost=None if cost is None else Decimal(cost),
            created_at=created_at, fired=frozenset(fired))
        for transaction_id, cid, pid, cost, created_at, fired in rows
    }


async def lead_fields(pool: Pool, transaction_id: str) -> dict[str, Any]:
    fields = await pool.fetchval(
        "SELECT fields FROM leads WHERE transaction_id = $1", transaction_id)
    return {} if fields is None else decode_fields(fields)


async def transaction_view(pool: Pool, transaction_id: str) -> TransactionView | None:
    lead = await pool.fetchrow(
        "SELECT cid, pid, fields, cost, created_at FROM leads WHERE transaction_id = $1",
        transaction_id)
    if lead is None:
        return None
    events = [
        EventView(event_id=row["event_id"], pid=row["pid"], conversion=row["conversion"],
                  conversion_id=conversion_id_text(row["conversion_id"]),
                  revenue=money_value(row["revenue"]), payout=money_value(row["payout"]),
                  converted_at=row["converted_at"], fired_at=row["fired_at"],
                  fields=decode_fields(row["fields"]), status=row["status"],
                  decided_at=row["decided_at"], reason=row["hold_reason"],
                  payout_rule=row["payout_rule"], duplicate_of=row["duplicate_of"],
                  **sent_fields(row["original_revenue"], row["currency"], row["rate"]))
        for row in await pool.fetch(
            "SELECT event_id, pid, conversion, conversion_id, revenue, payout, converted_at,"
            " fired_at, fields, status, decided_at, hold_reason, payout_rule, duplicate_of, "
            + SENT_COLUMNS + " FROM events"
            " WHERE transaction_id = $1 ORDER BY id", transaction_id)
    ]
    postbacks = [postback_row(row) for row in await pool.fetch(
        f"SELECT {POSTBACK_COLUMNS} FROM postbacks WHERE transaction_id = $1 ORDER BY id",
        transaction_id)]
    return TransactionView(
        transaction_id=transaction_id, cid=lead["cid"], pid=lead["pid"],
        fields=decode_fields(lead["fields"]), cost=money_value(lead["cost"]),
        created_at=lead["created_at"], events=events,
        conversions=conversions_by_status(events), postbacks=postbacks)


# A key is reserved by a row of status RESERVED, taken only where no live row is: one
# process handles the key; a process that dies holding it frees it when ``until`` passes.
_RESERVE = f"""
INSERT INTO idempotency_keys AS k (key, fingerprint, status, content_type, headers, body,
                                   created_at, expires_at)
VALUES ($1, $2, {RESERVED}, '', '{{}}', '', $3, $4)
ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, status = {RESERVED},
    content_type = '', headers = '{{}}', body = '', created_at = excluded.created_at,
    expires_at = excluded.expires_at
WHERE k.expires_at <= $3
RETURNING key
"""
_FIND_ANSWER = (
    "SELECT key, fingerprint, status, content_type, headers, body, created_at, expires_at"
    " FROM idempotency_keys WHERE key = $1 AND expires_at > $2")


async def claim_answer(pool: Pool, key: str, fingerprint: str, now: str,
                       until: str) -> AnswerRow | None:
    """None once this process has reserved ``key``; else the row that holds it."""
    for _ in range(3):  # the row may be released between the two statements
        if await pool.fetchval(_RESERVE, key, fingerprint, now, until) is not None:
            return None
        row = await pool.fetchrow(_FIND_ANSWER, key, now)
        if row is not None:
            return AnswerRow(**dict(row))
    raise StoreUnavailable  # changed hands three times in a row: let the client retry


# Due postbacks no process holds, leased to this one, and for each host no more than it
# has room for: per_host ($8) less what this process has in flight there ($3 hosts, $7
# counts). A row leased is a row written, so nothing is leased that will not be sent now.
# Rows another process is leasing at this moment are skipped, not waited for. $6 stands
# in for the database's clock in tests (NULL when serving).
_LEASE = """
UPDATE postbacks SET claimed_until = coalesce($6::timestamptz, now()) + make_interval(secs => $5)
WHERE id IN (
    SELECT id FROM postbacks
    WHERE id IN (
        SELECT id FROM (
            SELECT id, host, next_attempt_at, row_number() OVER (
                PARTITION BY host ORDER BY next_attempt_at, id) AS rank
            FROM (
                SELECT id, host, next_attempt_at FROM postbacks
                WHERE status = 'pending' AND next_attempt_at <= $1
                  AND (claimed_until IS NULL
                       OR claimed_until <= coalesce($6::timestamptz, now()))
                  AND id <> ALL($2::bigint[])
                  -- stored pending by a node that had not yet seen the pause commit
                  AND endpoint NOT IN (SELECT endpoint FROM endpoints WHERE state = 'paused')
                  AND host NOT IN (
                      SELECT busy.host FROM unnest($3::text[], $7::int[]) AS busy(host, load)
                      WHERE busy.load >= $8)
                ORDER BY next_attempt_at, id LIMIT $9) AS candidates) AS ranked
        WHERE rank <= $8 - coalesce(
            (SELECT load FROM unnest($3::text[], $7::int[]) AS busy(host, load)
             WHERE busy.host = ranked.host), 0)
        ORDER BY next_attempt_at, id LIMIT $4)
      AND (claimed_until IS NULL OR claimed_until <= coalesce($6::timestamptz, now()))
    FOR UPDATE SKIP LOCKED)
RETURNING id, method, url, host, body, secret, attempts, max_attempts, endpoint,
          signing_secrets, claimed_until AS lease
"""


async def lease_due_postbacks(pool: Pool, now: str, *, limit: int, skip_ids: list[int],
                              hosts: HostLoad, lease_seconds: float,
                              db_now: datetime | None) -> list[DuePostback]:
    rows = await pool.fetch(_LEASE, now, skip_ids, list(hosts.in_flight), limit, lease_seconds,
                            db_now, list(hosts.in_flight.values()), hosts.per_host,
                            max(limit, DUE_SCAN))
    # The lease's end is its token: a later lease of the row always ends later.
    return sorted((DuePostback(**dict(row) | {"lease": row["lease"].isoformat()})
                   for row in rows), key=lambda due: due.id)


# The host's next free slot, taken (moved one interval on) only while it is within the
# horizon; the row lock orders two processes taking slots of one host.
_TAKE_SLOT = """
INSERT INTO host_slots AS h (host, next_free)
VALUES ($1, $2::timestamptz + make_interval(secs => $3))
ON CONFLICT (host) DO UPDATE
SET next_free = greatest(h.next_free, $2::timestamptz) + make_interval(secs => $3)
WHERE h.next_free <= $2::timestamptz + make_interval(secs => $4)
RETURNING next_free - make_interval(secs => $3)
"""


async def take_send_slot(pool: Pool, host: str, now: datetime, interval: float,
                         horizon: float) -> Slot:
    """storage.pacing.Slots.take, shared by every process on the database."""
    slot: datetime | None = await pool.fetchval(_TAKE_SLOT, host, now, interval, horizon)
    if slot is not None:
        return Slot(True, slot)
    free: datetime = await pool.fetchval(
        "SELECT next_free FROM host_slots WHERE host = $1", host)
    return Slot(False, free)


async def next_postback_due_at(pool: Pool, skip_ids: list[int], skip_hosts: list[str],
                               db_now: datetime | None) -> str | None:
    """When the next postback that no process holds falls due (a leased one is looked at
    again when the dispatcher next polls)."""
    due_at: str | None = await pool.fetchval(
        "SELECT min(next_attempt_at) FROM postbacks WHERE status = 'pending'"
        " AND (claimed_until IS NULL OR claimed_until <= coalesce($3::timestamptz, now()))"
        " AND id <> ALL($1::bigint[]) AND host <> ALL($2::text[])",
        skip_ids, skip_hosts, db_now)
    return due_at


async def postbacks(pool: Pool, *, status: PostbackStatus | None, cid: str | None,
                    limit: int, source: str | None = None) -> list[PostbackView]:
    rows = await pool.fetch(
        f"SELECT {POSTBACK_COLUMNS} FROM postbacks"
        " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR cid = $2)"
        " AND ($4::text IS NULL OR (kind = 'source' AND pid = $4))"
        " ORDER BY id DESC LIMIT $3", status, cid, limit, source)
    return [postback_row(row) for row in rows]


async def postback(pool: Pool, postback_id: int) -> PostbackView | None:
    row = await pool.fetchrow(
        f"SELECT {POSTBACK_COLUMNS} FROM postbacks WHERE id = $1", postback_id)
    if row is None:
        return None
    attempts = [AttemptView(**dict(attempt)) for attempt in await pool.fetch(
        "SELECT attempt, started_at, url, status_code, error, latency_ms, response"
        " FROM postback_attempts WHERE postback_id = $1 ORDER BY id", postback_id)]
    return msgspec.structs.replace(postback_row(row), attempt_log=attempts)


async def postback_counts(pool: Pool) -> dict[PostbackStatus, int]:
    rows = await pool.fetch("SELECT status, count(*) FROM postbacks GROUP BY status")
    return {status: count for status, count in rows}


async def conversions(
    pool: Pool, *, status: ConversionStatus | None, reason: str | None = None,
    cid: str | None, pid: str | None,
    converted_from: str | None, converted_before: str | None, before_id: int | None,
    limit: int,
) -> list[tuple[int, ConversionView]]:
    """Conversions, newest first, each with the row id that the next page starts below."""
    sql = [f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion"]
    params: list[Any] = []
    for clause, value in (("status = ", status), ("hold_reason = ", reason),
                          ("cid = ", cid), ("pid = ", pid),
                          ("converted_at >= ", converted_from),
                          ("converted_at < ", converted_before), ("id < ", before_id)):
        if value is not None:
            params.append(value)
            sql.append(f"AND {clause}${len(params)}")
    params.append(limit)
    sql.append(f"ORDER BY id DESC LIMIT ${len(params)}")
    return [conversion_row(row) for row in await pool.fetch(" ".join(sql), *params)]


async def conversion(pool: Pool, conversion_id: str) -> ConversionView | None:
    """One conversion with its history: its firing, then every change in order."""
    row = await pool.fetchrow(
        f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion_id = $1", conversion_id)
    if row is None:
        return None
    _, found = conversion_row(row)
    changes = await pool.fetch(
        "SELECT from_status, to_status, reason, source, changed_at, token"
        " FROM conversion_changes"
        " WHERE conversion_id = $1 ORDER BY id", conversion_id)
    first = changes[0]["from_status"] if changes else found.status
    # The firing's reason is why it was held, if it was.
    history = [HistoryEntry(from_status=None, to_status=first, at=found.fired_at,
                            reason=found.reason, source="fire")]
    history += [HistoryEntry(from_status=before, to_status=after, at=at, reason=reason,
                             source=source, token=token)
                for before, after, reason, source, at, token in changes]
    return msgspec.structs.replace(found, history=history)


async def conversion_statuses(pool: Pool,
                              conversion_ids: list[str]) -> dict[str, ConversionView]:
    rows = await pool.fetch(
        f"SELECT {CONVERSION_COLUMNS} FROM events WHERE conversion_id = ANY($1::text[])",
        conversion_ids)
    return {view.conversion_id: view for _, view in map(conversion_row, rows)}


async def conversion_counts(pool: Pool) -> ConversionCounts:
    rows = await pool.fetch(
        "SELECT status, hold_reason, count(*) FROM events WHERE conversion"
        " GROUP BY status, hold_reason")
    return {(status, reason): count for status, reason, count in rows}
