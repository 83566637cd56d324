"""Databases at an earlier schema version, for the tests of a migration.

A migration's test stores rows the way the version before it did, then migrates. A SQLite
database can be built up to that version step by step; a PostgreSQL one (migrated by the
store as it opens) is taken back by undoing each later migration, newest first. Every
migration that adds a table or column has its undo here, so a new one only adds a line.
"""

from __future__ import annotations

import sqlite3

from storage.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from storage.sqlite.schema import MIGRATIONS

# What undoes each migration (storage/sqlite/schema.py), by number.
SQLITE_UNDO = {
    8: "ALTER TABLE events DROP COLUMN hold_reason;",
    9: "DROP TABLE cap_usage; DROP TABLE cap_charges; DROP TABLE lead_keys;"
       " ALTER TABLE events DROP COLUMN payout_rule; ALTER TABLE events DROP COLUMN duplicate_of;",
    10: "",  # an index of lead_keys, dropped with the table
    # The rebuilt postbacks table keeps its "paused" status check: no row of an older
    # version holds that status.
    11: "DROP INDEX postbacks_by_endpoint; ALTER TABLE postbacks DROP COLUMN endpoint;"
        " ALTER TABLE postbacks DROP COLUMN signing_secrets;"
        " DROP TABLE endpoints; DROP TABLE endpoint_hours;",
    12: "ALTER TABLE events DROP COLUMN original_revenue;"
        " ALTER TABLE events DROP COLUMN currency; ALTER TABLE events DROP COLUMN rate;",
    13: "DROP TABLE tag_stats; DROP TABLE tag_fields;",
    14: "DROP TABLE catalog_versions;",
    15: "ALTER TABLE conversion_changes DROP COLUMN token;"
        " ALTER TABLE postbacks DROP COLUMN requeued_by;"
        " ALTER TABLE endpoints DROP COLUMN resumed_by;",
}

# The same for storage/postgres/schema.py.
POSTGRES_UNDO = {
    3: "DROP INDEX leads_by_created, events_by_fired, events_by_converted,"
       " conversion_changes_by_changed; DROP TABLE stats;",
    4: "",  # stats' columns changed type: the table goes with migration 3
    5: "ALTER TABLE events DROP COLUMN hold_reason;",
    6: "ALTER TABLE events DROP COLUMN payout_rule, DROP COLUMN duplicate_of;"
       " DROP TABLE cap_usage, cap_charges, lead_keys;",
    7: "",  # an index of lead_keys, dropped with the table
    8: "DROP TABLE committed_batches;",
    9: "ALTER TABLE postbacks DROP COLUMN endpoint, DROP COLUMN signing_secrets;"
       " DROP INDEX postbacks_failed_by_created;"
       " DROP TABLE endpoints, endpoint_hours, host_slots;",
    10: "ALTER TABLE events DROP COLUMN original_revenue, DROP COLUMN currency,"
        " DROP COLUMN rate;",
    11: "DROP TABLE tag_stats, tag_rollup_fields;",
    12: "DROP TABLE catalog_versions;",
    13: "ALTER TABLE conversion_changes DROP COLUMN token;"
        " ALTER TABLE postbacks DROP COLUMN requeued_by;"
        " ALTER TABLE endpoints DROP COLUMN resumed_by;",
}


def _undo(undo: dict[int, str], latest: int, version: int) -> str:
    missing = [number for number in range(version + 1, latest + 1) if number not in undo]
    if missing:  # a migration added without its undo
        raise LookupError(f"no undo for migration {missing}")
    return " ".join(undo[number] for number in range(latest, version, -1))


def sqlite_back_to(version: int) -> str:
    """The script taking a fully migrated SQLite database back to ``version``."""
    return _undo(SQLITE_UNDO, len(MIGRATIONS), version) + f" PRAGMA user_version = {version};"


def postgres_back_to(version: int) -> str:
    """The script taking a fully migrated PostgreSQL database back to ``version``."""
    return (_undo(POSTGRES_UNDO, len(POSTGRES_MIGRATIONS), version)
            + f" DELETE FROM schema_version WHERE version > {version};")


def sqlite_at(conn: sqlite3.Connection, version: int) -> None:
    """Migrate an empty SQLite database up to ``version`` only."""
    for number, step in enumerate(MIGRATIONS[:version], start=1):
        if isinstance(step, str):
            conn.executescript(f"BEGIN;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;")
        else:
            conn.execute("BEGIN")
            step(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
