"""The log pipeline: request fields, timestamps, and the buffered line writer."""

from __future__ import annotations

import contextvars
import io
import re
from typing import Any

from app.logs import LineWriter, _Timestamp, annotate, merge_request_fields, start_request


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
