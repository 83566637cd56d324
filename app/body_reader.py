"""Request bodies are read in full, bounded in size and in time, before a request is let in.

A client that trickles its body holds only its socket: it never takes one of the
``max_in_flight`` slots the requests being handled need, and it is cut off with 408 once
``body_timeout_seconds`` have passed.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.envelope import error_response
from app.errors import ApiError
from app.logs import annotate

MAX_BODY_BYTES = 16 * 1024
BODY = "event_postback.body"
# Methods whose bodies the API never reads: they are passed through untouched.
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyReader:
    """Reads the whole body, then hands the app a ``receive`` that replays it."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES,
                 timeout: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await _read(scope, receive, self.limit)
        except TimeoutError:
            await _refuse(errors.body_timeout(), scope, receive, send)
            return
        except ApiError as error:
            await _refuse(error, scope, receive, send)
            return
        # Handlers of this app read it from here; ``replay`` serves any other reader.
        scope[BODY] = body
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # later calls wait for the disconnect, as the server's would
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise errors.body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    annotate(outcome=error.outcome)
    await error_response(error)(scope, receive, send)
