"""Reports by a lead's tracking fields and by local hour of day and day of week.

Random leads with random sub-ids and UTM tags, grouped by the new keys with the old ones,
equal a recount of the stored rows one by one, in five zones (on PostgreSQL too:
tests/test_postgres_report_breakdowns.py); past ``limit`` the smallest groups fold into
one row; a bad key or a fourth one is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.schema import parse_config, with_server_overrides
from app.reports.figures import build
from app.reports.params import ReportParams
from app.reports.period import span_of
from storage.reports import TAG_KEYS
from storage.sqlite.reports import read_report_figures
from tests.conftest import BACKENDS, CID, Harness, running_on
from tests.test_report_properties import EPOCH, ZONES, events, expected_figures, leads, store
from tests.test_reports import AUTH, CONFIG, Scenario

TIME_KEYS = ["day", "hour", "hour_of_day", "day_of_week"]
KEYS = [*TIME_KEYS, "cid", "pid", "event_id", *TAG_KEYS]
# A few values per field, and often none: "" and a missing field both group as none.
tags = st.lists(st.dictionaries(
    st.sampled_from(["sub1", "sub2", "sub5", "utm_source", "utm_campaign", "utm_content"]),
    st.sampled_from(["a", "b", "Ünï", ""]), max_size=4), min_size=12, max_size=12)


def store_tagged(path: Path, lead_rows: list[Any], event_rows: list[Any],
                 lead_tags: list[dict[str, str]]) -> None:
    """The rows of tests/test_report_properties.py, each lead with its tracking fields."""
    store(path, lead_rows, event_rows)
    with closing(sqlite3.connect(path)) as conn, conn:
        for n in range(len(lead_rows)):
            fields = lead_tags[n] | {"email": f"x{n}@example.com"}
            conn.execute("UPDATE leads SET fields = ? WHERE transaction_id = ?",
                         (json.dumps(fields), f"t{n}"))


def recount(path: Path, params: ReportParams) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row read one by one, in Python, its keys from its lead's stored fields."""
    zone = ZoneInfo(params.tz)
    no_leads = "event_id" in params.group_by or bool(params.event_ids)
    sums: dict[tuple[Any, ...], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def add(text: str, keys: dict[str, Any], **figures: Decimal | int) -> None:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(zone)
        if not params.first <= moment.date() <= params.last:
            return
        hour = moment.replace(minute=0, second=0, microsecond=0)
        named = keys | {"day": moment.date().isoformat(),
                        "hour": (hour.astimezone(UTC), hour.isoformat(timespec="minutes")),
                        "hour_of_day": moment.hour, "day_of_week": moment.isoweekday()}
        tally = sums[tuple(named[key] for key in params.group_by)]
        for name, value in figures.items():
            tally[name] += value

    def wanted(cid: str, pid: str, event_id: str | None) -> bool:
        return ((not params.cids or cid in params.cids)
                and (not params.pids or pid in params.pids)
                and (not params.event_ids or event_id in params.event_ids))

    with closing(sqlite3.connect(path)) as conn:
        fields = {transaction_id: json.loads(text) for transaction_id, text
                  in conn.execute("SELECT transaction_id, fields FROM leads")}

        def tagged(transaction_id: str) -> dict[str, str]:
            return {key: fields[transaction_id].get(key) or "" for key in TAG_KEYS}

        if not no_leads:
            for transaction_id, cid, pid, cost, created in conn.execute(
                    "SELECT transaction_id, cid, pid, cost, created_at FROM leads"):
                if wanted(cid, pid, None):
                    add(created, tagged(transaction_id) | {"cid": cid, "pid": pid},
                        clicks=1, cost=Decimal(cost or 0))
        for row in conn.execute(
                "SELECT transaction_id, cid, pid, event_id, fired_at, conversion, converted_at,"
                " status, revenue, payout, conversion_id FROM events"):
            (transaction_id, cid, pid, event_id, fired, conversion, converted, status,
             revenue, payout, conversion_id) = row
            if not wanted(cid, pid, event_id):
                continue
            keys = tagged(transaction_id) | {"cid": cid, "pid": pid, "event_id": event_id}
            add(fired, keys, events=1)
            if not conversion:
                continue
            if status in ("approved", "reversed"):
                add(converted, keys, conversions=1, revenue=Decimal(revenue),
                    payout=Decimal(payout))
            elif status == "pending":
                add(converted, keys, pending_conversions=1, pending_revenue=Decimal(revenue))
            for (changed,) in conn.execute(
                    "SELECT changed_at FROM conversion_changes WHERE conversion_id = ?"
                    " AND to_status = 'reversed'", (conversion_id,)):
                add(changed, keys, reversals=1, reversed_revenue=Decimal(revenue),
                    reversed_payout=Decimal(payout))
    rows = []
    total: dict[str, Decimal] = defaultdict(Decimal)
    for key in sorted(sums):
        for name, value in sums[key].items():
            total[name] += value
        shown = {name: part[1] if isinstance(part, tuple)
                 else None if part == "" and name in TAG_KEYS else part
                 for name, part in zip(params.group_by, key, strict=True)}
        rows.append(shown | expected_figures(sums[key], no_leads))
    return rows, expected_figures(total, no_leads)


def asked(zone: str, group_by: list[str], first: int = 0, days: int = 35,
          **filters: tuple[str, ...]) -> ReportParams:
    start = EPOCH.date() + dt.timedelta(days=first)
    return ReportParams(first=start, last=start + dt.timedelta(days=days - 1), tz=zone,
                        group_by=tuple(group_by), **filters)  # type: ignore[arg-type]


# At least one tracking field or local-time key, with up to two keys of any kind.
groupings = st.tuples(
    st.sampled_from([*TAG_KEYS, "hour_of_day", "day_of_week"]),
    st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
).map(lambda pair: list(dict.fromkeys([pair[0], *pair[1]])))


@settings(derandomize=True, max_examples=80, deadline=None)
@given(lead_rows=leads, event_rows=events, lead_tags=tags, zone=st.sampled_from(ZONES),
       group_by=groupings, first=st.integers(0, 10), days=st.integers(1, 30),
       cids=st.sampled_from([(), ("c1",)]), event_ids=st.sampled_from([(), ("e2",)]))
def test_reports_by_tracking_fields_and_local_time_equal_a_recount(
    lead_rows: list[Any], event_rows: list[Any], lead_tags: list[dict[str, str]], zone: str,
    group_by: list[str], first: int, days: int, cids: tuple[str, ...],
    event_ids: tuple[str, ...],
) -> None:
    params = asked(zone, group_by, first, days, cids=cids, event_ids=event_ids)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.db"
        store_tagged(path, lead_rows, event_rows, lead_tags)
        found = build(params, read_report_figures(path, span_of(params)))
        rows, totals = recount(path, params)
    assert (found.rows, found.totals) == (rows, totals)
    assert found.truncated is False


def test_hour_of_day_and_day_of_week_are_local_to_the_zone(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    # Thursday 2026-10-01 03:30 UTC is Wednesday 23:30 in New York.
    moment = EPOCH + dt.timedelta(days=1, hours=3, minutes=30)
    store_tagged(path, [("c1", "p1", moment, None)], [(0, "p1", "e1", moment, None)],
                 [{"sub1": "s"}])
    for zone, expected in (("UTC", (4, 3)), ("America/New_York", (3, 23)),
                           ("Asia/Kolkata", (4, 9))):
        params = asked(zone, ["day_of_week", "hour_of_day", "sub1"], days=5)
        found = build(params, read_report_figures(path, span_of(params)))
        assert [(row["day_of_week"], row["hour_of_day"], row["sub1"], row["clicks"])
                for row in found.rows] == [(*expected, "s", 1)]


def _leads_by_sub1(path: Path, counts: dict[str, int]) -> None:
    """``counts[value]`` leads with that sub1, each with one event, an hour apart."""
    lead_rows, event_rows, lead_tags = [], [], []
    for value, count in counts.items():
        for _ in range(count):
            moment = EPOCH + dt.timedelta(hours=len(lead_rows))
            event_rows.append((len(lead_rows), "p1", "e1", moment, None))
            lead_rows.append(("c1", "p1", moment, Decimal("1")))
            lead_tags.append({"sub1": value} if value else {})
    store_tagged(path, lead_rows, event_rows, lead_tags)


def test_past_the_limit_the_smallest_groups_fold_into_one_other_row(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    _leads_by_sub1(path, {"a": 1, "b": 4, "c": 2, "d": 3, "": 2})
    everything = build(asked("UTC", ["sub1"]), read_report_figures(
        path, span_of(asked("UTC", ["sub1"]))))
    assert [(row["sub1"], row["clicks"]) for row in everything.rows] == [
        (None, 2), ("a", 1), ("b", 4), ("c", 2), ("d", 3)]
    assert everything.truncated is False
    bounded = msgspec_replace(asked("UTC", ["sub1"]), limit=3)
    found = build(bounded, read_report_figures(path, span_of(bounded)))
    # The two largest stay, in key order; the other three fold into the last row.
    assert [(row["sub1"], row["clicks"], row["events"], row["cost"]) for row in found.rows] == [
        ("b", 4, 4, "4.00"), ("d", 3, 3, "3.00"), ("(other)", 5, 5, "5.00")]
    assert found.truncated is True
    assert found.totals == everything.totals
    # Of the two groups of 2 clicks, the smaller key ("", shown as null) stays.
    tie = msgspec_replace(bounded, limit=4)
    assert [(row["sub1"], row["clicks"]) for row in build(
        tie, read_report_figures(path, span_of(tie))).rows] == [
        (None, 2), ("b", 4), ("d", 3), ("(other)", 3)]
    one = msgspec_replace(bounded, limit=1)
    assert [row["clicks"] for row in build(one, read_report_figures(path, span_of(one))).rows
            ] == [12]
    exact = msgspec_replace(bounded, limit=5)
    assert build(exact, read_report_figures(path, span_of(exact))).truncated is False


def msgspec_replace(params: ReportParams, **changes: Any) -> ReportParams:
    return msgspec.structs.replace(params, **changes)


@pytest.fixture
async def tagged(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Leads whose clicks carried sub-ids and a campaign tag, on SQLite or PostgreSQL."""
    config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                   db=str(tmp_path / "reports.db"))
    async with running_on(request, config) as harness:
        s = Scenario(harness)
        s.at("2026-11-28T12:00:00")
        for sub1, campaign, revenue in [("s1", "spring", 10), ("s1", None, None),
                                        ("s2", "spring", 5), (None, None, 7)]:
            tags = {name: value for name, value in (("sub1", sub1), ("utm_campaign", campaign))
                    if value is not None}
            lead = await harness.click("cmp_a", pid="src_a", **tags)
            await s.fire(lead, "cmp_a", "quote_viewed", "src_a", cost=1)
            if revenue is not None:
                await s.fire(lead, "cmp_a", "sale", "src_a", revenue=revenue)
        yield harness


@pytest.mark.parametrize("tagged", BACKENDS, indirect=True)
async def test_conversions_and_money_count_under_their_leads_tracking_values(
        tagged: Harness) -> None:
    response = await _report(tagged, group_by="sub1,utm_campaign")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(row["sub1"], row["utm_campaign"], row["clicks"], row["events"],
             row["conversions"], row["revenue"], row["cost"]) for row in data["rows"]] == [
        (None, None, 1, 2, 1, "7.00", "1.00"),
        ("s1", None, 1, 1, 0, "0.00", "1.00"),
        ("s1", "spring", 1, 2, 1, "10.00", "1.00"),
        ("s2", "spring", 1, 2, 1, "5.00", "1.00"),
    ]
    assert data["truncated"] is False
    limited = (await _report(tagged, group_by="sub1", limit="2")).json()["data"]
    assert [(row["sub1"], row["clicks"], row["revenue"]) for row in limited["rows"]] == [
        ("s1", 2, "10.00"), ("(other)", 2, "12.00")]
    assert limited["truncated"] is True
    assert limited["totals"] == data["totals"]


async def _report(api: Harness, **params: Any) -> Any:
    query = {"from": "2026-11-28", "to": "2026-11-30"} | params
    return await api.client.get("/api/reports", params=query, headers=AUTH)


async def test_bad_keys_four_keys_and_a_bad_limit_answer_400_naming_them(
        tagged: Harness) -> None:
    for query, field in (({"group_by": "sub6"}, "group_by"),
                         ({"group_by": "utm_adgroup"}, "group_by"),
                         ({"group_by": "day,cid,sub1,utm_source"}, "group_by"),
                         ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"),
                         ({"limit": "ten"}, "limit")):
        response = await _report(tagged, **query)
        assert response.status_code == 400, response.text
        body = response.json()
        assert (body["message"], list(body["invalidFields"])) == (f"Invalid {field}", [field])
    assert (await _report(tagged, group_by="day,cid,sub1")).status_code == 200


@pytest.mark.both_stores
async def test_a_field_with_a_nul_character_is_refused_and_reports_stay_readable(
    api: Harness
) -> None:
    """PostgreSQL's jsonb cannot hold a NUL and SQLite's text cuts at one: a click or an
    event with one is refused (this campaign is strict_fields; a lenient one drops the
    field), and a report by the field answers the same on both stores."""
    click = await api.client.post("/api/click", json={"cid": CID, "sub1": "a\u0000b"})
    assert (click.status_code, click.json()["invalidFields"]) == (
        400, {"sub1": "Expected text without NUL characters"})
    transaction_id = await api.click(sub1="kept")
    fired = await api.fire(transaction_id, sub1="x\u0000y", note="z\u0000")
    assert fired.json()["invalidFields"] == {
        "sub1": "Expected text without NUL characters",
        "note": "Expected text without NUL characters"}
    day = api.clock.now().date().isoformat()
    report = await api.client.get("/api/reports", headers=AUTH, params={
        "from": day, "to": day, "group_by": "sub1"})
    assert report.status_code == 200, report.text
    assert [row["sub1"] for row in report.json()["data"]["rows"]] == ["kept"]
