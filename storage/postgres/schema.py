"""The PostgreSQL schema, as ordered migrations tracked in ``schema_version``.

Columns keep SQLite's names and text forms (money as exact decimal text beside its
millionths, times as UTC ISO-8601 text), so rows and views are the same on both stores.
Every table that grows with traffic is keyed by ``transaction_id`` first, so the schema
could be distributed by it.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.postgres import rollups, tag_rollups

# Each entry moves the schema one version forward; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE leads (
        transaction_id TEXT PRIMARY KEY,
        cid TEXT NOT NULL,
        pid TEXT NOT NULL,
        fields TEXT NOT NULL,
        cost TEXT,
        ip TEXT,
        user_agent TEXT,
        created_at TEXT NOT NULL,
        cost_micro BIGINT
    );

    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        transaction_id TEXT NOT NULL REFERENCES leads(transaction_id),
        cid TEXT NOT NULL,
        event_id TEXT NOT NULL,
        pid TEXT NOT NULL,
        once BOOLEAN NOT NULL,
        conversion BOOLEAN NOT NULL,
        conversion_id TEXT,
        revenue TEXT,
        payout TEXT,
        converted_at TEXT,
        fields TEXT NOT NULL,
        ip TEXT,
        user_agent TEXT,
        fired_at TEXT NOT NULL,
        status TEXT CHECK (status IN ('approved', 'pending', 'rejected', 'reversed')),
        decided_at TEXT,
        revenue_micro BIGINT,
        payout_micro BIGINT
    );
    CREATE INDEX events_by_transaction ON events(transaction_id, id);
    -- The duplicate rule across processes: the second insert of a fire-once event fails.
    CREATE UNIQUE INDEX events_fire_once ON events(transaction_id, event_id) WHERE once;
    CREATE UNIQUE INDEX events_by_conversion ON events(conversion_id)
        WHERE conversion_id IS NOT NULL;
    CREATE INDEX events_conversions ON events(id) WHERE conversion;

    -- Lock windows, opened and read with the database's clock only.
    CREATE TABLE windows (
        transaction_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        open_until TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (transaction_id, event_id)
    );

    CREATE TABLE postbacks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        postback_id BIGINT NOT NULL REFERENCES postbacks(id),
        attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        url TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        latency_ms DOUBLE PRECISION NOT NULL,
        response TEXT
    );
    CREATE INDEX postback_attempts_by_postback ON postback_attempts(postback_id, id);

    CREATE TABLE conversion_changes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conversion_id TEXT NOT NULL,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        reason TEXT,
        source TEXT NOT NULL,
        changed_at TEXT NOT NULL
    );
    CREATE INDEX conversion_changes_by_conversion ON conversion_changes(conversion_id, id);

    CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        headers TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys(expires_at);
    """,
    # 2: a due postback is leased to the process sending it, until its attempt is recorded
    # or the lease runs out (the process died): then any process may send it.
    """
    ALTER TABLE postbacks ADD COLUMN claimed_until TIMESTAMPTZ;
    """,
    # 3: the indexes exact reports read (each covers its query; times compared as "C"
    # text, byte by byte like SQLite's) and the hourly roll-ups, summed from the rows
    # already stored and kept by the writer from now on (storage/postgres/rollups.py).
    """
    CREATE INDEX leads_by_created ON leads(created_at COLLATE "C")
        INCLUDE (cid, pid, cost_micro);
    CREATE INDEX events_by_fired ON events(fired_at COLLATE "C")
        INCLUDE (cid, pid, event_id);
    CREATE INDEX events_by_converted ON events(converted_at COLLATE "C")
        INCLUDE (status, cid, pid, event_id, revenue_micro, payout_micro) WHERE conversion;
    CREATE INDEX conversion_changes_by_changed
        ON conversion_changes(to_status, changed_at COLLATE "C") INCLUDE (conversion_id);
    """ + rollups.CREATE + rollups.REBUILD,
    # 4: money roll-ups in numeric: a bigint sum of ten of the largest amounts overflowed
    # (no overflowed value was ever stored: the write failed instead).
    rollups.NUMERIC,
    # 5: why a conversion was stored pending. Before this, only manual approval held one:
    # those pending now, or ever pending by their audit trail, were held for it.
    """
    ALTER TABLE events ADD COLUMN hold_reason TEXT;
    UPDATE events SET hold_reason = 'manual_approval'
    WHERE conversion AND (status = 'pending' OR conversion_id IN (
        SELECT conversion_id FROM conversion_changes WHERE from_status = 'pending'));
    """,
    # 6: the money rules (storage/sqlite/schema.py's migration 9).
    """
    ALTER TABLE events ADD COLUMN payout_rule TEXT;
    ALTER TABLE events ADD COLUMN duplicate_of TEXT;
    CREATE TABLE cap_usage (
        cap TEXT NOT NULL,
        period TEXT NOT NULL,
        used NUMERIC NOT NULL,
        PRIMARY KEY (cap, period)
    );
    CREATE TABLE cap_charges (
        conversion_id TEXT NOT NULL,
        cap TEXT NOT NULL,
        period TEXT NOT NULL,
        amount NUMERIC NOT NULL,
        PRIMARY KEY (conversion_id, cap)
    );
    CREATE TABLE lead_keys (
        cid TEXT NOT NULL,
        digest TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        transaction_id TEXT NOT NULL,
        PRIMARY KEY (cid, digest, created_at, transaction_id)
    );
    """,
    # 7: storage/sqlite/schema.py's migration 10.
    "CREATE INDEX lead_keys_by_lead ON lead_keys(transaction_id);",
    # 8: the batches committed lately (storage/postgres/writer.py): a retry of a batch
    # whose COMMIT went through but whose answer was lost writes nothing again.
    """
    CREATE TABLE committed_batches (
        token TEXT PRIMARY KEY,
        committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX committed_batches_by_time ON committed_batches(committed_at);
    """,
    # 9: endpoint health (storage/sqlite/schema.py's migration 11). A stored postback's
    # endpoint is its URL's host and path.
    """
    ALTER TABLE postbacks DROP CONSTRAINT postbacks_status_check;
    ALTER TABLE postbacks ADD CONSTRAINT postbacks_status_check
        CHECK (status IN ('pending', 'delivered', 'failed', 'paused'));
    ALTER TABLE postbacks ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
    ALTER TABLE postbacks ADD COLUMN signing_secrets TEXT;
    UPDATE postbacks SET endpoint = lower(host)
        || coalesce(substring(url from '^[^:/?#]+://[^/?#]*([^?#]*)'), '');
    CREATE INDEX postbacks_by_endpoint ON postbacks(endpoint, status);
    CREATE INDEX postbacks_failed_by_created ON postbacks(created_at) WHERE status = 'failed';
    CREATE TABLE endpoints (
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
    );
    CREATE TABLE endpoint_hours (
        endpoint TEXT NOT NULL,
        hour TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        PRIMARY KEY (endpoint, hour)
    );
    -- each host's next free send slot ([delivery] per_host_per_second), for every node
    CREATE TABLE host_slots (
        host TEXT PRIMARY KEY,
        next_free TIMESTAMPTZ NOT NULL
    );
    """,
    # 10: amounts sent in another currency (storage/sqlite/schema.py's migration 12).
    """
    ALTER TABLE events ADD COLUMN original_revenue TEXT, ADD COLUMN currency TEXT,
        ADD COLUMN rate TEXT;
    """,
    # 11: roll-ups by tracking field (storage/postgres/tag_rollups.py; SQLite's 13).
    tag_rollups.CREATE,
    # 12: the catalog's versions (storage/sqlite/schema.py's migration 14).
    """
    CREATE TABLE catalog_versions (
        version INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        token TEXT NOT NULL,
        changes TEXT NOT NULL,
        document TEXT NOT NULL
    );
    """,
    # 13: who made each change (storage/sqlite/schema.py's migration 15).
    """
    ALTER TABLE conversion_changes ADD COLUMN token TEXT;
    ALTER TABLE postbacks ADD COLUMN requeued_by TEXT;
    ALTER TABLE endpoints ADD COLUMN resumed_by TEXT;
    """,
)

# Any fixed number: every process that starts migrates under this lock, one at a time.
_MIGRATION_LOCK = 0x6570_7367


async def migrate(conn: asyncpg.Connection | PoolConnectionProxy) -> int:
    """Bring the schema up to date; returns the resulting version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this program "
                f"understands ({len(MIGRATIONS)})")
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(step)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", number)
    return len(MIGRATIONS)
