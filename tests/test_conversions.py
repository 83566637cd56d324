"""Conversion lifecycle: statuses, allowed changes, their postbacks, audit trail and money."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config.schema import Config, ConfigError, parse_config, with_server_overrides
from storage.records import WriteOp
from tests.conftest import ADMIN_TOKEN, CID, PID, Harness, error, running, running_on
from tests.receiver import Receiver
from tests.served import EXECUTABLE, Served
from tests.test_metrics import scrape, value

# The rules hold on both stores.
pytestmark = pytest.mark.both_stores

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def lifecycle_config(receiver: Receiver, db: Path, *, durability: str = "commit") -> Config:
    text = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
durability = "{durability}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?conv={{conversion_id}}&payout={{payout}}&st={{status}}"
retraction_url = "{receiver.url}/retract?conv={{conversion_id}}&st={{status}}&why={{reason}}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.events]]
event_id = "policy_bound"
conversion = true
approval = "manual"

[[campaigns.postbacks]]
url = "{receiver.url}/buyer-fired?conv={{conversion_id}}&st={{status}}"

[[campaigns.postbacks]]
url = "{receiver.url}/buyer-changed?conv={{conversion_id}}&st={{status}}&why={{reason}}"
on = ["approved", "rejected", "reversed"]
events = ["policy_bound"]
"""
    return with_server_overrides(parse_config(text, origin="lifecycle test"), "test",
                                 db=str(db))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


@pytest.fixture
async def api(request: pytest.FixtureRequest, receiver: Receiver,
              db_path: Path) -> AsyncIterator[Harness]:
    """The lifecycle config on SQLite and on PostgreSQL (the module is both_stores)."""
    async with running_on(request, lifecycle_config(receiver, db_path)) as harness:
        yield harness


async def convert(api: Harness, event_id: str = "policy_bound",
                  revenue: str = "100") -> tuple[str, str]:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id, event_id, pid=PID, revenue=revenue)
    assert response.status_code == 200, response.text
    return transaction_id, response.json()["data"]["conversion_id"]


async def act(api: Harness, conversion_id: str, action: str,
              reason: str | None = None) -> Any:
    body = {} if reason is None else {"reason": reason}
    return await api.client.post(f"/api/conversions/{conversion_id}/{action}", json=body,
                                 headers=AUTH)


