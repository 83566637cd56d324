"""The roll-ups by tracking field on PostgreSQL: storage/sqlite/tag_rollups.py's, for
several processes writing one database.

The fields kept are one row, ``tag_rollup_fields``. Every batch reads it ``FOR SHARE``
before it counts anything, and holds that lock until it commits; changing the fields
takes the row ``FOR UPDATE``, so it waits for every batch counting under the old list,
and the batches after it wait for its backfill and then read the new list: each stored
row is counted once, by the backfill or by its batch. The leads a batch counts for are
locked (storage/postgres/rollups.py's ``record(per_lead=True)``), so no other batch
changes their tracking fields before this one commits; ``tag_stats`` rows are upserted
in key order, once per batch, like ``stats``'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from storage.postgres.rollups import SUMS, parts
from storage.records import LeadChange
from storage.reports import TAG_KEYS, TagKey
from storage.rollups import FIGURES, MONEY, Deltas
from storage.tag_rollups import TagDeltas, Values, attributed, changed, moved, nonzero

Connection = asyncpg.Connection | PoolConnectionProxy
KEY = ("field", "value", "hour", "cid", "pid", "event_id")
# "C": hours compare byte by byte, like their UTC text (see storage/postgres/rollups.py).
CREATE = f"""
CREATE TABLE tag_stats (
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    hour TEXT COLLATE "C" NOT NULL,
    cid TEXT NOT NULL,
    pid TEXT NOT NULL,
    event_id TEXT NOT NULL,
    {", ".join(f"{name} {'numeric' if name in MONEY else 'bigint'} NOT NULL DEFAULT 0"
               for name in FIGURES)},
    PRIMARY KEY (field, hour, value, cid, pid, event_id)
);
CREATE TABLE tag_rollup_fields (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fields TEXT[] NOT NULL
);
INSERT INTO tag_rollup_fields (id, fields) VALUES (1, '{{}}');
"""
UPSERT = (
    f"INSERT INTO tag_stats ({', '.join((*KEY, *FIGURES))}) SELECT "
    + ", ".join(f"(v->>{i})::{kind}" for i, kind in enumerate((
        *("text",) * len(KEY), *("numeric" if name in MONEY else "bigint" for name in FIGURES))))
    + " FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(v, n) ORDER BY n"
    + f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
    + ", ".join(f"{name} = tag_stats.{name} + excluded.{name}" for name in FIGURES)
)
_KEPT = "SELECT fields FROM tag_rollup_fields WHERE id = 1"
_rows = msgspec.json.Encoder()


def tag_sql(table: str | None) -> Callable[[TagKey], str]:
    """A lead field's SQL, as text ('' for none): on the lead row itself (``table`` None)
    or on the lead of ``table``'s row, found by its primary key."""
    def sql(key: TagKey) -> str:
        if table is None:
            return f"coalesce(fields::jsonb ->> '{key}', '')"
        return (f"coalesce((SELECT l.fields::jsonb ->> '{key}' FROM leads AS l"
                f" WHERE l.transaction_id = {table}.transaction_id), '')")
    return sql


def _ordered(listed: Sequence[str]) -> tuple[TagKey, ...]:
    return tuple(key for key in TAG_KEYS if key in listed)


async def kept(conn: Connection) -> tuple[TagKey, ...]:
    """The fields ``tag_stats`` holds (no lock: a report reads it in its snapshot)."""
    return _ordered(await conn.fetchval(_KEPT) or [])


async def _values(conn: Connection, fields: Sequence[TagKey],
                  leads: Sequence[str]) -> dict[str, tuple[str, ...]]:
    if not leads:
        return {}
    tag = tag_sql(None)
    rows = await conn.fetch(
        f"SELECT transaction_id, {', '.join(tag(key) for key in fields)} FROM leads"
        " WHERE transaction_id = ANY($1::text[])", list(leads))
    return {row[0]: tuple(row[1:]) for row in rows}


