"""PostgreSQL's lock-window claims, batched: what callers get when the database is slow,
fails or the store closes (a stand-in pool; tests/test_postgres_rules.py claims for real)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import structlog

from storage.postgres.windows import WindowClaimer


class _Pool:
    """Answers each claim batch from ``answers``: rows opened, an error, or a hang."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.batches: list[list[tuple[str, str, float]]] = []
        self.reading = asyncio.Event()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[str, str]]:
        self.batches.append(list(zip(args[0], args[1], args[2], strict=True)))
        self.reading.set()
        answer = self.answers.pop(0)
        if answer == "hang":
            await asyncio.Event().wait()  # cancelled by close()
        if isinstance(answer, Exception):
            raise answer
        rows: list[tuple[str, str]] = answer
        return rows


def _claimer(pool: _Pool) -> WindowClaimer:
    claimer = WindowClaimer(pool, max_batch=1000)  # type: ignore[arg-type]
    claimer.start()
    return claimer


async def test_claims_asked_meanwhile_go_in_one_batch_and_only_opened_ones_win() -> None:
    pool = _Pool([("t1", "sale")])
    claimer = _claimer(pool)
    first = asyncio.ensure_future(claimer.claim("t1", "sale", 2.0))
    held = asyncio.ensure_future(claimer.claim("t2", "sale", 2.0))
    await asyncio.sleep(0)  # both are asked for; the batch is not read yet
    # A second claim of a window already asked for in this batch: the first one wins.
    assert await claimer.claim("t1", "sale", 2.0) is False
    assert (await first, await held) == (True, False)
    assert pool.batches == [[("t1", "sale", 2.0), ("t2", "sale", 2.0)]]
    await claimer.close()


async def test_a_failed_batch_fails_its_claims_is_logged_and_the_next_is_claimed() -> None:
    pool = _Pool(asyncpg.PostgresConnectionError("gone"), [("t2", "sale")])
    claimer = _claimer(pool)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(asyncpg.PostgresConnectionError):
            await asyncio.wait_for(claimer.claim("t1", "sale", 2.0), 5)
        assert await asyncio.wait_for(claimer.claim("t2", "sale", 2.0), 5) is True
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
