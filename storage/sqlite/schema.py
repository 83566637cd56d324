"""The database schema, as ordered migrations tracked in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal

from storage.endpoints import endpoint_of
from storage.money import micro
from storage.sqlite import rollups, tag_rollups

# A step is SQL, or a function for what SQL cannot do exactly (it runs inside the
# migration's transaction).
Step = str | Callable[[sqlite3.Connection], None]


def _backfill_micro(conn: sqlite3.Connection) -> None:
    """Millionths for the amounts stored before the micro columns (exact, via Decimal)."""
    for column in ("events ADD COLUMN revenue_micro INTEGER",
                   "events ADD COLUMN payout_micro INTEGER",
                   "leads ADD COLUMN cost_micro INTEGER"):
        conn.execute(f"ALTER TABLE {column}")
    events = conn.execute("SELECT id, revenue, payout FROM events"
                          " WHERE revenue IS NOT NULL OR payout IS NOT NULL").fetchall()
    conn.executemany(
        "UPDATE events SET revenue_micro = ?, payout_micro = ? WHERE id = ?",
        ((_micro(revenue), _micro(payout), row_id) for row_id, revenue, payout in events))
    leads = conn.execute("SELECT transaction_id, cost FROM leads"
                         " WHERE cost IS NOT NULL").fetchall()
    conn.executemany("UPDATE leads SET cost_micro = ? WHERE transaction_id = ?",
                     ((_micro(cost), transaction_id) for transaction_id, cost in leads))
    # Reports read only these indexes: each covers its query, so no table row is visited.
    for index in (
        "events_by_fired ON events(fired_at, cid, pid, event_id)",
        "events_by_converted ON events(converted_at, status, cid, pid, event_id,"
        " revenue_micro, payout_micro) WHERE conversion = 1",
        "leads_by_created ON leads(created_at, cid, pid, cost_micro)",
        "conversion_changes_by_changed ON conversion_changes(to_status, changed_at,"
        " conversion_id)",
    ):
        conn.execute(f"CREATE INDEX {index}")


def _add_rollups(conn: sqlite3.Connection) -> None:
    """The hourly roll-ups reports read (counted from the stored rows by migration 7).

    This step once summed them here too, in SQL, which a month of the largest amounts
    overflows; the recount that follows it at 7 is exact, so the first one is left out.
    """
    conn.execute(rollups.CREATE)


# The postbacks table of migration 2 with the "paused" status (a CHECK is only changed by
# rebuilding the table), the endpoint each goes to and its Standard Webhooks secrets.
_POSTBACKS_11 = """
CREATE TABLE postbacks_11 (
    id INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    cid TEXT NOT NULL,
    pid TEXT NOT NULL,
    event_id TEXT NOT NULL,
    conversion_id TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('buyer', 'source')),
    method TEXT NOT NULL CHECK (method IN ('GET', 'POST')),
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    body TEXT,
    secret TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'paused')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    endpoint TEXT NOT NULL DEFAULT '',
    signing_secrets TEXT
)
"""
_ENDPOINTS = (
    "CREATE INDEX postbacks_due ON postbacks(next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX postbacks_by_status ON postbacks(status, id)",
    "CREATE INDEX postbacks_by_transaction ON postbacks(transaction_id, id)",
    "CREATE INDEX postbacks_by_endpoint ON postbacks(endpoint, status)",
    "CREATE INDEX postbacks_failed_by_created ON postbacks(created_at) WHERE status = 'failed'",
    # Each endpoint's health; a row appears with its first attempt.
    """CREATE TABLE endpoints (
        endpoint TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('active', 'paused')),
        consecutive_failures INTEGER NOT NULL,
        failing_since TEXT,
        last_success_at TEXT,
        last_failure_at TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        paused_at TEXT,
        paused_reason TEXT,
        not_before TEXT
    ) WITHOUT ROWID""",
    # Attempts and deliveries per endpoint and hour, for the success rate of a day.
    """CREATE TABLE endpoint_hours (
        endpoint TEXT NOT NULL,
        hour TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        PRIMARY KEY (endpoint, hour)
    ) WITHOUT ROWID""",
)


def _endpoints(conn: sqlite3.Connection) -> None:
    """Rebuild postbacks (SQLite's documented order: the new table is renamed to the old
    name, so postback_attempts keeps referring to it; the migration's connection has
    foreign keys off), then name each stored postback's endpoint from its URL."""
    conn.execute(_POSTBACKS_11)
    conn.execute("INSERT INTO postbacks_11 SELECT *, '', NULL FROM postbacks")
    conn.execute("DROP TABLE postbacks")
    conn.execute("ALTER TABLE postbacks_11 RENAME TO postbacks")
    rows = conn.execute("SELECT id, url FROM postbacks").fetchall()
    conn.executemany("UPDATE postbacks SET endpoint = ? WHERE id = ?",
                     ((endpoint_of(url), row_id) for row_id, url in rows))
    for statement in _ENDPOINTS:
        conn.execute(statement)
    if conn.execute("PRAGMA foreign_key_check").fetchall():  # pragma: no cover
        raise RuntimeError("postback attempts lost their postbacks")


