"""Shared test harness: a real app on a temp SQLite file, driven through HTTP, fake clock."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import msgspec
import pytest
import structlog
from asgi_lifespan import LifespanManager

from app.config.schema import Config, parse_config, with_server_overrides
from app.factory import create_app
from app.services import Services
from storage.backend import EventStore
from storage.postgres.store import PostgresStore
from storage.sqlite.store import Store
from tests import mutation_order, schedule
from tests.pg_cluster import Cluster, ClusterUnavailable

CID = "cmp_9z8y7x6w"
OTHER_CID = "cmp_other"
PID = "src_abc123"
ADMIN_TOKEN = "secret-token"

TEST_CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
# The largest bound there is: the checks of money at 10^12 are proven on it; the default
# bound of 10^9 has tests of its own (tests/test_money_limits.py).
max_revenue = 1000000000000

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "src_fixed"
payout = {{ type = "fixed", value = 12.5 }}

[[sources]]
pid = "src_paused"
active = false

[[campaigns]]
cid = "{CID}"
name = "Auto insurance quotes"
# The checks of every field are proven on a strict campaign; the lenient default has tests
# of its own (tests/test_lenient_fields.py).
strict_fields = true
landing_url = "https://example.com/quote?tid={{transaction_id}}&src={{pid}}"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.events]]
event_id = "form_step"
allow_duplicates = true

[[campaigns]]
cid = "{OTHER_CID}"

[[campaigns.events]]
event_id = "quote_viewed"
"""


def with_campaign(config: Config, cid: str, **changes: Any) -> Config:
    """``config`` with campaign ``cid``'s settings changed."""
    campaigns = [msgspec.structs.replace(campaign, **changes) if campaign.cid == cid
                 else campaign for campaign in config.campaigns]
    return msgspec.structs.replace(config, campaigns=campaigns)


class FakeClock:
    """A clock the test moves by hand, so lock windows close without sleeping."""

    def __init__(self) -> None:
        self._now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._now += timedelta(seconds=seconds)


def make_config(db: Path, **server: Any) -> Config:
    return make_config_for(str(db), **server)


def make_config_for(db: str, **server: Any) -> Config:
    """The test config on ``db``: a file path, or a PostgreSQL URL."""
    config = parse_config(TEST_CONFIG, origin="test config")
    return with_server_overrides(config, "test", db=db, **server)


@dataclass
class Harness:
    client: httpx.AsyncClient
    clock: FakeClock
    services: Services

    async def click(self, cid: str = CID, **fields: Any) -> str:
        response = await self.client.post("/api/click", json={"cid": cid, **fields})
        assert response.status_code == 200, response.text
        transaction_id: str = response.json()["data"]["transaction_id"]
        return transaction_id

    async def fire(self, transaction_id: str, event_id: str = "quote_viewed",
                   **fields: Any) -> httpx.Response:
        body = {"cid": CID, "event_id": event_id, "transaction_id": transaction_id, **fields}
        return await self.client.post("/api/event/trigger", json=body)

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows straight from the database, once every queued write has committed.

        Written for SQLite; on PostgreSQL its ``?`` placeholders become ``$1``, ``$2``...
        """
        store = self.services.store
        await store.flush()
        if isinstance(store, PostgresStore):
            numbers = iter(range(1, len(params) + 1))
            sql = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
            conn = await asyncpg.connect(store.url)
            try:
                return [tuple(row) for row in await conn.fetch(sql, *params)]
            finally:
                await conn.close()
        assert isinstance(store, Store)
        with closing(sqlite3.connect(store.path)) as conn:
            return conn.execute(sql, params).fetchall()

    async def view(self, transaction_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/transactions/{transaction_id}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data


@asynccontextmanager
async def running(
    config: Config, clock: FakeClock | None = None, store: EventStore | None = None,
    demo: bool = False,
) -> AsyncIterator[Harness]:
    """The app with its lifespan running, and an HTTP client talking to it in-process."""
    clock = clock or FakeClock()
    app = create_app(config, clock=clock, store=store, demo=demo)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers={"User-Agent": "pytest-agent/1.0"}) as client:
            # The lifespan's state, as handlers see it through request.state.
            services: Services = manager._state["services"]
            yield Harness(client=client, clock=clock, services=services)


StartApp = Callable[..., Awaitable[Harness]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    # structlog's default renders each exception as a rich traceback with every frame's
    # locals, tens of milliseconds a line: a store that keeps failing under a test (or a
    # mutant) logs one per dispatcher pass. Tests read logs through capture_logs.
    structlog.configure(processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S"),
        structlog.dev.ConsoleRenderer(colors=False,
                                      exception_formatter=structlog.dev.plain_traceback),
    ])
    mutation_order.register(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    schedule.by_file_length(items)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_stores`` get ``api`` on SQLite and on PostgreSQL."""
    if "api" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_stores"):
        metafunc.parametrize("api", BACKENDS, indirect=True)