async def show(api: Harness, conversion_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"]
    return found


async def test_auto_approval_approves_as_it_fires_and_pays_the_source_at_once(
    api: Harness, receiver: Receiver
) -> None:
    _, conversion_id = await convert(api, "sale_completed")
    found = await show(api, conversion_id)
    assert (found["status"], found["decided_at"]) == ("approved", found["fired_at"])
    await api.services.dispatcher.drain()
    [source] = receiver.of("/source")
    assert source.query == {"conv": [conversion_id], "payout": ["50.00"], "st": ["approved"]}
    assert receiver.of("/buyer-fired")[0].query["st"] == ["approved"]
    assert receiver.of("/buyer-changed") == []


async def test_manual_approval_holds_the_source_postback_until_approval(
    api: Harness, receiver: Receiver
) -> None:
    _, conversion_id = await convert(api)
    await api.services.dispatcher.drain()
    assert receiver.of("/source") == []
    # The buyer's default postback goes as the conversion fires, saying it is pending.
    assert receiver.of("/buyer-fired")[0].query["st"] == ["pending"]
    assert (await show(api, conversion_id))["status"] == "pending"

    response = await act(api, conversion_id, "approve", "checked the call")
    assert response.status_code == 200
    assert response.json()["message"] == "Conversion approved"
    assert response.json()["data"]["status"] == "approved"
    await api.services.dispatcher.drain()
    [source] = receiver.of("/source")
    assert source.query == {"conv": [conversion_id], "payout": ["50.00"], "st": ["approved"]}
    [changed] = receiver.of("/buyer-changed")
    assert changed.query == {"conv": [conversion_id], "st": ["approved"],
                             "why": ["checked the call"]}


async def test_reversal_sends_the_retraction_with_status_and_reason(
    api: Harness, receiver: Receiver
) -> None:
    _, conversion_id = await convert(api, "sale_completed")
    response = await act(api, conversion_id, "reverse", "buyer return: wrong number")
    assert response.json()["data"]["status"] == "reversed"
    await api.services.dispatcher.drain()
    [retraction] = receiver.of("/retract")
    assert retraction.query == {"conv": [conversion_id], "st": ["reversed"],
                                "why": ["buyer return: wrong number"]}
    assert len(receiver.of("/source")) == 1  # the approval's, sent when it fired


async def test_rejection_sends_no_source_postback(api: Harness, receiver: Receiver) -> None:
    _, conversion_id = await convert(api)
    assert (await act(api, conversion_id, "reject", "fraud")).status_code == 200
    await api.services.dispatcher.drain()
    assert receiver.of("/source") == [] and receiver.of("/retract") == []
    assert receiver.of("/buyer-changed")[0].query["st"] == ["rejected"]


@pytest.mark.parametrize(("setup", "action", "status", "message"), [
    ([], "approve", 200, "Conversion approved"),
    ([], "reject", 200, "Conversion rejected"),
    ([], "reverse", 409, "Conversion already pending"),
    (["approve"], "approve", 409, "Conversion already approved"),
    (["approve"], "reject", 409, "Conversion already approved"),
    (["approve"], "reverse", 200, "Conversion reversed"),
    (["reject"], "approve", 409, "Conversion already rejected"),
    (["reject"], "reject", 409, "Conversion already rejected"),
    (["reject"], "reverse", 409, "Conversion already rejected"),
    (["approve", "reverse"], "approve", 409, "Conversion already reversed"),
    (["approve", "reverse"], "reject", 409, "Conversion already reversed"),
    (["approve", "reverse"], "reverse", 409, "Conversion already reversed"),
])
async def test_each_change_is_allowed_or_refused_with_its_answer(
    api: Harness, setup: list[str], action: str, status: int, message: str
) -> None:
    _, conversion_id = await convert(api)
    for step in setup:
        assert (await act(api, conversion_id, step)).status_code == 200
    response = await act(api, conversion_id, action)
    assert response.status_code == status
    if status == 409:
        assert response.json() == error(409, message)
        assert len((await show(api, conversion_id))["history"]) == 1 + len(setup)
    else:
        assert response.json()["message"] == message


async def test_unknown_conversions_and_bad_bodies(api: Harness) -> None:
    response = await act(api, "conv_nope", "approve")
    assert response.json() == error(404, "Conversion not found")
    _, conversion_id = await convert(api)
    response = await act(api, conversion_id, "approve", "x" * 256)
    assert response.json() == error(400, "Invalid reason", invalidFields={
        "reason": "Expected `str` of length <= 255"})
    assert (await act(api, conversion_id, "approve", "x" * 255)).status_code == 200
    response = await api.client.post(f"/api/conversions/{conversion_id}/reverse",
                                     content=b"{nope", headers=AUTH)
    assert response.json() == error(400, "Invalid JSON body")
    assert (await api.client.post(f"/api/conversions/{conversion_id}/reverse")
            ).status_code == 401


async def test_history_records_every_change_with_time_reason_and_source(
    api: Harness
) -> None:
    _, conversion_id = await convert(api)
    fired_at = (await show(api, conversion_id))["fired_at"]
    api.clock.advance(60)
    await act(api, conversion_id, "approve", "looks good")
    api.clock.advance(86_400)
    await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "reverse", "conversion_ids": [conversion_id], "reason": "returned"})
    found = await show(api, conversion_id)
    assert found["history"] == [
        {"from": None, "to": "pending", "at": fired_at, "reason": "manual_approval",
         "source": "fire", "token": None},
        {"from": "pending", "to": "approved", "at": "2026-11-28T12:01:00.000000Z",
         "reason": "looks good", "source": "api", "token": "admin_token"},
        {"from": "approved", "to": "reversed", "at": "2026-11-29T12:01:00.000000Z",
         "reason": "returned", "source": "bulk", "token": "admin_token"},
    ]
    assert found["decided_at"] == "2026-11-29T12:01:00.000000Z"


