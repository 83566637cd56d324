"""The millionth columns reports sum: filled by migration for older rows, exact."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

from storage.money import from_micro, micro
from storage.sqlite import schema


@pytest.mark.parametrize(("text", "units"), [
    ("45.00", 45_000_000), ("0.0125", 12_500), ("1000000000000.00", 10**18),
    ("0.000001", 1), ("-3.25", -3_250_000), ("0.00", 0)])
def test_micro_is_exact_both_ways(text: str, units: int) -> None:
    assert micro(Decimal(text)) == units
    assert from_micro(units) == Decimal(text)


def test_migration_backfills_micro_columns_from_the_stored_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "old.db"
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        assert schema.migrate(conn) == 3
        conn.execute("INSERT INTO leads (transaction_id, cid, pid, fields, cost, created_at)"
                     " VALUES ('t1', 'c', 'p', '{}', '0.1', 'x'), ('t2', 'c', 'p', '{}',"
                     " NULL, 'x')")
        conn.execute(
            "INSERT INTO events (transaction_id, cid, event_id, pid, once, conversion,"
            " conversion_id, revenue, payout, fields, fired_at) VALUES"
            " ('t1', 'c', 'sale', 'p', 1, 1, 'v1', '45.10', '22.55', '{}', 'x'),"
            " ('t1', 'c', 'view', 'p', 1, 0, NULL, NULL, NULL, '{}', 'x')")
        monkeypatch.undo()
        assert schema.migrate(conn) == len(schema.MIGRATIONS)
        assert conn.execute("SELECT transaction_id, cost_micro FROM leads ORDER BY 1"
                            ).fetchall() == [("t1", 100_000), ("t2", None)]
        assert conn.execute("SELECT event_id, revenue_micro, payout_micro FROM events"
                            " ORDER BY id").fetchall() == [
            ("sale", 45_100_000, 22_550_000), ("view", None, None)]
        # An integer sum, where sum() over the text would go through floating point.
        assert conn.execute("SELECT sum(revenue_micro) FROM events").fetchone() == (
            45_100_000,)
