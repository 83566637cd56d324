"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for minting and open-loop load.

It does only what the benchmark needs (requests with a body, answers with
Content-Length), so its own cost per request stays small next to the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def post_request(host: str, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return status, body


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    bodies: list[bytes] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def closed_loop(url: str, requests: Iterable[bytes], *, connections: int = 64,
                      keep_bodies: bool = False) -> Results:
    """Send every request, ``connections`` at a time; each waits for the one before."""
    parts = urlsplit(url)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    results = Results()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while not queue.empty():
                request = queue.get_nowait()
                status, body = await _exchange(reader, writer, request)
                results.statuses[status] = results.statuses.get(status, 0) + 1
                if keep_bodies:
                    results.bodies.append(body)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return results


async def open_loop(url: str, requests: list[bytes], *, rate: float,
                    max_connections: int = 256) -> Results:
    """Send request i at start + i/rate whatever the answers: latency counts from then.

    A request whose time has come waits for a free connection, and that wait is part of
    its latency, so a slow server cannot hide its queue (no coordinated omission).
    """
    parts = urlsplit(url)
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    results = Results()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while (item := await due.get()) is not None:
                scheduled, request = item
                try:
                    status, _ = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError):
                    results.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname,
                                                                   parts.port)
                    continue
                results.latencies.append(time.perf_counter() - scheduled)
                results.statuses[status] = results.statuses.get(status, 0) + 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(max_connections)]
    start = time.perf_counter() + 0.05
    for index, request in enumerate(requests):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((scheduled, request))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return results
