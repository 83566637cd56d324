"""PostgreSQL's lock-window claims, batched: what callers get when the database is slow,
fails or the store closes, and how a window is given back (a stand-in pool;
tests/test_postgres_rules.py and tests/test_window_release.py claim for real)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import structlog

from storage.errors import StoreUnavailable
from storage.postgres.windows import WindowClaimer

UNTIL = datetime(2026, 11, 28, 12, 0, 2, tzinfo=UTC)


class _Pool:
    """Answers each claim batch from ``answers``: rows opened, an error, or a hang; each
    release with ``released``: its result, or an error."""

    def __init__(self, *answers: Any, released: Any = "DELETE 1") -> None:
        self.answers = list(answers)
        self.batches: list[list[tuple[str, str, float]]] = []
        self.reading = asyncio.Event()
        self.released = released
        self.releases: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.releases.append(args)
        if isinstance(self.released, Exception):
            raise self.released
        result: str = self.released
        return result

    async def fetch(self, sql: str, *args: Any) -> list[tuple[str, str, datetime]]:
        self.batches.append(list(zip(args[0], args[1], args[2], strict=True)))
        self.reading.set()
        answer = self.answers.pop(0)
        if answer == "hang":
            await asyncio.Event().wait()  # cancelled by close()
        if isinstance(answer, Exception):
            raise answer
        rows: list[tuple[str, str, datetime]] = answer
        return rows


def _claimer(pool: _Pool) -> WindowClaimer:
    claimer = WindowClaimer(pool, max_batch=1000)  # type: ignore[arg-type]
    claimer.start()
    return claimer


async def test_claims_asked_meanwhile_go_in_one_batch_and_only_opened_ones_win() -> None:
    pool = _Pool([("t1", "sale", UNTIL)])
    claimer = _claimer(pool)
    first = asyncio.ensure_future(claimer.claim("t1", "sale", 2.0))
    held = asyncio.ensure_future(claimer.claim("t2", "sale", 2.0))
    await asyncio.sleep(0)  # both are asked for; the batch is not read yet
    # A second claim of a window already asked for in this batch: the first one wins.
    assert await claimer.claim("t1", "sale", 2.0) is None
    assert (await first, await held) == (UNTIL, None)
    assert pool.batches == [[("t1", "sale", 2.0), ("t2", "sale", 2.0)]]
    await claimer.close()


async def test_a_failed_batch_fails_its_claims_is_logged_and_the_next_is_claimed() -> None:
    pool = _Pool(asyncpg.PostgresConnectionError("gone"), [("t2", "sale", UNTIL)])
    claimer = _claimer(pool)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(StoreUnavailable):  # a 503, never a 500
            await asyncio.wait_for(claimer.claim("t1", "sale", 2.0), 5)
        assert await asyncio.wait_for(claimer.claim("t2", "sale", 2.0), 5) == UNTIL
    await claimer.close()
    [line] = [entry for entry in logs if entry["event"] == "window_claims_failed"]
    assert (line["log_level"], line["claims"]) == ("error", 1)


async def test_a_claim_being_read_when_the_store_closes_fails_instead_of_hanging() -> None:
    pool = _Pool("hang")
    claimer = _claimer(pool)
    claim = asyncio.ensure_future(claimer.claim("t1", "sale", 2.0))
    await asyncio.wait_for(pool.reading.wait(), 5)
    await claimer.close()
    with pytest.raises(RuntimeError, match=r"^store closed$"):
        await asyncio.wait_for(claim, 5)


async def test_a_claim_still_waiting_when_the_store_closes_fails() -> None:
    claimer = WindowClaimer(_Pool(), max_batch=1000)  # type: ignore[arg-type]  # not started
    claim = asyncio.ensure_future(claimer.claim("t1", "sale", 2.0))
    await asyncio.sleep(0)
    await claimer.close()
    with pytest.raises(RuntimeError, match=r"^store closed$"):
        await asyncio.wait_for(claim, 5)


async def test_a_release_deletes_only_the_window_its_claim_opened() -> None:
    pool = _Pool([("t1", "sale", UNTIL)])
    claimer = _claimer(pool)
    until = await claimer.claim("t1", "sale", 2.0)
    assert until == UNTIL
    await claimer.release("t1", "sale", until)
    # The claim's own open_until goes with the key: a later claim's window is not matched.
    assert pool.releases == [("t1", "sale", UNTIL)]
    await claimer.close()


async def test_a_failed_release_is_logged_and_not_raised() -> None:
    pool = _Pool(released=asyncpg.PostgresConnectionError("gone"))
    claimer = _claimer(pool)
    with structlog.testing.capture_logs() as logs:
        await claimer.release("t1", "sale", UNTIL)
    await claimer.close()
    [line] = [entry for entry in logs if entry["event"] == "window_release_failed"]
    assert line["log_level"] == "warning"
