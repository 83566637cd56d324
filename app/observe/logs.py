"""Logging: JSON lines through structlog, with uvicorn's own records in the same stream.

A request's log fields live in one context variable holding a dict: the request log
middleware starts a fresh dict for each request, handlers add to it with ``annotate``, and
``merge_request_fields`` (first in the chain) puts it on every line logged meanwhile. One
dict per request is several times cheaper than a context variable per key, which matters
at one canonical line per request. For the same reason lines are not written one system
call each: info lines reach the stream within ``FLUSH_SECONDS``, warnings and errors at
once.

Logging never stops the service: a write the stream refuses (a full disk, a reader gone)
drops those lines and counts them (``dropped_lines``, exported as
``event_postback_log_lines_dropped_total``). Tracebacks are rendered without their frames'
locals, which hold request headers, tokens and lead fields.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, BinaryIO

import msgspec
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

_request_fields: ContextVar[dict[str, Any] | None] = ContextVar("request_fields", default=None)
_encoder = msgspec.json.Encoder(enc_hook=repr)


def start_request(**fields: Any) -> dict[str, Any]:
    """Begin the log fields of the request running in this context."""
    current = dict(fields)
    _request_fields.set(current)
    return current


def annotate(**fields: Any) -> None:
    """Add fields to the current request's log line; outside a request, do nothing."""
    current = _request_fields.get()
    if current is not None:
        current.update(fields)


def merge_request_fields(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    current = _request_fields.get()
    if current:
        return {**current, **event_dict}
    return event_dict


# A frame's locals hold whatever it was handling: the ASGI scope with its Authorization and
# Cookie headers, a postback's URL with lead fields in its query string.
_tracebacks = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
# Libraries that log each request they make, URL and query string included.
_QUIET_LOGGERS = ("httpx", "httpcore")

_dropped = 0
_dropped_lock = threading.Lock()


def dropped_lines() -> int:
    """Log lines this process could not write, since it started."""
    return _dropped


def _count_dropped(lines: int) -> None:
    global _dropped
    with _dropped_lock:
        _dropped += lines


def _dumps(event: Any, **_: Any) -> bytes:
    return _encoder.encode(event)


class _Timestamp:
    """ISO-8601 UTC with microseconds; the date and time are formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, method_name: str,
                 event_dict: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event_dict["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event_dict


FLUSH_SECONDS = 0.2


class LineWriter:
    """The structlog logger: rendered lines into a buffer, flushed in the background.

    A crash loses at most ``FLUSH_SECONDS`` of info lines; warnings and errors are
    flushed as they are written. A write the stream refuses loses its lines (counted by
    ``dropped_lines``) and never raises: the writer of the store logs its retries here,
    and a full disk under the log must not end it.
    """

    def __init__(self, stream: BinaryIO, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._stream = stream
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending = bytearray()
        flusher = threading.Thread(target=self._flush_forever, name="log-flush", daemon=True)
        flusher.start()
        atexit.register(self.flush)

    def info(self, message: bytes) -> None:
        with self._lock:
            self._pending += message
            self._pending += b"\n"

    debug = msg = info

    def warning(self, message: bytes) -> None:
        self.info(message)
        self.flush()

    error = critical = exception = warning

    def flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            data, self._pending = bytes(self._pending), bytearray()
            try:
                self._stream.write(data)
            except (OSError, ValueError):  # ValueError: the stream was closed
                _count_dropped(data.count(b"\n"))
                return
            # A buffered stream keeps what it accepted and writes it out once it can.
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._flush_seconds)
            self.flush()


class _RecordLines(logging.Handler):
    """Standard-library records (uvicorn's) into the line writer, written out at once.

    Through the same writer, a refused write is dropped and counted like any other line,
    and the records keep their place among the buffered lines.
    """

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode()
        except Exception:
            self.handleError(record)
            return
        self._writer.warning(line)


class _DirectLines:
    """Info lines rendered straight into the line writer, skipping structlog's chain.

    The chain copies the event dict and calls five processors per line; for the one line
    every request logs, the same dict built in place gives the same bytes for a fraction
    of the cost. Used only while structlog is configured as ``configure_logging`` left it
    (``capture_logs`` in the tests replaces the processors: lines then take the chain).
    """

    def __init__(self, processors: list[Any], wrapper: Any, writer: LineWriter,
                 timestamp: _Timestamp, enabled: bool, process: dict[str, Any]) -> None:
        self._chain = list(processors)
        self._process = process
        self._wrapper = wrapper
        self._writer = writer
        self._timestamp = timestamp
        self.enabled = enabled

    def applies(self) -> bool:
        config = structlog.get_config()
        # capture_logs swaps the processors inside the same list, so its contents are
        # compared; processors compare by identity, and the list comparison runs in C
        # (0.6 us a line instead of 2.0 one by one in a generator, on a loaded machine).
        return config["wrapper_class"] is self._wrapper and config["processors"] == self._chain

    def write(self, event: str, fields: dict[str, Any]) -> None:
        # The chain's order: the call's fields, the event, then the request's fields in
        # front (merge_request_fields), the level, the timestamp.
        event_dict: dict[str, Any] = {**fields, "event": event}
        current = _request_fields.get()
        if current:
            event_dict = {**current, **event_dict}
        if self._process:
            event_dict = {**self._process, **event_dict}
        event_dict["level"] = "info"
        self._timestamp(self._writer, "info", event_dict)
        self._writer.info(_encoder.encode(event_dict))


_direct: _DirectLines | None = None


def info_line(logger: Any, event: str, **fields: Any) -> None:
    """``logger.info(event, **fields)``, the same line, without the chain when it can."""
    direct = _direct
    if direct is not None and direct.applies():
        if direct.enabled:
            direct.write(event, fields)
    else:
        logger.info(event, **fields)


def configure_logging(level: str = "info", stream: BinaryIO | None = None, *,
                      process: dict[str, Any] | None = None) -> LineWriter:
    """One JSON object per line on stdout: cheap enough for a line per request.

    ``process``: fields on every line of this process (``serve --workers N`` puts each
    process's ``process_id`` there; ``pid`` is a source's id in request lines). Call it in
    the process that logs: its writer flushes from a thread of that process. Returns the
    line writer (``flush()`` writes out what it holds).
    """
    global _direct
    numeric = logging.getLevelNamesMapping()[level.upper()]
    timestamp = _Timestamp()
    fixed = dict(process or {})

    def merge_process_fields(logger: WrappedLogger, method_name: str,
                             event_dict: EventDict) -> EventDict:
        return {**fixed, **event_dict}

    shared: list[Any] = [
        *([merge_process_fields] if fixed else []),
        merge_request_fields,
        structlog.processors.add_log_level,
        timestamp,
    ]
    writer = LineWriter(stream or sys.stdout.buffer)
    processors = [
        *shared,
        _tracebacks,
        structlog.processors.JSONRenderer(serializer=_dumps),
    ]
    wrapper = structlog.make_filtering_bound_logger(numeric)
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper,
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    _direct = _DirectLines(processors, wrapper, writer, timestamp,
                           enabled=numeric <= logging.INFO, process=fixed)
    # uvicorn logs through the standard library; render its records the same way.
    handler = _RecordLines(writer)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _tracebacks,
            structlog.processors.JSONRenderer(),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Their warnings still come through; their per-request lines would put every
    # postback's query string (lead fields) in the log, in a format of their own.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    return writer