def _exact_rollups(conn: sqlite3.Connection) -> None:
    """Money roll-ups in two integers each, recounted: a cell a 64-bit sum turned into a
    float (reports then failed for its hour) is repaired by the recount."""
    for statement in rollups.ADD_HIGH:
        conn.execute(statement)
    rollups.recount(conn)


def _micro(text: str | None) -> int | None:
    return None if text is None else micro(Decimal(text))


# Each entry moves the schema one version forward; never edit one that has shipped.
MIGRATIONS: tuple[Step, ...] = (
    """
    CREATE TABLE leads (
        transaction_id TEXT PRIMARY KEY,
        cid TEXT NOT NULL,
        pid TEXT NOT NULL,
        fields TEXT NOT NULL,
        cost TEXT,
        ip TEXT,
        user_agent TEXT,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        transaction_id TEXT NOT NULL REFERENCES leads(transaction_id),
        cid TEXT NOT NULL,
        event_id TEXT NOT NULL,
        pid TEXT NOT NULL,
        once INTEGER NOT NULL,
        conversion INTEGER NOT NULL,
        conversion_id TEXT,
        revenue TEXT,
        payout TEXT,
        converted_at TEXT,
        fields TEXT NOT NULL,
        ip TEXT,
        user_agent TEXT,
        fired_at TEXT NOT NULL
    );
    CREATE INDEX events_by_transaction ON events(transaction_id, id);
    -- The actor already refuses duplicates; the index makes a bug there fail loudly
    -- instead of storing a second conversion.
    CREATE UNIQUE INDEX events_fire_once ON events(transaction_id, event_id) WHERE once = 1;
    CREATE UNIQUE INDEX events_by_conversion ON events(conversion_id)
        WHERE conversion_id IS NOT NULL;

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        conversion_id TEXT NOT NULL UNIQUE,
        transaction_id TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        created_at TEXT NOT NULL
    );
    CREATE INDEX outbox_by_status ON outbox(status, id);
    """,
    # 2: postbacks rendered at fire time, each attempt logged; replaces the bare outbox.
    """
    DROP TABLE outbox;

    CREATE TABLE postbacks (
        id INTEGER PRIMARY KEY,
        transaction_id TEXT NOT NULL,
        cid TEXT NOT NULL,
        pid TEXT NOT NULL,
        event_id TEXT NOT NULL,
        conversion_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('buyer', 'source')),
        method TEXT NOT NULL CHECK (method IN ('GET', 'POST')),
        url TEXT NOT NULL,
        host TEXT NOT NULL,
        body TEXT,
        secret TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX postbacks_due ON postbacks(next_attempt_at) WHERE status = 'pending';
    CREATE INDEX postbacks_by_status ON postbacks(status, id);
    CREATE INDEX postbacks_by_transaction ON postbacks(transaction_id, id);

    CREATE TABLE postback_attempts (
        id INTEGER PRIMARY KEY,
        postback_id INTEGER NOT NULL REFERENCES postbacks(id),
        attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        url TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        latency_ms REAL NOT NULL,
        response TEXT
    );
    CREATE INDEX postback_attempts_by_postback ON postback_attempts(postback_id, id);
    """,
    # 3: conversion statuses and their audit trail. Conversions fired before this were
    # approved when they fired.
    """
    ALTER TABLE events ADD COLUMN status TEXT CHECK (
        status IN ('approved', 'pending', 'rejected', 'reversed'));
    ALTER TABLE events ADD COLUMN decided_at TEXT;
    UPDATE events SET status = 'approved', decided_at = fired_at WHERE conversion = 1;
    CREATE INDEX events_conversions ON events(id) WHERE conversion = 1;

    CREATE TABLE conversion_changes (
        id INTEGER PRIMARY KEY,
        conversion_id TEXT NOT NULL,  -- events.conversion_id (a partial index: no FK)
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        reason TEXT,
        source TEXT NOT NULL,
        changed_at TEXT NOT NULL
    );
    CREATE INDEX conversion_changes_by_conversion ON conversion_changes(conversion_id, id);
    """,
    # 4: answers kept for requests sent with an Idempotency-Key.
    """
    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        headers TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys(expires_at);
    """,
    # 5: amounts in millionths beside their text, and the indexes reports read.
    _backfill_micro,
    # 6: hourly roll-ups (storage/sqlite/rollups.py), kept by the writer from now on.
    _add_rollups,
    # 7: money roll-ups that no sum can overflow, recounted from the rows.
    _exact_rollups,
    # 8: why a conversion was stored pending. Before this, only manual approval held one:
    # those pending now, or ever pending by their audit trail, were held for it.
    """
    ALTER TABLE events ADD COLUMN hold_reason TEXT;
    UPDATE events SET hold_reason = 'manual_approval'
    WHERE conversion = 1 AND (status = 'pending' OR conversion_id IN (
        SELECT conversion_id FROM conversion_changes WHERE from_status = 'pending'));
    """,
    # 9: the money rules. Which payout rule priced a conversion, and which earlier lead a
    # duplicate lead repeats; each cap's use per period and what each conversion added to
    # it (given back when it is rejected or reversed); keyed hashes of the lead field
    # values a campaign de-duplicates on.
    """
    ALTER TABLE events ADD COLUMN payout_rule TEXT;
    ALTER TABLE events ADD COLUMN duplicate_of TEXT;
    CREATE TABLE cap_usage (
        cap TEXT NOT NULL,
        period TEXT NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (cap, period)
    ) WITHOUT ROWID;
    CREATE TABLE cap_charges (
        conversion_id TEXT NOT NULL,
        cap TEXT NOT NULL,
        period TEXT NOT NULL,
        amount INTEGER NOT NULL,
        PRIMARY KEY (conversion_id, cap)
    ) WITHOUT ROWID;
    CREATE TABLE lead_keys (
        cid TEXT NOT NULL,
        digest TEXT NOT NULL,
        created_at TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        PRIMARY KEY (cid, digest, created_at, transaction_id)
    ) WITHOUT ROWID;
    """,
    # 10: a lead's own hashes, found by its transaction id, for the conversion's check.
    "CREATE INDEX lead_keys_by_lead ON lead_keys(transaction_id);",
    # 11: endpoint health (app/postbacks/endpoints.py).
    _endpoints,
    # 12: an event sent in another currency keeps its revenue as sent, the currency and
    # the rate it was converted at (storage/currency.py); earlier ones were sent in the
    # report currency.
    """
    ALTER TABLE events ADD COLUMN original_revenue TEXT;
    ALTER TABLE events ADD COLUMN currency TEXT;
    ALTER TABLE events ADD COLUMN rate TEXT;
    """,
    # 13: roll-ups by tracking field (storage/sqlite/tag_rollups.py), empty until the
    # config's [reports] breakdowns names a field.
    tag_rollups.CREATE,
    # 14: the catalog's versions, with [server] catalog = "database" (storage/catalog.py).
    """
    CREATE TABLE catalog_versions (
        version INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        token TEXT NOT NULL,
        changes TEXT NOT NULL,
        document TEXT NOT NULL
    );
    """,
    # 15: who made each change: the token's name on a conversion's change, on a postback
    # an operator re-queued, on an endpoint an operator resumed.
    """
    ALTER TABLE conversion_changes ADD COLUMN token TEXT;
    ALTER TABLE postbacks ADD COLUMN requeued_by TEXT;
    ALTER TABLE endpoints ADD COLUMN resumed_by TEXT;
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this program "
            f"understands ({len(MIGRATIONS)})"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        if isinstance(step, str):
            # executescript commits first, so the version bump rides in the same script.
            conn.executescript(f"BEGIN;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;")
            continue
        # No executescript here: it would commit the open transaction before its script.
        conn.execute("BEGIN")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return len(MIGRATIONS)