def _upsert_rows(deltas: list[tuple[tuple[str, ...], list[int]]]) -> str:
    # Money as text: a delta may pass 64 bits, which JSON numbers here cannot.
    return _rows.encode([[*key, *(str(value) if name in MONEY else value
                                  for name, value in zip(FIGURES, figures, strict=True))]
                         for key, figures in deltas]).decode()


@dataclass
class TagBatch:
    """A batch's part in the tag roll-ups, from its first count to its last write."""

    fields: tuple[TagKey, ...]
    deltas: TagDeltas = field(default_factory=dict)
    before: Values = field(default_factory=dict)
    patched: list[str] = field(default_factory=list)

    @classmethod
    async def begin(cls, conn: Connection) -> TagBatch | None:
        """The batch's tag roll-ups, or None while no field is kept; the list of fields
        stays locked against a change until the batch commits."""
        fields = _ordered(await conn.fetchval(_KEPT + " FOR SHARE") or [])
        return cls(fields) if fields else None

    async def count(self, conn: Connection, per_lead: Deltas,
                    lead_changes: Sequence[LeadChange]) -> None:
        """The batch's deltas under each lead's value before the batch changes its
        fields (the leads are locked by ``rollups.record(per_lead=True)``)."""
        self.patched = sorted({change.transaction_id for change in lead_changes
                               if change.fields_patch is not None})
        leads = sorted({key[4] for key in per_lead} | set(self.patched))
        self.before = await _values(conn, self.fields, leads)
        attributed(self.deltas, per_lead, self.fields, self.before)

    async def finish(self, conn: Connection) -> None:
        """Once every change of the batch is applied: the leads whose values changed move
        what they counted to their new values, and every delta is written in key order."""
        after = await _values(conn, self.fields, self.patched)
        leads = changed(self.patched, self.before, after)
        if leads:
            moved(self.deltas, await recount(conn, leads), self.fields, self.before, after)
        rows = nonzero(self.deltas)
        if rows:
            await conn.execute(UPSERT, _upsert_rows(list(rows)))


async def recount(conn: Connection, leads: Sequence[str]) -> Deltas:
    """Everything ``leads`` count as the rows stand, per hour, keys and lead."""
    found = await conn.fetch(
        f"SELECT hour, cid, pid, event_id, transaction_id, {SUMS}"
        f" FROM ({parts('$1::text[]')}) AS p GROUP BY transaction_id, hour, cid, pid, event_id",
        list(leads))
    return {tuple(row[:5]): [int(value) for value in row[5:]] for row in found}


async def keep(conn: Connection,
               wanted: Sequence[TagKey]) -> tuple[list[TagKey], list[TagKey]]:
    """Keep roll-ups for ``wanted`` only, in one transaction of its own: a field newly
    wanted is counted from the rows, one no longer wanted dropped. (added, removed)."""
    async with conn.transaction():
        before = _ordered(await conn.fetchval(_KEPT + " FOR UPDATE") or [])
        added = [key for key in TAG_KEYS if key in wanted and key not in before]
        removed = [key for key in TAG_KEYS if key in before and key not in wanted]
        if not added and not removed:
            return added, removed
        await conn.execute("DELETE FROM tag_stats WHERE field = ANY($1::text[])",
                           added + removed)
        for key in added:
            # sum() of bigint is numeric; a count column raises past 64 bits.
            await conn.execute(
                f"INSERT INTO tag_stats ({', '.join((*KEY, *FIGURES))})"
                f" SELECT $1::text, value, hour, cid, pid, event_id, {SUMS} FROM"
                f" (SELECT {tag_sql('p')(key)} AS value, p.* FROM ({parts()}) AS p) AS v"
                " GROUP BY value, hour, cid, pid, event_id", key)
        await conn.execute("UPDATE tag_rollup_fields SET fields = $1::text[] WHERE id = 1",
                           [key for key in TAG_KEYS if key in wanted])
    return added, removed