def postgres_store(url: str, clock: FakeClock) -> PostgresStore:
    """A PostgreSQL store whose lock windows follow ``clock`` (see WindowClaimer)."""
    return PostgresStore(url, db_clock=clock.now)


@asynccontextmanager
async def running_on(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[Harness]:
    """``config`` running on SQLite as it says, or on a PostgreSQL database of the test's
    own when the test is parametrized so (see both_stores)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        async with running(config) as harness:
            yield harness
        return
    url = request.getfixturevalue("pg_url")
    clock = FakeClock()
    async with running(with_server_overrides(config, "test", db=url), clock,
                       postgres_store(url, clock)) as harness:
        yield harness


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """SQLite or PostgreSQL, for ``running_on``: a test that takes it runs on both stores."""
    return request


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An SQLite file, or a PostgreSQL database of the test's own: a test that takes it
    runs on both stores."""
    if request.param == "sqlite":
        return str(tmp_path / "events.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def api(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Harness]:
    """The app on a fresh SQLite file, or (parametrized, see both_stores) on PostgreSQL."""
    async with running_on(request, make_config(db_path)) as harness:
        yield harness


def error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The exact error envelope the API answers with."""
    return {"status": status, "type": "error", "message": message, **extra}


def no_postgres(exc: Exception, env: Mapping[str, str]) -> NoReturn:
    """Skip a test that needs PostgreSQL, saying how to get it; under CI=true, fail it."""
    if env.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
    pytest.skip(f"no PostgreSQL ({exc}): `make postgres` installs Debian's postgresql, "
                "or set EP_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the whole run: EP_TEST_POSTGRES_URL, or a throwaway cluster.

    Without either the PostgreSQL tests skip, except under CI=true, where they fail.
    """
    given = os.environ.get("EP_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        cluster = Cluster()
    except ClusterUnavailable as exc:
        no_postgres(exc, os.environ)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _admin(postgres_url: str, sql: str) -> None:
    """Run ``sql`` on the server, from a thread of its own: a fixture that needs it may be
    set up while the test's event loop runs."""
    async def run() -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


@contextmanager
def _database(postgres_url: str, template: str = "template1") -> Iterator[str]:
    name = f"ep_test_{uuid.uuid4().hex[:12]}"
    _admin(postgres_url, f"CREATE DATABASE {name} TEMPLATE {template}")
    base, _, _ = postgres_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_template(postgres_url: str) -> Iterator[str]:
    """A database migrated once, that each test's database is copied from."""
    with _database(postgres_url) as url:
        async def migrate() -> None:
            store = PostgresStore(url)
            await store.open()
            await store.close()

        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, migrate()).result()
        yield url.rpartition("/")[2]


@pytest.fixture
def pg_url(postgres_url: str, pg_template: str) -> Iterator[str]:
    """The URL of a database of this test's own with the schema in place, dropped after."""
    with _database(postgres_url, pg_template) as url:
        yield url


@pytest.fixture
def pg_empty_url(postgres_url: str) -> Iterator[str]:
    """The URL of an empty database of this test's own, dropped afterwards."""
    with _database(postgres_url) as url:
        yield url