async def test_bulk_answers_each_id_and_changes_all_in_one_transaction(api: Harness) -> None:
    _, pending = await convert(api)
    _, approved = await convert(api, "sale_completed")
    _, rejected = await convert(api)
    await act(api, rejected, "reject")
    # Every op commits whole or not at all (tests/test_writer.py); a call makes one.
    store = api.services.store
    committed: list[WriteOp] = []
    real_commit = store.commit

    async def recording(op: WriteOp) -> None:
        committed.append(op)
        await real_commit(op)

    store.commit = recording  # type: ignore[method-assign]
    response = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "reverse", "reason": "returns file",
        "conversion_ids": [approved, pending, "conv_unknown", rejected, approved]})
    assert response.status_code == 200
    assert response.json()["data"] == {"changed": 1, "results": [
        {"conversion_id": approved, "result": "changed", "status": "reversed"},
        {"conversion_id": pending, "result": "already", "status": "pending"},
        {"conversion_id": "conv_unknown", "result": "unknown", "status": None},
        {"conversion_id": rejected, "result": "already", "status": "rejected"},
        {"conversion_id": approved, "result": "already", "status": "reversed"},
    ]}
    approve_all = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "approve", "conversion_ids": [pending, approved]})
    assert approve_all.json()["data"]["changed"] == 1
    # Each call was one op, with its postbacks (the retraction of the reversal) inside it.
    assert [[change.conversion_id for change in op.conversion_changes]
            for op in committed] == [[approved], [pending]]
    assert [[row.url.split("?")[0].rsplit("/", 1)[1] for row in op.postbacks]
            for op in committed] == [["retract"], ["buyer-changed", "source"]]
    rows = await api.query("SELECT conversion_id, to_status, source FROM conversion_changes"
                           " WHERE source = 'bulk' ORDER BY id")
    assert rows == [(approved, "reversed", "bulk"), (pending, "approved", "bulk")]


async def test_bulk_refuses_more_than_1000_ids_and_bad_actions(api: Harness) -> None:
    too_many = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "reverse", "conversion_ids": [f"conv_{i}" for i in range(1001)]})
    assert too_many.json() == error(400, "Invalid conversion_ids", invalidFields={
        "conversion_ids": "Expected `array` of length <= 1000"})
    thousand = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "reverse", "conversion_ids": [f"conv_{i}" for i in range(1000)]})
    assert thousand.status_code == 200
    wrong = await api.client.post("/api/conversions/bulk", headers=AUTH, json={
        "action": "delete", "conversion_ids": ["conv_1"]})
    assert wrong.json()["message"] == "Invalid action"


