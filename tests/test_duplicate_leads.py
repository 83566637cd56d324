"""Duplicate leads: a lead repeating an email or phone of an earlier lead of its campaign
converts held (or rejected), naming the earlier lead; only keyed hashes are stored."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from app.config.schema import Config, ConfigError, parse_config
from app.events.dedupe import digest, normalised
from storage.postgres.store import PostgresStore
from tests.conftest import ADMIN_TOKEN, Harness, running, running_on
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HELD, REJECTING, OTHER = "cmp_held", "cmp_rejecting", "cmp_other"
PID = "src_a"
SECRET = "a-dedupe-secret-of-32-characters"
DAY = 86_400


def dedupe_config(db: Path, action: str = "pending") -> Config:
    campaigns = ""
    for cid, rule in ((HELD, f'action = "{action}"'), (REJECTING, 'action = "reject"'),
                      (OTHER, None)):
        campaigns += f'\n[[campaigns]]\ncid = "{cid}"\n'
        if rule is not None:
            campaigns += f'dedupe = {{ fields = ["email", "phone"], days = 30, {rule} }}\n'
        campaigns += ('[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n'
                      '[[campaigns.events]]\nevent_id = "form"\n')
    return parse_config(f"""
[server]
admin_token = "{ADMIN_TOKEN}"
db = "{db}"
dedupe_secret = "{SECRET}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 10 }}
{campaigns}""", origin="dedupe")


async def sale(api: Harness, cid: str, transaction_id: str, **extra: Any) -> dict[str, Any]:
    fired = await api.client.post("/api/event/trigger", json={
        "cid": cid, "event_id": "sale", "pid": PID, "revenue": "100",
        "transaction_id": transaction_id, **extra})
    assert fired.status_code == 200, fired.text
    data: dict[str, Any] = fired.json()["data"]
    return data


async def form(api: Harness, cid: str, transaction_id: str, **fields: Any) -> None:
    fired = await api.client.post("/api/event/trigger", json={
        "cid": cid, "event_id": "form", "pid": PID, "transaction_id": transaction_id,
        **fields})
    assert fired.status_code == 200, fired.text


async def conversion(api: Harness, conversion_id: str) -> dict[str, Any]:
    found = await api.client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
    assert found.status_code == 200, found.text
    data: dict[str, Any] = found.json()["data"]
    return data


async def test_a_second_lead_with_the_same_email_converts_pending_naming_the_first(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, dedupe_config(db_path)) as api:
        first = await api.click(HELD, pid=PID, email="Ann@Example.com")
        api.clock.advance(60)
        second = await api.click(HELD, pid=PID, email="  ann@EXAMPLE.COM ")
        api.clock.advance(60)
        # The same email on another campaign is no duplicate of either.
        elsewhere = await api.click(OTHER, pid=PID, email="ann@example.com")
        other = await api.click(HELD, pid=PID, email="bob@example.com")
        api.clock.advance(60)

        repeated = await sale(api, HELD, second)
        assert (repeated["status"], repeated["reason"]) == ("pending", "duplicate_lead")
        stored = await conversion(api, repeated["conversion_id"])
        assert (stored["status"], stored["reason"], stored["duplicate_of"]) == (
            "pending", "duplicate_lead", first)
        [event] = (await api.view(second))["events"]
        assert (event["reason"], event["duplicate_of"]) == ("duplicate_lead", first)

        # The earlier lead repeats no lead before it; unrelated leads are no duplicates.
        for transaction_id, cid in ((first, HELD), (other, HELD), (elsewhere, OTHER)):
            approved = await sale(api, cid, transaction_id)
            assert (approved["status"], approved["reason"]) == ("approved", None)
            assert "duplicate_of" not in await conversion(api, approved["conversion_id"])


async def test_leads_acknowledged_before_their_commit_count(db_path: Path) -> None:
    config = dedupe_config(db_path)
    write_behind = msgspec.structs.replace(config, server=msgspec.structs.replace(
        config.server, durability="write-behind", flush_ms=60_000))
    async with running(write_behind) as api:
        first = await api.click(HELD, pid=PID, email="ann@example.com")
        api.clock.advance(60)
        second = await api.click(HELD, pid=PID, email="ann@example.com")
        held = await sale(api, HELD, second)
        assert held["reason"] == "duplicate_lead"
        assert (await conversion(api, held["conversion_id"]))["duplicate_of"] == first


async def test_a_rejecting_campaign_rejects_the_duplicate_and_pays_nothing(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, dedupe_config(db_path)) as api:
        first = await api.click(REJECTING, pid=PID, email="ann@example.com")
        api.clock.advance(60)
        second = await api.click(REJECTING, pid=PID, email="ANN@example.com")
        rejected = await sale(api, REJECTING, second)
        assert (rejected["status"], rejected["reason"]) == ("rejected", "duplicate_lead")
        stored = await conversion(api, rejected["conversion_id"])
        assert (stored["status"], stored["duplicate_of"]) == ("rejected", first)


async def test_phones_are_compared_by_their_digits(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, dedupe_config(db_path)) as api:
        first = await api.click(HELD, pid=PID, phone="+1 (555) 010-2000")
        api.clock.advance(60)
        second = await api.click(HELD, pid=PID, phone="15550102000")
        other = await api.click(HELD, pid=PID, phone="+1 (555) 010-2001")
        api.clock.advance(60)
        held = await sale(api, HELD, second)
        assert (held["status"], held["reason"]) == ("pending", "duplicate_lead")
        assert (await conversion(api, held["conversion_id"]))["duplicate_of"] == first
        approved = await sale(api, HELD, other)
        assert approved["status"] == "approved"


async def test_only_leads_within_the_days_before_count(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, dedupe_config(db_path)) as api:
        oldest = await api.click(HELD, pid=PID, email="ann@example.com")
        api.clock.advance(30 * DAY - 1)
        inside = await api.click(HELD, pid=PID, email="ann@example.com")
        api.clock.advance(2)
        # Now the oldest is 30 days and a second back: the earliest inside is the next.
        later = await api.click(HELD, pid=PID, email="ann@example.com")
        first_of_bob = await api.click(HELD, pid=PID, email="bob@example.com")
        api.clock.advance(30 * DAY + 1)
        bob_again = await api.click(HELD, pid=PID, email="bob@example.com")

        for transaction_id, repeats in ((inside, oldest), (later, inside)):
            held = await sale(api, HELD, transaction_id)
            assert held["reason"] == "duplicate_lead"
            assert (await conversion(api, held["conversion_id"]))["duplicate_of"] == repeats
        # Converting long after its click changes nothing: the window counts from clicks.
        for transaction_id in (bob_again, first_of_bob):
            approved = await sale(api, HELD, transaction_id)
            assert (approved["status"], approved["reason"]) == ("approved", None)


async def test_a_lead_field_sent_later_by_an_event_counts(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    async with running_on(backend, dedupe_config(db_path)) as api:
        # The first lead's email arrives with an event, after a second lead's click...
        first = await api.click(HELD, pid=PID)
        api.clock.advance(60)
        second = await api.click(HELD, pid=PID, email="ann@example.com")
        api.clock.advance(60)
        await form(api, HELD, first, email="Ann@example.com")
        # ... and the third lead's with a form, the fourth's with the conversion itself.
        third = await api.click(HELD, pid=PID)
        fourth = await api.click(HELD, pid=PID)
        await form(api, HELD, third, email="ann@example.com")
        api.clock.advance(60)

        # Counted from the first lead's click, not from when its email came.
        for transaction_id, extra in ((second, {}), (third, {}),
                                      (fourth, {"email": "ann@example.com"})):
            held = await sale(api, HELD, transaction_id, **extra)
            assert held["reason"] == "duplicate_lead", transaction_id
            assert (await conversion(api, held["conversion_id"]))["duplicate_of"] == first
        assert (await sale(api, HELD, first))["status"] == "approved"


async def test_the_database_keeps_only_keyed_hashes_of_the_values(
        backend: pytest.FixtureRequest, db_path: Path) -> None:
    email, phone = "  Ann.Lee@Example.COM ", "+1 (555) 010-2000"
    async with running_on(backend, dedupe_config(db_path)) as api:
        transaction_id = await api.click(HELD, pid=PID, email=email, phone=phone)
        await form(api, HELD, transaction_id, email="second@example.com")
        keys = await api.query("SELECT cid, digest, created_at, transaction_id"
                               " FROM lead_keys ORDER BY digest")
        dump = await database_text(api)
    expected = sorted(digest(SECRET, HELD, field, value) for field, value in (
        ("email", "ann.lee@example.com"), ("phone", "15550102000"),
        ("email", "second@example.com")))
    assert [row[1] for row in keys] == expected
    assert {(row[0], row[2], row[3]) for row in keys} == {
        (HELD, "2026-11-28T12:00:00.000000Z", transaction_id)}
    assert phone in dump and "second@example.com" in dump  # the lead's fields, as sent
    # The normalised values appear nowhere, nor any unkeyed hash of them; the lead's own
    # fields keep what was sent, as the postbacks need it.
    for value in ("ann.lee@example.com", "15550102000"):
        assert value not in dump
        assert hashlib.sha256(value.encode()).hexdigest() not in dump
    keys_text = " ".join(map(str, keys))
    for value in (email.strip(), "second@example.com"):
        assert value not in keys_text


async def database_text(api: Harness) -> str:
    """Every row of every table, as text."""
    store = api.services.store
    await store.flush()
    if isinstance(store, PostgresStore):
        conn = await asyncpg.connect(store.url)
        try:
            tables = [row[0] for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            rows = [row[0] for table in tables
                    for row in await conn.fetch(f'SELECT t::text FROM "{table}" AS t')]
            assert rows
            return "\n".join(rows)
        finally:
            await conn.close()
    with closing(sqlite3.connect(str(store.location))) as conn:
        return "\n".join(conn.iterdump())


def test_values_are_normalised_before_they_are_hashed() -> None:
    assert normalised("email", "  Ann@Example.COM\t") == "ann@example.com"
    assert normalised("phone", "+1 (555) 010-2000") == "15550102000"
    assert normalised("phone", 15550102000) == "15550102000"
    assert normalised("city", " New York ") == "new york"
    for empty in ("   ", None, {"a": 1}, True):
        assert normalised("email", empty) is None
    assert normalised("phone", "n/a") is None
    # The campaign and the field are part of the hash.
    assert len({digest(SECRET, HELD, "email", "a"), digest(SECRET, OTHER, "email", "a"),
                digest(SECRET, HELD, "city", "a"), digest(SECRET * 2, HELD, "email", "a")}) == 4


def test_dedupe_needs_a_dedupe_secret() -> None:
    text = ('[[campaigns]]\ncid = "cmp_x"\n'
            'dedupe = { fields = ["email"] }\n'
            '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n')
    with pytest.raises(ConfigError, match=re.escape(
            "campaigns[0].dedupe: needs [server] dedupe_secret: the key of the hashes kept of "
            "lead field values")):
        parse_config(text, origin="f")
    with pytest.raises(ConfigError, match=re.escape("server.dedupe_secret: at least 16")):
        parse_config('[server]\ndedupe_secret = "short"\n' + text, origin="f")
    parse_config(f'[server]\ndedupe_secret = "{SECRET}"\n' + text, origin="f")


async def test_a_reload_turns_the_rule_on_then_to_reject(tmp_path: Path, db: str) -> None:
    base = (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\nSECRET\n'
            f'[[sources]]\npid = "{PID}"\n'
            f'[[campaigns]]\ncid = "{HELD}"\nDEDUPE\n'
            '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n')

    def with_dedupe(action: str) -> str:
        return base.replace("SECRET", f'dedupe_secret = "{SECRET}"').replace(
            "DEDUPE", f'dedupe = {{ fields = ["email"], action = "{action}" }}')

    async with serving_on(tmp_path, base.replace("SECRET", "").replace("DEDUPE", ""),
                          db) as (client, path):
        async def sale_of_a_new_lead() -> dict[str, Any]:
            click = await client.post("/api/click", json={
                "cid": HELD, "pid": PID, "email": "ann@example.com"})
            fired = await client.post("/api/event/trigger", json={
                "cid": HELD, "event_id": "sale", "pid": PID, "revenue": "10",
                "transaction_id": click.json()["data"]["transaction_id"]})
            data: dict[str, Any] = fired.json()["data"]
            return data

        assert (await sale_of_a_new_lead())["status"] == "approved"
        path.write_text(with_dedupe("pending"))
        assert (await reload(client)).status_code == 200
        # Leads clicked before the campaign had dedupe kept no keys.
        assert (await sale_of_a_new_lead())["status"] == "approved"
        assert (await sale_of_a_new_lead())["status"] == "pending"
        path.write_text(with_dedupe("reject"))
        assert (await reload(client)).status_code == 200
        rejected = await sale_of_a_new_lead()
        assert (rejected["status"], rejected["reason"]) == ("rejected", "duplicate_lead")
