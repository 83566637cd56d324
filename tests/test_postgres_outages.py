"""A PostgreSQL that goes away, hangs or drops its connections: 503, never 500, then back.

The store talks to the test's own database through a TCP relay that the test cuts (every
connection reset, the port refusing), hangs (nothing answers) or restores, so the shared
cluster other tests use keeps running. Killing the backends of the test's own database
(``pg_terminate_backend``) is the other way a restart looks from a client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from app.config.schema import Config
from storage.postgres.bounded import acquire_within
from storage.postgres.store import PostgresStore
from tests.conftest import ADMIN_TOKEN, FakeClock, Harness, error, make_config_for, running

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITE_TIMEOUT = 1.0
UNAVAILABLE = error(503, "Store unavailable")
MONTH = {"from": "2026-11-01", "to": "2026-11-30"}


class Relay:
    """A TCP relay on a local port to the database's."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset every open one, as a stopped server does."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    def hang(self) -> None:
        """Let nothing through, either way, as a frozen server (SIGSTOP) does."""
        self._flowing.clear()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None or not self._server.is_serving():
            await self.start()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.append(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        finally:
            sink.transport.abort()


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[tuple[Relay, str]]:
    parts = urlsplit(pg_url)
    assert parts.hostname is not None and parts.port is not None
    relay = Relay(parts.hostname, parts.port)
    await relay.start()
    yield relay, pg_url.replace(f":{parts.port}/", f":{relay.port}/", 1)
    await relay.restore()


def _config(url: str) -> Config:
    return make_config_for(url, write_timeout_seconds=WRITE_TIMEOUT)


@contextlib.asynccontextmanager
async def _serving(url: str) -> AsyncIterator[Harness]:
    clock = FakeClock()
    store = PostgresStore(url, db_clock=clock.now, write_timeout=WRITE_TIMEOUT)
    async with running(_config(url), clock, store) as api:
        yield api


async def _answers(api: Harness, transaction_id: str) -> list[httpx.Response]:
    """An event (new transactions: a window claim and a cold load), a list, a read and a
    report, and the health check."""
    client = api.client
    return [
        await api.fire(transaction_id, "quote_viewed"),
        await client.get("/api/postbacks", headers=AUTH),
        await client.get(f"/api/transactions/{transaction_id}", headers=AUTH),
        await client.get("/api/reports", params=MONTH, headers=AUTH),
        await client.get("/healthz"),
    ]


async def _recovered(api: Harness) -> None:
    """Wait until the health check passes again (the writer retries on its own)."""
    for _ in range(200):
        if (await api.client.get("/healthz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store did not come back")


async def _still_served(api: Harness) -> None:
    transaction_id = await api.click()
    answers = await _answers(api, transaction_id)
    assert [answer.status_code for answer in answers] == [200] * 5, answers[-2].text


async def test_a_stopped_database_answers_503_and_the_service_comes_back(
        relay: tuple[Relay, str]) -> None:
    proxy, url = relay
    async with _serving(url) as api:
        transaction_id = await api.click()
        await proxy.cut()
        answers = await _answers(api, transaction_id)
        assert [answer.json() for answer in answers[:4]] == [UNAVAILABLE] * 4
        assert {answer.headers["Retry-After"] for answer in answers[:4]} == {"5"}
        assert answers[4].status_code == 503
        await proxy.restore()
        await _recovered(api)
        await _still_served(api)


async def test_a_hung_database_answers_503_within_the_write_timeout(
        relay: tuple[Relay, str]) -> None:
    proxy, url = relay
    async with _serving(url) as api:
        transaction_id = await api.click()
        proxy.hang()
        answers = await _answers(api, transaction_id)
        assert [answer.json() for answer in answers[:4]] == [UNAVAILABLE] * 4
        assert answers[4].status_code == 503
        await proxy.restore()
        await _recovered(api)
        await _still_served(api)


async def test_backends_killed_under_requests_give_200_or_503_never_500(pg_url: str) -> None:
    """What a restart looks like from the pool: every connection of this test's database
    ended by the server (57P01), while requests run."""
    async with _serving(pg_url) as api:
        transaction_ids = [await api.click() for _ in range(20)]
        name = urlsplit(pg_url).path.lstrip("/")

        async def kill() -> None:
            admin = await asyncpg.connect(pg_url, server_settings={"application_name": "kill"})
            try:
                await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND application_name <> 'kill'", name)
            finally:
                await admin.close()

        results = await asyncio.gather(
            kill(), *(api.fire(t, "quote_viewed") for t in transaction_ids),
            *(api.client.get("/api/postbacks", headers=AUTH) for _ in range(5)),
            kill(), api.client.get("/healthz"))
        statuses = {r.status_code for r in results if isinstance(r, httpx.Response)}
        assert statuses <= {200, 503}
        await _recovered(api)
        await _still_served(api)



async def test_a_connection_acquired_as_its_caller_is_cancelled_goes_back_to_the_pool(
    pg_url: str,
) -> None:
    # A report connection asked for just before shutdown has its task cancelled: the pool
    # must get the connection back, or closing the pool waits for it for ever. The
    # cancellation lands after 0, 1, 2, ... turns of the loop, so one of them falls
    # between the pool handing the connection over and the caller taking it.
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        for turns in range(40):
            caller = asyncio.ensure_future(acquire_within(5.0, pool))
            for _ in range(turns):
                await asyncio.sleep(0)
            caller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                conn = await caller
                await pool.release(conn)  # the caller got it first: it gives it back
            # Giving a connection back resets it: a round trip to the database.
            for _ in range(500):
                if pool.get_idle_size() == 1:
                    break
                await asyncio.sleep(0.01)
            assert pool.get_idle_size() == 1, turns
    finally:
        await asyncio.wait_for(pool.close(), 10)
