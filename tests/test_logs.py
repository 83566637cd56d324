"""The log pipeline: request fields, timestamps, and the buffered line writer."""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from app.observe import logs
from app.observe.logs import (
    LineWriter,
    _Timestamp,
    annotate,
    configure_logging,
    merge_request_fields,
    start_request,
)


def test_info_lines_wait_for_a_flush_and_errors_go_out_at_once() -> None:
    stream = io.BytesIO()
    writer = LineWriter(stream, flush_seconds=3600)
    writer.info(b'{"n":1}')
    writer.msg(b'{"n":2}')
    assert stream.getvalue() == b""
    writer.error(b'{"n":3}')
    assert stream.getvalue() == b'{"n":1}\n{"n":2}\n{"n":3}\n'
    writer.info(b'{"n":4}')
    writer.flush()
    writer.flush()
    assert stream.getvalue().endswith(b'{"n":3}\n{"n":4}\n')


def test_request_fields_join_every_line_of_the_request() -> None:
    def in_a_request() -> dict[str, Any]:
        start_request(request_id="r1")
        annotate(cid="c", outcome="fired")
        return merge_request_fields(None, "info", {"event": "request", "status": 200})

    # A context of its own, as each request has: nothing leaks into other tests.
    assert contextvars.Context().run(in_a_request) == {
        "request_id": "r1", "cid": "c", "outcome": "fired", "event": "request", "status": 200}
    assert merge_request_fields(None, "info", {"event": "x"}) == {"event": "x"}


def test_timestamp_is_iso_utc_with_microseconds() -> None:
    stamp = _Timestamp()
    first = stamp(None, "info", {})["timestamp"]
    second = stamp(None, "info", {})["timestamp"]
    for value in (first, second):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value)
    assert second >= first


@contextlib.contextmanager
def _configured(level: str) -> Iterator[tuple[io.BytesIO, LineWriter]]:
    """configure_logging into a buffer; structlog and the root logger restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    stream = io.BytesIO()
    writer = configure_logging(level, stream=stream)
    try:
        yield stream, writer
    finally:
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, root_level
        logs._direct = None


@pytest.fixture
def configured() -> Iterator[tuple[io.BytesIO, LineWriter]]:
    with _configured("info") as configured:
        yield configured


def _both_ways(writer: LineWriter) -> None:
    log = structlog.get_logger("test")
    fields = {"method": "POST", "route": "/api/event/trigger", "status": 200,
              "latency_ms": 0.25, "outcome": "given last"}
    logs.info_line(log, "request", **fields)   # rendered directly
    log.info("request", **fields)         # through structlog's chain
    writer.flush()


def test_the_direct_request_line_is_the_chains_line_byte_for_byte(
    configured: tuple[io.BytesIO, LineWriter], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, writer = configured
    monkeypatch.setattr(logs.time, "time", lambda: 1_795_000_000.123456)

    def in_a_request() -> None:
        start_request(request_id="r1")
        annotate(cid="c", outcome="set by the handler")
        _both_ways(writer)

    contextvars.Context().run(in_a_request)   # with the request's fields
    contextvars.Context().run(_both_ways, writer)   # outside any request
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0] == lines[1]
    assert lines[2] == lines[3]
    assert json.loads(lines[0]) == {
        "request_id": "r1", "cid": "c", "outcome": "given last", "method": "POST",
        "route": "/api/event/trigger", "status": 200, "latency_ms": 0.25,
        "event": "request", "level": "info", "timestamp": "2026-11-18T11:06:40.123456Z"}
    assert list(json.loads(lines[0])) == ["request_id", "cid", "outcome", "method", "route",
                                          "status", "latency_ms", "event", "level",
                                          "timestamp"]
    assert "request_id" not in json.loads(lines[2])


def test_captured_logs_still_see_the_request_line(
    configured: tuple[io.BytesIO, LineWriter],
) -> None:
    stream, writer = configured
    with capture_logs() as captured:
        logs.info_line(structlog.get_logger("test"), "request", status=201)
    writer.flush()
    assert captured == [{"event": "request", "status": 201, "log_level": "info"}]
    assert stream.getvalue() == b""
    logs.info_line(structlog.get_logger("test"), "request", status=202)   # direct again after
    writer.flush()
    assert json.loads(stream.getvalue())["status"] == 202


def test_above_info_the_request_line_is_dropped_both_ways() -> None:
    with _configured("warning") as (stream, writer):
        _both_ways(writer)
        structlog.get_logger("test").warning("kept")
        writer.flush()
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["kept"]
