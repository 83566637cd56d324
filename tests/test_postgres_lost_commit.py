"""A batch whose COMMIT went through but whose answer was lost is not written again.

PostgreSQL stopped at the wrong moment (`pg_ctl stop -m immediate` under load, in the
chaos campaign) can commit a batch and drop the connection before the writer hears of it.
The writer retries a failed batch whole: without a record of the commit, an event that
may fire more than once was stored twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from storage.postgres.store import PostgresStore
from storage.postgres.writer import PostgresWriter
from tests.conftest import FakeClock, make_config_for, running, with_server_overrides

CID = "cmp_9z8y7x6w"


@pytest.mark.parametrize("commits", [True, False], ids=["committed", "not committed"])
async def test_a_batch_retried_after_its_answer_was_lost_is_stored_once(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, commits: bool) -> None:
    real = PostgresWriter._apply
    lost: list[int] = []

    async def answer_lost(self: PostgresWriter, ops: list[Any]) -> None:
        if any(op.event is not None and op.event.event_id == "form_step" for op in ops) \
                and not lost:
            lost.append(1)
            if commits:
                await real(self, ops)  # it commits; the answer does not come back
            raise ConnectionResetError("connection lost at COMMIT")
        await real(self, ops)

    monkeypatch.setattr(PostgresWriter, "_apply", answer_lost)
    clock = FakeClock()
    config = with_server_overrides(make_config_for(pg_url), "test")
    async with running(config, clock, PostgresStore(pg_url, db_clock=clock.now)) as api:
        transaction_id = await api.click()
        fired = await api.fire(transaction_id, "form_step")
        assert fired.status_code == 200, fired.text
        assert lost == [1]
        stored = await api.query(
            "SELECT count(*) FROM events WHERE transaction_id = ? AND event_id = ?",
            transaction_id, "form_step")
        assert stored == [(1,)]