async def test_list_filters_newest_first_and_pages_with_a_cursor(api: Harness) -> None:
    ids = []
    for _ in range(3):
        ids.append((await convert(api))[1])
        api.clock.advance(86_400)
    await act(api, ids[0], "approve")

    async def page(**params: Any) -> dict[str, Any]:
        response = await api.client.get("/api/conversions", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    first = await page(limit=2)
    assert [c["conversion_id"] for c in first["conversions"]] == [ids[2], ids[1]]
    rest = await page(limit=2, cursor=first["next_cursor"])
    assert [c["conversion_id"] for c in rest["conversions"]] == [ids[0]]
    assert rest["next_cursor"] is None
    assert [c["conversion_id"] for c in (await page(status="approved"))["conversions"]] == [
        ids[0]]
    days = await page(**{"from": "2026-11-29", "to": "2026-11-29"})
    assert [c["conversion_id"] for c in days["conversions"]] == [ids[1]]
    assert (await page(cid="cmp_other"))["conversions"] == []
    # The manual's own template (docs/api.md), every filter empty: no filter at all.
    blank = await api.client.get(
        "/api/conversions?status=&cid=&pid=&from=&to=&limit=50&cursor=", headers=AUTH)
    assert blank.status_code == 200, blank.text
    assert [c["conversion_id"] for c in blank.json()["data"]["conversions"]] == ids[::-1]
    assert set(first["conversions"][0]) == {
        "conversion_id", "transaction_id", "cid", "pid", "event_id", "revenue", "payout",
        "status", "reason", "converted_at", "decided_at", "fired_at", "payout_rule"}
    bad = await api.client.get("/api/conversions?status=lost", headers=AUTH)
    assert bad.json()["message"] == "Invalid status"
    bad = await api.client.get("/api/conversions?from=yesterday", headers=AUTH)
    assert bad.json()["message"] == "Invalid from"
    for day in ("2026-02-30", "1370-66-95", "9999-12-31"):
        bad = await api.client.get(f"/api/conversions?to={day}", headers=AUTH)
        assert bad.json() == error(400, "Invalid to", invalidFields={
            "to": "Expected a date YYYY-MM-DD"}), day


async def test_read_api_nets_money_by_status(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    owed = (await api.fire(transaction_id, "sale_completed", pid=PID, revenue="80")).json()
    waiting = (await api.fire(transaction_id, "policy_bound", pid=PID, revenue="30")).json()
    view = await api.view(transaction_id)
    assert view["conversions"] == {
        "approved": {"count": 1, "revenue": "80.00", "payout": "40.00"},
        "pending": {"count": 1, "revenue": "30.00", "payout": "15.00"}}
    await act(api, owed["data"]["conversion_id"], "reverse")
    await act(api, waiting["data"]["conversion_id"], "approve")
    view = await api.view(transaction_id)
    assert view["conversions"] == {
        "approved": {"count": 1, "revenue": "30.00", "payout": "15.00"},
        "reversed": {"count": 1, "revenue": "80.00", "payout": "40.00"}}
    assert [e["status"] for e in view["events"]] == ["reversed", "approved"]


def test_manual_approval_needs_a_conversion_event() -> None:
    with pytest.raises(ConfigError, match=r"campaigns\[0\]\.events\[0\]\.approval: only a "
                                          "conversion event can wait for approval"):
        parse_config('[[campaigns]]\ncid = "c"\n[[campaigns.events]]\nevent_id = "e"\n'
                     'approval = "manual"\n', origin="t")


async def test_the_cli_reverses_the_conversions_of_a_csv(
    receiver: Receiver, tmp_path: Path
) -> None:
    db = tmp_path / "cli.db"
    config = lifecycle_config(receiver, db)
    async with running(config) as api:
        ids = [(await convert(api, "sale_completed"))[1] for _ in range(2)]
    config_file = tmp_path / "lifecycle.toml"
    config_file.write_text(
        f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[[sources]]\npid = "{PID}"\n'
        f'retraction_url = "{receiver.url}/retract?conv={{conversion_id}}&why={{reason}}"\n'
        f'[[campaigns]]\ncid = "{CID}"\n[[campaigns.events]]\nevent_id = "sale_completed"\n'
        "conversion = true\n")
    returns = tmp_path / "returns.csv"
    returns.write_text(f"date,conversion_id,note\n2026-11-30,{ids[0]},x\n"
                       f"2026-11-30,conv_missing,y\n\n2026-11-30,{ids[1]},z\n")
    result = subprocess.run(
        [str(EXECUTABLE), "conversions", "reverse", "--file", str(returns), "--reason",
         "buyer return", "--config", str(config_file), "--db", str(db)],
        capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (1, "unknown conversion ids: conv_missing\n")
    assert result.stdout == (f"{ids[0]}: changed reversed\nconv_missing: unknown\n"
                             f"{ids[1]}: changed reversed\n2 changed, 0 already, 1 unknown\n")
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT conversion_id, reason, source FROM conversion_changes"
                            " ORDER BY id").fetchall()
        retractions = conn.execute("SELECT url FROM postbacks WHERE url LIKE '%/retract%'"
                                   " ORDER BY id").fetchall()
    assert rows == [(ids[0], "buyer return", "cli"), (ids[1], "buyer return", "cli")]
    assert [url for (url,) in retractions] == [
        f"{receiver.url}/retract?conv={conversion_id}&why=buyer%20return" for conversion_id in ids]
    again = subprocess.run(
        [str(EXECUTABLE), "conversions", "reverse", "--file", str(returns), "--config",
         str(config_file), "--db", str(db)], capture_output=True, text=True, timeout=30)
    assert again.stdout.endswith("0 changed, 2 already, 1 unknown\n")


def test_a_change_and_its_postbacks_survive_a_kill_9_right_after_the_answer(
    receiver: Receiver, tmp_path: Path
) -> None:
    config_file = tmp_path / "lifecycle.toml"
    config_file.write_text(
        f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n[[sources]]\npid = "{PID}"\n'
        'postback_url = "http://127.0.0.1:9/source?conv={conversion_id}&st={status}"\n'
        f'[[campaigns]]\ncid = "{CID}"\n[[campaigns.events]]\nevent_id = "policy_bound"\n'
        'conversion = true\napproval = "manual"\n')
    db = tmp_path / "crash.db"
    server = Served(tmp_path, "--config", str(config_file), "--db", str(db))
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client:
            transaction_id = client.post("/api/click", json={"cid": CID, "pid": PID}).json()[
                "data"]["transaction_id"]
            conversion_id = client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "policy_bound", "transaction_id": transaction_id,
                "pid": PID, "revenue": "12"}).json()["data"]["conversion_id"]
            approved = client.post(f"/api/conversions/{conversion_id}/approve",
                                   json={"reason": "ok"})
            assert approved.status_code == 200
            server.signal(signal.SIGKILL)
            server.wait()
    finally:
        server.kill()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT status FROM events WHERE conversion_id = ?",
                            (conversion_id,)).fetchone() == ("approved",)
        assert conn.execute("SELECT to_status, reason FROM conversion_changes").fetchall() == [
            ("approved", "ok")]
        assert conn.execute("SELECT url, status FROM postbacks").fetchall() == [
            (f"http://127.0.0.1:9/source?conv={conversion_id}&st=approved", "pending")]


