"""A log the service cannot write never stops it: the lines are dropped and counted."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest
import structlog

from app.observe.logs import LineWriter, dropped_lines
from app.observe.metrics import Metrics
from tests.conftest import ADMIN_TOKEN, Harness, make_config, running_on
from tests.logged import logging_to
from tests.test_failing_store import WRITE_TIMEOUT, disk_full, settled

DROPPED = "event_postback_log_lines_dropped_total"


class RefusingStream:
    """A log stream that refuses every write, as a full disk or a closed pipe does."""

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.written = bytearray()

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.written += data
        return len(data)

    def flush(self) -> None:
        if self.error is not None:
            raise self.error


class BufferingStream(RefusingStream):
    """Takes every write into its buffer; only pushing the buffer to the disk fails."""

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)


def full_disk() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("error", [
    full_disk(),
    BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)),
    ValueError("I/O operation on closed file."),
], ids=["ENOSPC", "EPIPE", "closed"])
def test_a_refused_write_drops_its_lines_counts_them_and_later_lines_go_out(
    error: Exception,
) -> None:
    stream = RefusingStream(error)
    writer = LineWriter(cast(BinaryIO, stream), flush_seconds=3600)
    before = dropped_lines()
    writer.info(b'{"n":1}')
    writer.info(b'{"n":2}')
    writer.warning(b'{"n":3}')   # written out at once: the write fails, nothing is raised
    writer.error(b'{"n":4}')
    assert dropped_lines() - before == 4
    stream.error = None           # space again
    writer.warning(b'{"n":5}')
    assert bytes(stream.written) == b'{"n":5}\n'
    assert dropped_lines() - before == 4


def test_a_stream_that_cannot_flush_keeps_what_it_accepted() -> None:
    """A buffered stream holds the lines it took and writes them once the disk has room."""
    stream = BufferingStream(full_disk())
    writer = LineWriter(cast(BinaryIO, stream), flush_seconds=3600)
    before = dropped_lines()
    writer.warning(b'{"n":1}')
    assert bytes(stream.written) == b'{"n":1}\n'
    assert dropped_lines() == before


def test_the_dropped_lines_are_a_metric_of_every_apps_registry(db_path: Path) -> None:
    first, second = (Metrics(make_config(db_path)) for _ in range(2))
    before = first.registry.get_sample_value(DROPPED)
    assert before == dropped_lines()
    LineWriter(cast(BinaryIO, RefusingStream(full_disk())), flush_seconds=3600).warning(b"x")
    for metrics in (first, second):
        assert metrics.registry.get_sample_value(DROPPED) == before + 1


@pytest.fixture
async def api(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    # The answer gives up on a failing store at once; the write stays queued and retried.
    config = make_config(db_path, write_timeout_seconds=WRITE_TIMEOUT)
    async with running_on(request, config) as harness:
        yield harness


@pytest.mark.both_stores
async def test_a_failing_store_retries_and_recovers_while_every_log_write_fails(
    api: Harness,
) -> None:
    transaction_id = await api.click()
    await settled(api)
    stream = RefusingStream(full_disk())
    with logging_to(cast(BinaryIO, stream)):
        before = dropped_lines()
        with disk_full(api):
            response = await asyncio.wait_for(api.fire(transaction_id, "quote_viewed"), 5)
            assert response.status_code == 503

            async def failing() -> None:
                while not api.services.store.writer.failing:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(failing(), 5)
            # uvicorn's own records go the same way.
            logging.getLogger("uvicorn.error").warning("a record on the full disk")
        # Space is back for the store (not for the log): the queued write lands.
        await settled(api)
        assert (await api.client.get("/healthz")).status_code == 200
        metrics = await api.client.get("/metrics",
                                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        structlog.get_logger("test").warning("after the recovery")
    assert await api.query("SELECT event_id FROM events WHERE transaction_id = ?",
                           transaction_id) == [("quote_viewed",)]
    assert bytes(stream.written) == b""
    # Each retry logged write_failed_retrying, a warning: written, refused, dropped.
    assert dropped_lines() > before
    # At least a retry's warning, the 503's request line and uvicorn's record.
    [sample] = [line for line in metrics.text.splitlines() if line.startswith(DROPPED)]
    assert float(sample.split()[1]) >= before + 3
