"""Slow clients cannot starve fast ones: bodies are bounded in time and hold no slot."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app.edge.body_reader import Deadlines
from tests.conftest import CID, error, make_config, running
from tests.served import Served


async def trickle(release: asyncio.Event) -> AsyncIterator[bytes]:
    yield b'{"cid": '
    await release.wait()  # the rest of the body never comes while the test runs
    yield b'"x"}'


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_a_closed_connection(
    db_path: Path,
) -> None:
    config = make_config(db_path, body_timeout_seconds=0.2)
    async with running(config) as api:
        release = asyncio.Event()
        try:
            response = await asyncio.wait_for(
                api.client.post("/api/click", content=trickle(release)), 5)
        finally:
            release.set()
    assert response.status_code == 408
    assert response.json() == error(408, "Request body timeout")
    assert response.headers["connection"] == "close"


async def test_requests_waiting_for_their_body_hold_no_in_flight_slot(db_path: Path) -> None:
    config = make_config(db_path, max_in_flight=2, body_timeout_seconds=30)
    async with running(config) as api:
        release = asyncio.Event()
        slow = [asyncio.create_task(api.client.post("/api/click", content=trickle(release)))
                for _ in range(10)]
        await asyncio.sleep(0.05)  # every slow request is now waiting for its body
        try:
            fast = [await api.client.post("/api/click", json={"cid": CID}) for _ in range(5)]
            assert [response.status_code for response in fast] == [200] * 5
            assert not any(task.done() for task in slow)
        finally:
            release.set()
        answers = await asyncio.gather(*slow)
    # Once their bodies came, they were admitted too (their cid is unknown).
    assert {response.json()["message"] for response in answers} == {"Invalid cid"}


def _raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_served_slow_bodies_get_408_while_fast_clients_are_served(tmp_path: Path) -> None:
    config = tmp_path / "slow.toml"
    config.write_text("[server]\nbody_timeout_seconds = 1.0\nmax_in_flight = 4\n"
                      '[[campaigns]]\ncid = "%s"\n' % CID)
    server = Served(tmp_path, "--config", str(config), "--db", str(tmp_path / "slow.db"))
    try:
        head = (b"POST /api/click HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 20\r\n\r\n{")
        slow = [_raw_request(server.port, head) for _ in range(20)]
        with httpx.Client(base_url=server.url) as client:
            fast = [client.post("/api/click", json={"cid": CID}).status_code
                    for _ in range(10)]
        assert fast == [200] * 10
        # Each slow client gets its answer and then the end of the connection (a socket
        # left open would time out reading, after 10 s, and fail the test).
        answers = [_read_all(sock) for sock in slow]
        for sock in slow:
            sock.close()
        for answer in answers:
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 408 Request Timeout", answer
            assert b"connection: close" in rest.lower()
            assert rest.endswith(b'{"status":408,"type":"error","message":"Request body timeout"}')
    finally:
        server.kill()


async def test_deadlines_cut_off_only_the_late_reads_and_then_disarm() -> None:
    deadlines = Deadlines(0.2)
    release = asyncio.Event()

    async def read(wait: asyncio.Event | None) -> str:
        try:
            async with deadlines:
                if wait is not None:
                    await wait.wait()
                else:
                    await asyncio.sleep(0)
        except TimeoutError:
            await asyncio.sleep(0)  # the task goes on: the cancellation was taken back
            return "timed out"
        return "read"

    late = [asyncio.create_task(read(release)) for _ in range(3)]
    quick = [await read(None) for _ in range(3)]
    assert [await task for task in late] == ["timed out"] * 3
    assert quick == ["read"] * 3
    # A read after the late ones is not cut off by their expiry, and nothing stays armed.
    assert await read(None) == "read"
    await asyncio.sleep(0.3)
    assert not deadlines._armed and not deadlines._reading and not deadlines._expired
