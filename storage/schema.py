"""The database schema, as ordered migrations tracked in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

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
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this program "
            f"understands ({len(MIGRATIONS)})"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first, so the version bump rides in the same script.
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return len(MIGRATIONS)
