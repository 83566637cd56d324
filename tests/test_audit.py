"""Every write is audited with the name of the token that made it.

The route table is the OpenAPI document's own (app/routes/operations.py): each route that
changes something is called with a named token of its role, and the change it made is
read back through the API with that name on it (a conversion's history, a postback, an
endpoint, a catalog version); a write that stores nothing (an endpoint test, a backup, a
reload) carries the name on its log line. A write route with no entry here fails. Both
stores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from structlog.testing import capture_logs

from actors.clock import utc_text
from app.config.reload import ConfigFile
from app.config.tokens import hash_token
from app.conversions.desk import ConversionDesk
from app.factory import create_app
from app.observe.logs import merge_request_fields
from app.postbacks.plan import Planner
from app.routes.access import Caller
from app.routes.operations import operations
from app.routes.postbacks import shown_to
from app.services import Services
from storage.records import PostbackView
from storage.sqlite.schema import MIGRATIONS, migrate
from tests.conftest import ADMIN_TOKEN, CID, PID, FakeClock, postgres_store
from tests.receiver import Answer, Receiver
from tests.schemas import sqlite_at

OPERATOR_TOKEN = "operator-token-0123456789abcdef"
CHIEF_TOKEN = "chief-token-0123456789abcdef-01"
# The token each route is called with, by the route's least role.
BY_ROLE = {"operator": ("ops desk", OPERATOR_TOKEN), "admin": ("chief", CHIEF_TOKEN)}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BUYER = "/buyer"


def _config(receiver: Receiver) -> str:
    return f"""
[server]
admin_token = "{ADMIN_TOKEN}"
catalog = "database"

[delivery]
max_attempts = 1

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale"
conversion = true
approval = "manual"

[[campaigns.postbacks]]
name = "acme"
url = "{receiver.url}{BUYER}?tid={{transaction_id}}"

[[tokens]]
name = "ops desk"
token = "{hash_token(OPERATOR_TOKEN)}"
role = "operator"

