"""``event-postback report`` on a database file, and its refusal of a served one."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from app.config.schema import parse_config, with_server_overrides
from tests.conftest import FakeClock, running
from tests.served import EXECUTABLE, Served
from tests.test_reports import CONFIG, play


def _played(db: Path) -> None:
    async def go() -> None:
        config = with_server_overrides(parse_config(CONFIG, origin="test"), "test",
                                       db=str(db))
        async with running(config, clock=FakeClock()) as harness:
            await play(harness)
    asyncio.run(go())


def _report(db: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), "report", "--db", str(db), *flags],
                          capture_output=True, text=True, timeout=30)


def test_report_prints_a_table_or_the_csv_of_the_api(tmp_path: Path) -> None:
    db = tmp_path / "reports.db"
    _played(db)
    table = _report(db, "--from", "2026-11-28", "--to", "2026-11-30", "--group-by", "cid",
                    "--cid", "cmp_a", "--cid", "cmp_b")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "cid", "clicks", "events", "conversions", "revenue", "payout", "reversals",
        "reversed_revenue", "reversed_payout", "net_revenue", "net_payout",
        "pending_conversions", "pending_revenue", "cost", "profit", "conversion_rate_pct",
        "epc", "cpc", "roi_pct", "approved_conversions", "reversed_conversions",
        "rejected_conversions"]
    assert lines[1].split() == ["cmp_a", "3", "6", "2", "145.10", "35.05", "1", "100.00",
                                "12.50", "45.10", "22.55", "0", "0.00", "9.00", "13.55",
                                "66.67", "15.0333", "3.0000", "42.95"]
    assert lines[3].split()[:3] == ["totals", "4", "10"]
    csv = _report(db, "--from", "2026-11-28", "--to", "2026-11-30", "--tz",
                  "America/New_York", "--csv")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.splitlines()[1:4] == [
        "2026-11-28,3,5,1,100.00,12.50,0,0.00,0.00,100.00,12.50,0,0.00,7.25,80.25,33.33,"
        "33.3333,2.4167,406.33,,,",
        "2026-11-29,0,2,1,45.10,22.55,1,100.00,12.50,-54.90,10.05,1,30.00,0.00,-64.95,,,,"
        "-646.27,,,",
        "2026-11-30,2,4,0,0.00,0.00,0,0.00,0.00,0.00,0.00,0,0.00,5.00,-5.00,0.00,0.0000,"
        "2.5000,-100.00,,,",
    ]


def test_report_refuses_bad_flags_and_a_served_database(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
    bad = _report(db, "--from", "2026-11-31", "--to", "2026-11-30")
    assert (bad.returncode, bad.stderr) == (2, "--from: Expected a real day, YYYY-MM-DD\n")
    server = Served(tmp_path, "--db", str(db))
    try:
        served = _report(db, "--from", "2026-11-28", "--to", "2026-11-30")
    finally:
        server.kill()
    assert served.returncode == 3
    assert served.stderr.endswith(": use GET /api/reports while it is served\n")
    assert served.stdout == ""
