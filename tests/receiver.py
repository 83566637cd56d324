"""A real HTTP receiver for postbacks: uvicorn on a free port, in a thread of its own.

Each request takes the next answer scripted for its path (200 "ok" once there is none); an
answer may delay, or hang until released. Every request is recorded as it arrived.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.threaded import ThreadedServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "ok"
    delay: float = 0.0
    hang: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    url: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.hanging = 0
        self._scripts: defaultdict[str, deque[Answer]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = ThreadedServer(Starlette(routes=[
            Route("/{path:path}", self._handle, methods=["GET", "POST"]),
            # CORS preflights of scripted APIs: any origin, any header.
            Route("/{path:path}", _preflight, methods=["OPTIONS"])]))
        self.url = self._server.url

    def __enter__(self) -> Receiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.stop()

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts[path].extend(answers)

    def release(self) -> None:
        """Let every hanging request (and every later one) answer."""
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def paths(self) -> list[str]:
        with self._lock:
            return [request.path for request in self.requests]

    def of(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.requests if request.path == path]

    async def _handle(self, request: Request) -> Response:
        if self._release is None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
        received = Received(
            method=request.method,
            path=request.url.path,
            url=str(request.url),
            query=parse_qs(request.url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
        )
        with self._lock:
            self.requests.append(received)
            script = self._scripts[received.path]
            answer = script.popleft() if script else Answer()
        if answer.hang:
            self.hanging += 1
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return PlainTextResponse(answer.body, status_code=answer.status, headers=answer.headers)


async def _preflight(request: Request) -> Response:
    return Response(status_code=204, headers={
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": request.headers.get(
            "access-control-request-headers", "*"),
    })
