"""SQLite's roll-ups by tracking field (storage/tag_rollups.py): tables, writer, backfill.

``tag_stats`` is ``stats`` with the field and its value in front of the hour, its money
kept as low and high parts the same way (storage/sqlite/rollups.py). ``tag_fields`` lists
the fields it holds whole: a field is listed in the transaction that counts it from the
rows, and unlisted in the one that drops its rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from storage.records import LeadChange
from storage.reports import TAG_KEYS, TagKey, join_sums
from storage.rollups import FIGURES, MONEY, Deltas
from storage.sqlite.rollups import RECOUNT_SHAPE, SUMS, parts, stats_row, upsert
from storage.tag_rollups import TagDeltas, Values, attributed, changed, moved, nonzero

KEY = ("field", "value", "hour", "cid", "pid", "event_id")
# Keyed by the hour right after the field, so a report's period is one range of the key.
CREATE = f"""
CREATE TABLE tag_stats (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    hour TEXT NOT NULL,
    cid TEXT NOT NULL,
    pid TEXT NOT NULL,
    event_id TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in FIGURES)},
    {", ".join(f"{name}_high INTEGER NOT NULL DEFAULT 0" for name in FIGURES
               if name in MONEY)},
    PRIMARY KEY (field, hour, value, cid, pid, event_id)
) WITHOUT ROWID;
CREATE TABLE tag_fields (field TEXT PRIMARY KEY) WITHOUT ROWID;
"""
UPSERT = upsert("tag_stats", KEY)
_rows = msgspec.json.Encoder()
_IDS = "SELECT value FROM json_each(?)"


def tag_sql(table: str | None) -> Callable[[TagKey], str]:
    """A lead field's SQL, as text ('' for none): on the lead row itself (``table`` None)
    or on the lead of ``table``'s row, found by its primary key."""
    def sql(key: TagKey) -> str:
        if table is None:
            return f"coalesce(CAST(json_extract(fields, '$.{key}') AS TEXT), '')"
        return (f"coalesce((SELECT CAST(json_extract(l.fields, '$.{key}') AS TEXT)"
                f" FROM leads AS l WHERE l.transaction_id = {table}.transaction_id), '')")
    return sql


def kept(conn: sqlite3.Connection) -> tuple[TagKey, ...]:
    """The fields ``tag_stats`` holds, in a fixed order."""
    listed = {row[0] for row in conn.execute("SELECT field FROM tag_fields")}
    return tuple(key for key in TAG_KEYS if key in listed)


def _values(conn: sqlite3.Connection, fields: Sequence[TagKey],
            leads: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each stored lead's values of ``fields``, by the exact report's SQL."""
    if not leads:
        return {}
    tag = tag_sql(None)
    rows = conn.execute(
        f"SELECT transaction_id, {', '.join(tag(key) for key in fields)} FROM leads"
        f" WHERE transaction_id IN ({_IDS})", (_rows.encode(list(leads)).decode(),))
    return {row[0]: tuple(row[1:]) for row in rows}


@dataclass
class TagBatch:
    """A batch's part in the tag roll-ups, from its first count to its last write."""

    fields: tuple[TagKey, ...]
    deltas: TagDeltas = field(default_factory=dict)
    before: Values = field(default_factory=dict)
    patched: list[str] = field(default_factory=list)

    @classmethod
    def begin(cls, conn: sqlite3.Connection) -> TagBatch | None:
        """The batch's tag roll-ups, or None while no field is kept."""
        fields = kept(conn)
        return cls(fields) if fields else None

    def count(self, conn: sqlite3.Connection, per_lead: Deltas,
              lead_changes: Sequence[LeadChange]) -> None:
        """The batch's deltas (``rollups.record(per_lead=True)``), under each lead's value
        before the batch changes its fields; read before those changes are applied."""
        self.patched = sorted({change.transaction_id for change in lead_changes
                               if change.fields_patch is not None})
        leads = sorted({key[4] for key in per_lead} | set(self.patched))
        self.before = _values(conn, self.fields, leads)
        attributed(self.deltas, per_lead, self.fields, self.before)

    def finish(self, conn: sqlite3.Connection) -> None:
        """Once every change of the batch is applied: the leads whose values changed move
        what they counted to their new values, and every delta is written."""
        after = _values(conn, self.fields, self.patched)
        leads = changed(self.patched, self.before, after)
        if leads:
            moved(self.deltas, recount(conn, leads), self.fields, self.before, after)
        rows = nonzero(self.deltas)
        if rows:
            conn.execute(UPSERT, (_rows.encode(
                [stats_row(key, figures) for key, figures in rows]).decode(),))


def recount(conn: sqlite3.Connection, leads: Sequence[str]) -> Deltas:
    """Everything ``leads`` count as the rows stand, per hour, keys and lead."""
    found = conn.execute(
        f"SELECT hour, cid, pid, event_id, transaction_id, {SUMS} FROM ({parts(_IDS)})"
        " GROUP BY transaction_id, hour, cid, pid, event_id",
        # The same list for each of the four parts' filters.
        (_rows.encode(list(leads)).decode(),) * 4)
    return {tuple(row[:5]): list(row[5:]) for row in join_sums(found, 5, RECOUNT_SHAPE)}


def keep(conn: sqlite3.Connection,
         wanted: Sequence[TagKey]) -> tuple[list[TagKey], list[TagKey]]:
    """Keep roll-ups for ``wanted`` only, in the caller's transaction: a field newly
    wanted is counted from the rows, one no longer wanted dropped. (added, removed)."""
    before = set(kept(conn))
    added = [key for key in TAG_KEYS if key in wanted and key not in before]
    removed = [key for key in TAG_KEYS if key in before and key not in wanted]
    for key in removed:
        conn.execute("DELETE FROM tag_stats WHERE field = ?", (key,))
        conn.execute("DELETE FROM tag_fields WHERE field = ?", (key,))
    for key in added:
        conn.execute("DELETE FROM tag_stats WHERE field = ?", (key,))
        found = join_sums(conn.execute(
            f"SELECT ?, value, hour, cid, pid, event_id, {SUMS} FROM"
            f" (SELECT {tag_sql('p')(key)} AS value, p.* FROM ({parts()}) AS p)"
            " GROUP BY value, hour, cid, pid, event_id", (key,)), 6, RECOUNT_SHAPE)
        for start in range(0, len(found), 10_000):
            conn.execute(UPSERT, (_rows.encode(
                [stats_row(row[:6], row[6:]) for row in found[start:start + 10_000]]
            ).decode(),))
        conn.execute("INSERT INTO tag_fields (field) VALUES (?)", (key,))
    return added, removed