async def test_metrics_count_money_as_approved_and_claw_back_reversals(api: Harness) -> None:
    _, waiting = await convert(api, revenue="30")
    _, fired = await convert(api, "sale_completed", revenue="80")
    _, samples = await scrape(api)
    assert value(samples, "event_postback_conversions_revenue_total", cid=CID) == 80
    assert value(samples, "event_postback_payout_total", pid=PID) == 40
    assert value(samples, "event_postback_conversions", status="pending") == 1
    await act(api, waiting, "approve")
    await act(api, fired, "reverse", "returned")
    _, samples = await scrape(api)
    assert value(samples, "event_postback_conversions_revenue_total", cid=CID) == 110
    assert value(samples, "event_postback_payout_total", pid=PID) == 55
    assert value(samples, "event_postback_reversed_revenue_total", cid=CID) == 80
    assert value(samples, "event_postback_reversed_payout_total", pid=PID) == 40
    assert value(samples, "event_postback_conversions", status="approved") == 1
    assert value(samples, "event_postback_conversions", status="reversed") == 1
    assert value(samples, "event_postback_conversions", status="pending") == 0


def macros_config(receiver: Receiver, db: Path) -> Config:
    """Every money and conversion macro on the postbacks a change of status sends."""
    macros = "rev={revenue}&pay={payout}&c={conversion}&st={status}&why={reason}"
    text = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?{macros}"
retraction_url = "{receiver.url}/retract?{macros}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "policy_bound"
conversion = true
approval = "manual"

[[campaigns.postbacks]]
url = "{receiver.url}/buyer-changed?{macros}"
on = ["approved", "reversed"]
"""
    return with_server_overrides(parse_config(text, origin="macros test"), "test", db=str(db))


async def test_a_change_of_status_reports_the_conversions_money_and_an_empty_reason(
    receiver: Receiver, db_path: Path
) -> None:
    async with running(macros_config(receiver, db_path)) as api:
        _, conversion_id = await convert(api, revenue="80")
        assert (await act(api, conversion_id, "approve")).status_code == 200  # no reason
        await api.services.dispatcher.drain()
        approved = {"rev": ["80.00"], "pay": ["40.00"], "c": ["1"], "st": ["approved"],
                    "why": [""]}
        assert [sent.query for sent in receiver.of("/source")] == [approved]
        assert [sent.query for sent in receiver.of("/buyer-changed")] == [approved]

        assert (await act(api, conversion_id, "reverse", "refund")).status_code == 200
        await api.services.dispatcher.drain()
        reversed_ = approved | {"st": ["reversed"], "why": ["refund"]}
        assert [sent.query for sent in receiver.of("/retract")] == [reversed_]
        assert receiver.of("/buyer-changed")[-1].query == reversed_


def by_status_config(db: Path) -> Config:
    text = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "src_unpaid"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "form_step"
allow_duplicates = true

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
allow_duplicates = true
"""
    return with_server_overrides(parse_config(text, origin="by status"), "test", db=str(db))


async def test_money_by_status_counts_every_conversion_after_any_other_event(
    db_path: Path
) -> None:
    async with running(by_status_config(db_path)) as api:
        transaction_id = await api.click(pid=PID)
        # A plain event first: it has no status and must not end the count.
        assert (await api.fire(transaction_id, "form_step")).status_code == 200
        sales = [("0", PID), ("20", PID), ("5.5", "src_unpaid")]
        for revenue, pid in sales:
            api.clock.advance(2.5)
            response = await api.fire(transaction_id, "sale_completed", revenue=revenue,
                                      pid=pid)
            assert response.status_code == 200, response.text
        view = await api.view(transaction_id)
    # Revenue 0 pays 0; a source without a payout pays nothing.
    assert view["conversions"] == {
        "approved": {"count": 3, "revenue": "25.50", "payout": "10.00"}}
    step, *conversions = view["events"]
    assert (step["status"], step["decided_at"]) == (None, None)
    for sale in conversions:
        # Auto-approved: decided as it fired.
        assert (sale["status"], sale["decided_at"]) == ("approved", sale["fired_at"])
    assert [sale["payout"] for sale in conversions] == ["0.00", "10.00", None]