[[tokens]]
name = "chief"
token = "{hash_token(CHIEF_TOKEN)}"
role = "admin"
"""


class Shop:
    """The app served from a config file (so a reload has one to read) on ``db``."""

    def __init__(self, client: httpx.AsyncClient, services: Services, clock: FakeClock,
                 receiver: Receiver) -> None:
        self.client = client
        self.services = services
        self.clock = clock
        self.receiver = receiver

    async def sale(self) -> tuple[str, str]:
        """A pending conversion: its transaction and conversion ids."""
        click = await self.client.post("/api/click", json={"cid": CID, "pid": PID})
        transaction_id = click.json()["data"]["transaction_id"]
        fired = await self.client.post("/api/event/trigger", json={
            "cid": CID, "event_id": "sale", "transaction_id": transaction_id,
            "revenue": "10"})
        assert fired.status_code == 200, fired.text
        return transaction_id, fired.json()["data"]["conversion_id"]

    async def dead_letter(self) -> tuple[str, int]:
        """A buyer postback whose one attempt failed: its transaction and postback id."""
        self.receiver.script(BUYER, Answer(500))
        transaction_id, conversion_id = await self.sale()
        assert (await self.client.post(f"/api/conversions/{conversion_id}/approve",
                                       headers=ADMIN)).status_code == 200
        await self.services.dispatcher.drain()
        found = (await self.client.get("/api/postbacks", headers=ADMIN)).json()["data"]
        [dead] = [p for p in found if p["transaction_id"] == transaction_id]
        assert dead["status"] == "failed", dead
        return transaction_id, dead["id"]

    async def get(self, url: str) -> Any:
        response = await self.client.get(url, headers=ADMIN)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    async def catalog_change(self) -> int:
        """A second catalog version, made with the admin token: its version."""
        made = await self.client.put("/api/campaigns/cmp_spare", json={
            "events": [{"event_id": "signup"}]}, headers={**ADMIN, "If-Match": '"1"'})
        assert made.status_code == 201, made.text
        return 2


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@asynccontextmanager
async def serving(tmp_path: Path, db: str, receiver: Receiver) -> AsyncIterator[Shop]:
    path = tmp_path / "config.toml"
    path.write_text(_config(receiver))
    config_file = ConfigFile(path, {"db": db})
    clock = FakeClock()
    store = None if not db.startswith("postgres") else postgres_store(db, clock)
    app = create_app(config_file.read(), clock=clock, store=store, config_file=config_file)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Shop(client, manager._state["services"], clock, receiver)


# Each case makes what its route changes, calls the route through ``call`` (which sends
# the token) and answers the name the change is shown with (None from LOGGED_ONLY's).
Call = Callable[..., Awaitable[httpx.Response]]
Case = Callable[[Shop, Call], Awaitable[str | None]]


async def _status_change(shop: Shop, call: Call, action: str) -> str | None:
    _, conversion_id = await shop.sale()
    if action == "reverse":
        assert (await shop.client.post(f"/api/conversions/{conversion_id}/approve",
                                       headers=ADMIN)).status_code == 200
    await call("post", f"/api/conversions/{conversion_id}/{action}", json={})
    history = (await shop.get(f"/api/conversions/{conversion_id}"))["history"]
    token: str | None = history[-1]["token"]
    return token


async def _bulk(shop: Shop, call: Call) -> str | None:
    _, conversion_id = await shop.sale()
    await call("post", "/api/conversions/bulk",
               json={"action": "reject", "conversion_ids": [conversion_id]})
    history = (await shop.get(f"/api/conversions/{conversion_id}"))["history"]
    assert [entry["token"] for entry in history] == [None, history[-1]["token"]]
    token: str | None = history[-1]["token"]
    return token


async def _retry(shop: Shop, call: Call) -> str | None:
    transaction_id, postback_id = await shop.dead_letter()
    await call("post", f"/api/postbacks/{postback_id}/retry")
    shown = await shop.get(f"/api/postbacks/{postback_id}")
    # The transaction's view shows the same postback with the same name.
    [also] = (await shop.get(f"/api/transactions/{transaction_id}"))["postbacks"]
    assert also["requeued_by"] == shown["requeued_by"]
    token: str | None = shown["requeued_by"]
    return token


async def _recover(shop: Shop, call: Call) -> str | None:
    start = shop.clock.now()
    _, postback_id = await shop.dead_letter()
    await call("post", "/api/postbacks/recover", params={
        "from": utc_text(start - timedelta(seconds=1)),
        "to": utc_text(shop.clock.now() + timedelta(seconds=1))})
    token: str | None = (await shop.get(f"/api/postbacks/{postback_id}"))["requeued_by"]
    return token


async def _resume(shop: Shop, call: Call) -> str | None:
    await call("post", "/api/endpoints/acme/resume")
    [acme] = [view for view in await shop.get("/api/endpoints") if view["name"] == "acme"]
    token: str | None = acme["resumed_by"]
    return token


async def _catalog(shop: Shop, call: Call, method: str, url: str, body: Any = None,
                   on: int = 1) -> str | None:
    kwargs = {} if body is None else {"json": body}
    await call(method, url, headers={"If-Match": f'"{on}"'}, **kwargs)
    token: str | None = (await shop.get("/api/catalog/versions"))[0]["token"]
    return token


async def _logged_only(shop: Shop, call: Call, url: str) -> str | None:
    await call("post", url)
    return None


async def _restore(shop: Shop, call: Call) -> str | None:
    return await _catalog(shop, call, "post", "/api/catalog/versions/1/restore",
                          on=await shop.catalog_change())


async def _delete_campaign(shop: Shop, call: Call) -> str | None:
    return await _catalog(shop, call, "delete", "/api/campaigns/cmp_spare",
                          on=await shop.catalog_change())


async def _delete_source(shop: Shop, call: Call) -> str | None:
    return await _catalog(shop, call, "delete", f"/api/sources/{PID}")


CASES: dict[tuple[str, str], Case] = {
    **{("post", f"/api/conversions/{{conversion_id}}/{action}"):
       (lambda shop, call, action=action: _status_change(shop, call, action))
       for action in ("approve", "reject", "reverse")},
    ("post", "/api/conversions/bulk"): _bulk,
    ("post", "/api/postbacks/{postback_id}/retry"): _retry,
    ("post", "/api/postbacks/recover"): _recover,
    ("post", "/api/endpoints/{name}/resume"): _resume,
    ("post", "/api/endpoints/{name}/test"):
        lambda shop, call: _logged_only(shop, call, "/api/endpoints/acme/test"),
    ("put", "/api/campaigns/{cid}"): lambda shop, call: _catalog(
        shop, call, "put", "/api/campaigns/cmp_new", {"events": [{"event_id": "signup"}]}),
    ("delete", "/api/campaigns/{cid}"): _delete_campaign,
    ("put", "/api/sources/{pid}"): lambda shop, call: _catalog(
        shop, call, "put", "/api/sources/src_new", {"active": True}),
    ("delete", "/api/sources/{pid}"): _delete_source,
    ("post", "/api/catalog/versions/{version}/restore"): _restore,
    ("post", "/api/admin/backup"):
        lambda shop, call: _logged_only(shop, call, "/api/admin/backup"),
    ("post", "/api/admin/reload"):
        lambda shop, call: _logged_only(shop, call, "/api/admin/reload"),
}


# What stores nothing: the request's log line is its audit trail.
LOGGED_ONLY = {("post", "/api/endpoints/{name}/test"), ("post", "/api/admin/backup"),
               ("post", "/api/admin/reload")}


def _write_routes() -> list[tuple[str, str, str]]:
    return [(method, path, op.role or "")
            for path, methods in operations(demo=False).items()
            for method, op in methods.items() if op.admin and method != "get"]


WRITES = _write_routes()


def test_every_write_route_has_an_audit_case() -> None:
    """A write route added to the table without a case here fails."""
    assert {(method, path) for method, path, _ in WRITES} == set(CASES)
    assert {role for _, _, role in WRITES} <= set(BY_ROLE)


@pytest.mark.parametrize(("method", "path", "role"), WRITES,
                         ids=[f"{method} {path}" for method, path, _ in WRITES])
async def test_each_write_is_stored_and_logged_with_the_tokens_name(
    tmp_path: Path, db: str, receiver: Receiver, method: str, path: str, role: str
) -> None:
    name, token = BY_ROLE[role]
    answers: list[httpx.Response] = []

    async def call(verb: str, url: str, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> httpx.Response:
        response = await shop.client.request(
            verb.upper(), url, headers={"Authorization": f"Bearer {token}", **(headers or {})},
            **kwargs)
        answers.append(response)
        return response

    async with serving(tmp_path, db, receiver) as shop:
        with capture_logs(processors=[merge_request_fields]) as logs:
            shown = await CASES[(method, path)](shop, call)
    [answer] = answers
    # PostgreSQL is backed up with pg_dump (501): the refusal is logged with the name too.
    assert answer.status_code < 300 or (path, answer.status_code) == (
        "/api/admin/backup", 501), answer.text
    if (method, path) not in LOGGED_ONLY:
        assert shown == name
    # The set-up calls with the admin token: the one line with this name is the write's.
    [line] = [line for line in logs if line["event"] == "request" and line.get("token") == name]
    assert (line["method"], line["status"]) == (method.upper(), answer.status_code)
    if path == "/api/endpoints/{name}/test":
        # Its own line too, bound to the request it was made in.
        [tested] = [line for line in logs if line["event"] == "endpoint_tested"]
        assert tested["token"] == name
    # The token itself is never logged, nor its hash.
    assert not any(token in str(line) or hash_token(token) in str(line) for line in logs)


def test_a_partner_does_not_see_who_requeued_its_postback() -> None:
    view = PostbackView(id=1, transaction_id="t", cid=CID, pid=PID, event_id="sale",
                        conversion_id="c", kind="source", method="GET", url="u",
                        status="pending", attempts=1, max_attempts=2, next_attempt_at=None,
                        last_status_code=None, last_error=None, created_at="a",
                        updated_at="a", requeued_by="ops desk")
    assert shown_to(Caller("affiliate", "partner", PID), view).requeued_by is None
    assert shown_to(Caller("ops desk", "operator"), view).requeued_by == "ops desk"


async def test_the_command_line_records_its_changes_as_cli(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = str(tmp_path / "events.db")
    async with serving(tmp_path, db, receiver) as shop:
        _, conversion_id = await shop.sale()
        desk = ConversionDesk(shop.services.store, lambda: Planner(shop.services.config),
                              shop.clock)
        await desk.change([conversion_id], "approve", None, "cli", token="cli")
        history = (await shop.get(f"/api/conversions/{conversion_id}"))["history"]
    assert (history[-1]["source"], history[-1]["token"]) == ("cli", "cli")


def test_changes_stored_before_names_were_kept_show_none(tmp_path: Path) -> None:
    """The migration adds the columns empty."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        sqlite_at(conn, len(MIGRATIONS) - 1)
        conn.execute("INSERT INTO conversion_changes (conversion_id, from_status, to_status,"
                      " source, changed_at) VALUES ('c', 'pending', 'approved', 'api', 'z')")
        assert migrate(conn) == len(MIGRATIONS)
        assert conn.execute("SELECT token FROM conversion_changes").fetchall() == [(None,)]
