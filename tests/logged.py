"""The service's own log pipeline (``configure_logging``) into a stream a test reads."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import BinaryIO

import structlog

from app.observe import logs
from app.observe.logs import LineWriter, configure_logging

_TOUCHED = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")


@contextlib.contextmanager
def logging_to(stream: BinaryIO, level: str = "info") -> Iterator[LineWriter]:
    """Log as ``serve`` does, into ``stream``; structlog and the standard library restored.

    Loggers are not cached on first use meanwhile: a module's logger cached with this
    writer would keep writing to it in later tests, past ``capture_logs``.
    """
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    others = {name: (logging.getLogger(name).level, logging.getLogger(name).handlers[:],
                     logging.getLogger(name).propagate) for name in _TOUCHED}
    writer = configure_logging(level, stream=stream)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield writer
    finally:
        writer.flush()
        structlog.configure(**saved)
        root.handlers[:], root.level = handlers, root_level
        for name, (level_, handlers_, propagate) in others.items():
            logger = logging.getLogger(name)
            logger.setLevel(level_)
            logger.handlers[:] = handlers_
            logger.propagate = propagate
        logs._direct = None
