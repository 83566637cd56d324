"""The log holds no secrets and no lead data: tracebacks without locals, postbacks by path."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.conftest import CID, PID, Harness, make_config, running, running_on
from tests.logged import logging_to
from tests.receiver import Answer, Receiver
from tests.test_errors import broken
from tests.test_postbacks import postback_config

TOKEN = "tok-7f3a9c-never-logged"
COOKIE = "session=ck-51d2e8-never-logged"
LEAD_NAME = "Annabel-Quixote"


def lines(stream: io.BytesIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def frames(line: dict[str, Any]) -> list[dict[str, Any]]:
    return [frame for exception in line["exception"] for frame in exception["frames"]]


async def test_a_crash_is_logged_with_its_traceback_but_not_the_requests_headers(
    db_path: Path,
) -> None:
    config = make_config(db_path)
    stream = io.BytesIO()
    with logging_to(stream):
        async with running(config, store=broken(config)) as api:
            response = await api.client.post(
                "/api/event/trigger",
                json={"cid": CID, "event_id": "quote_viewed", "transaction_id": "txn_gone"},
                headers={"Authorization": f"Bearer {TOKEN}", "Cookie": COOKIE})
    assert response.status_code == 500
    text = stream.getvalue().decode()
    assert TOKEN not in text and "ck-51d2e8" not in text
    [crash] = [line for line in lines(stream) if line["event"] == "unhandled_error"]
    assert crash["level"] == "error"
    # Still a traceback: each frame where, never what it held.
    assert any(frame["name"] == "load_transaction" for frame in frames(crash))
    assert all("locals" not in frame for frame in frames(crash))


def test_a_standard_library_traceback_carries_no_frame_locals() -> None:
    """uvicorn reports a crash in the protocol through the standard library."""
    stream = io.BytesIO()
    with logging_to(stream):
        headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
        try:
            raise RuntimeError(f"{len(headers)} header")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    [line] = lines(stream)
    assert line["event"] == "Exception in ASGI application"
    assert frames(line) and TOKEN not in stream.getvalue().decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    async with running_on(request, postback_config(receiver, db_path)) as harness:
        yield harness


async def convert(api: Harness) -> None:
    transaction_id = await api.click(pid=PID, first_name=LEAD_NAME)
    response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="45")
    assert response.status_code == 200, response.text


@pytest.mark.both_stores
async def test_a_postback_is_logged_by_host_and_path_never_its_query_string(
    api: Harness, receiver: Receiver,
) -> None:
    await convert(api)
    stream = io.BytesIO()
    with logging_to(stream):
        await api.services.dispatcher.drain()
    [arrived] = receiver.of("/buyer")
    assert arrived.query["name"] == [LEAD_NAME]   # the lead's name went in the query string
    text = stream.getvalue().decode()
    assert LEAD_NAME not in text and "?" not in text
    attempts = [line for line in lines(stream) if line["event"] == "postback_attempt"]
    host = receiver.url.removeprefix("http://")
    assert sorted((line["host"], line["path"]) for line in attempts) == [
        (host, "/buyer"), (host, "/source")]
    # One style in the stream: every line is the service's own, no library's request line.
    assert {line["event"] for line in lines(stream)} == {"postback_attempt"}


@pytest.mark.both_stores
async def test_a_postback_with_no_attempt_left_is_logged_as_a_warning(
    api: Harness, receiver: Receiver,
) -> None:
    receiver.script("/buyer", *[Answer(503)] * 4)   # max_attempts = 4
    receiver.script("/source", Answer(404))          # refused: no retry
    await convert(api)
    with structlog.testing.capture_logs() as captured:
        for _ in range(4):
            await api.services.dispatcher.drain()
            api.clock.advance(120)
    attempts = [(line["path"], line["attempt"], line["outcome"], line["log_level"])
                for line in captured if line["event"] == "postback_attempt"]
    assert sorted(attempts) == [
        ("/buyer", 1, "pending", "info"), ("/buyer", 2, "pending", "info"),
        ("/buyer", 3, "pending", "info"), ("/buyer", 4, "failed", "warning"),
        ("/source", 1, "failed", "warning")]
