"""make bench: event-postback against a bare Starlette endpoint, measured in one run.

Scenarios (closed loop with wrk, 64 connections, after a warm-up, unless said otherwise):

  A  the baseline: loadtests/baseline_app.py, same uvicorn settings, same body
  B  event-postback, durability "commit", leads minted over HTTP before the run (hot)
     B@1000/s, B@2000/s  open loop at a fixed rate; latency from each scheduled send
     B@256c  past saturation: 256 connections
  C  event-postback, durability "write-behind"
  S, SR  commit mode, every event a conversion with revenue (a repeatable sale on leads
     minted with an email, no lock window): S without money rules, SR with two caps (a
     day count and a month revenue, never reached) and duplicate leads by email
  P1, P2  event-postback on PostgreSQL (a throwaway local cluster of Debian's postgresql,
     default durable settings), with 1 and 2 workers; hot leads as in B. Left out, saying
     why, when there is no PostgreSQL (make postgres installs it)
  D  event-postback, commit, on a database pre-filled with 1,000,000 events; every event
     is for a transaction not in memory (each request loads one)
  E  memory: events for 1,000,000 distinct transactions in all; peak RSS at the end
  R  GET /api/reports by day and cid over 31 days of D's 1,000,000 leads and events,
     one request at a time (--only-report runs just R, R-sub1 and RE)
  R-sub1 the same month by sub1 (50 values over the leads): counted from the rows
  R-sub1r the same from roll-ups: the server restarted on that database with
          [reports] breakdowns = ["sub1"] (start-up counts the field from the rows once)
  RE events at the first open-loop rate on the same server, alone and then while 20
     clients ask for that report without pause: the event p99 with them beside it

Then the per-request budget (loadtests/budget.py), in each durability mode: where an
event's microseconds go inside the service, beside the bare endpoint's time per request.

Prints one table and writes it as JSON under loadtests/results/.

    python loadtests/bench.py [--duration 10] [--quick] [--only-report]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loadtests import budget  # noqa: E402
from loadtests.cpu import CpuSplit  # noqa: E402
from loadtests.rawhttp import Results, closed_loop, open_loop, post_request  # noqa: E402
from loadtests.servers import Server, free_port  # noqa: E402
from storage.sqlite.connection import prepare  # noqa: E402
from storage.sqlite.rollups import recount  # noqa: E402
from tests.pg_cluster import Cluster, ClusterUnavailable  # noqa: E402

CID, PID = "cmp_bench", "src_bench"
EVENTS = [f"ev{n}" for n in range(10)]
CONFIG = f"""
[server]
admin_token = "bench"

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"
""" + "".join(f'\n[[campaigns.events]]\nevent_id = "{event}"\n' for event in EVENTS) + """
[[campaigns.events]]
event_id = "sale"
conversion = true
allow_duplicates = true
"""
# S: the same, without the lock window, so that a lead's sales may follow each other within
# two seconds (a run sends more sales than there are leads).
SALES_CONFIG = CONFIG.replace('admin_token = "bench"\n',
                              'admin_token = "bench"\nlock_seconds = 0\n')
# SR: S with money rules: two caps no run reaches, and duplicate leads by email (each
# minted lead has its own).
RULES_CONFIG = SALES_CONFIG.replace(
    'admin_token = "bench"\n',
    'admin_token = "bench"\ndedupe_secret = "bench-dedupe-secret-0123456789"\n').replace(
    f'cid = "{CID}"\n', f'cid = "{CID}"\ndedupe = {{ fields = ["email"], days = 30 }}\n') + """
[[campaigns.caps]]
metric = "conversions"
period = "day"
limit = 1000000000

[[campaigns.caps]]
metric = "revenue"
period = "month"
limit = 1000000000000
"""

# The lean-hot-path targets: throughput as a share of the bare endpoint A.
TARGETS = {"B": 0.40, "C": 0.55, "D": 0.35}
# Shown as a share of A too, without a target of their own.
RATIOS = {*TARGETS, "P1", "P2", "S", "SR"}
REPORT_TARGET_MS = 300
REPORT_QUERY = {"from": "2026-01-01", "to": "2026-01-31", "group_by": "day,cid"}
# The same month by a lead's tracking field: counted from the rows, each joined to its lead.
SUB1_QUERY = REPORT_QUERY | {"group_by": "sub1"}
SUB1_VALUES = 50
# R-sub1r: the bench config with roll-ups kept by sub1.
BREAKDOWN_CONFIG = CONFIG + '\n[reports]\nbreakdowns = ["sub1"]\n'


@dataclass
class Settings:
    duration: int
    warmup: int
    connections: int
    mint: int
    cold_leads: int
    memory_events: int
    rates: tuple[int, ...]
    out: Path
    reports: int = 20
    budget_events: int = 20_000
    # Clients asking for reports over and over while RE fires events.
    reporters: int = 20


@contextmanager
def serving(command: list[str], port: int, log: Path, ready_within: float = 60) -> Any:
    server = Server(command, port, log, ready_within)
    try:
        yield server
    finally:
        server.stop()


def service_command(config: Path, db: Path | str, port: int, durability: str,
                    workers: int = 1) -> list[str]:
    executable = Path(sys.executable).with_name("event-postback")
    return [str(executable), "serve", "--config", str(config), "--db", str(db),
            "--port", str(port), "--durability", durability, "--log-level", "info",
            "--workers", str(workers)]


def postgres_rows(settings: Settings, work: Path, config: Path,
                  report: dict[str, Any]) -> None:
    """P1 and P2: the hot path of B on PostgreSQL, with one and with two workers."""
    try:
        cluster = Cluster(fast=False)
    except ClusterUnavailable as exc:
        print(f"P1, P2 left out: {exc}", flush=True)
        return
    url = cluster.start()
    try:
        for name, workers in (("P1", 1), ("P2", 2)):
            database = f"bench_{name.lower()}"
            subprocess.run(["psql", url, "-qc", f"CREATE DATABASE {database}"], check=True)
            port = free_port()
            command = service_command(config, f"{url.rpartition('/')[0]}/{database}", port,
                                      "commit", workers)
            with serving(command, port, work / f"{name}.log") as server:
                ids = uvloop.run(mint(server.url, settings.mint // 2))
                parts = _split(ids, 2)
                warm_up(server.url, write_ids(work / f"{name}-w.txt", parts[0]), "rotate",
                        settings.connections, settings.warmup)
                postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
                # Where the cores went: whether a second worker had any to use.
                with CpuSplit({"service": server.process.pid,
                               "postgres": postmaster}) as split:
                    report[name] = wrk(server.url, write_ids(work / f"{name}.txt", parts[1]),
                                       "rotate", settings.connections, settings.duration)
                report[name]["rss_mb"] = server.peak_rss_mb()
                report[name]["cpu_busy"] = split.busy / split.capacity
                report[name]["cpu_us_per_event"] = split.per_event_us(report[name]["requests"])
                # Of whichever worker answers the scrape: each process batches its own.
                report[name]["mean_batch"] = mean_batch(server.url)
            print_row(name, report[name], report, flush=True)
            print(f"{'':10s} {cpu_line(report[name])}", flush=True)
    finally:
        cluster.stop()


def warm_up(url: str, ids: Path, mode: str, connections: int, seconds: int) -> None:
    """An untimed wrk run first (none when ``seconds`` is 0: the smoke run's)."""
    if seconds > 0:
        wrk(url, ids, mode, connections, seconds)


def wrk(url: str, ids: Path, mode: str, connections: int, seconds: int) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
               "-s", str(HERE / "events.lua"), url, "--", str(ids), mode]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    summary: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    seconds_run = summary["duration_us"] / 1e6
    summary["rps"] = summary["requests"] / seconds_run
    summary["errors"] = (summary["status"] + summary["connect"] + summary["read"]
                         + summary["write"] + summary["timeout"])
    return summary


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


async def mint(url: str, count: int, *, emails: bool = False) -> list[str]:
    """Leads minted through POST /api/click, so their actors are in memory; with
    ``emails``, each with an email of its own."""
    host = url.removeprefix("http://")

    def body(n: int) -> bytes:
        fields = {"cid": CID, "pid": PID}
        if emails:
            fields["email"] = f"lead{n}@example.com"
        return json.dumps(fields).encode()

    results = await closed_loop(url, (post_request(host, "/api/click", body(n))
                                      for n in range(count)), keep_bodies=True)
    if set(results.statuses) != {200}:
        raise RuntimeError(f"minting leads failed: {results.statuses}")
    return [json.loads(body)["data"]["transaction_id"] for body in results.bodies]


def prefill(db: Path, leads: int) -> list[str]:
    """A database with ``leads`` leads and one event each, written directly.

    Their times are spread over the 744 hours of January 2026, for the report row.
    """
    prepare(db)
    ids = [f"txn_cold_{n:08d}" for n in range(leads)]

    def stamp(n: int) -> str:
        return f"2026-01-{n % 31 + 1:02d}T{n // 31 % 24:02d}:{n % 60:02d}:00.000000Z"

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO leads (transaction_id, cid, pid, fields, cost, ip, user_agent,"
            " created_at) VALUES (?, ?, ?, ?, NULL, '127.0.0.1', 'bench', ?)",
            ((txn, CID, PID, f'{{"sub1": "s{n % SUB1_VALUES}"}}', stamp(n))
             for n, txn in enumerate(ids)))
        conn.executemany(
            "INSERT INTO events (transaction_id, cid, event_id, pid, once, conversion,"
            " conversion_id, revenue, payout, converted_at, fields, ip, user_agent, fired_at)"
            " VALUES (?, ?, 'ev0', ?, 1, 0, NULL, NULL, NULL, NULL, '{}', '127.0.0.1',"
            " 'bench', ?)",
            ((txn, CID, PID, stamp(n)) for n, txn in enumerate(ids)))
        # Rows written around the writer: their roll-ups are summed here, as a migration does.
        recount(conn)
    return ids


def cold_template(settings: Settings) -> tuple[Path, list[str]]:
    """The pre-filled database, built once and kept under results/ for later runs."""
    template = settings.out / f"cold-v4-{settings.cold_leads}.db"
    ids = [f"txn_cold_{n:08d}" for n in range(settings.cold_leads)]
    if not template.exists():
        partial = template.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        print(f"pre-filling {settings.cold_leads:,} leads and events ...", flush=True)
        prefill(partial, settings.cold_leads)
        partial.rename(template)
    return template, ids


def report_run(url: str, requests: int,
               query: dict[str, str] = REPORT_QUERY) -> dict[str, Any]:
    """Reports one at a time after two warm-up ones; latency of each whole answer."""
    times: list[float] = []
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": "Bearer bench"}) as client:
        for index in range(requests + 2):
            started = time.perf_counter()
            response = client.get("/api/reports", params=query)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"report failed: {response.text[:300]}")
            if index >= 2:
                times.append(elapsed)
    totals = response.json()["data"]["totals"]
    times.sort()

    def at(share: float) -> float:
        return times[min(len(times) - 1, int(share * len(times)))] * 1e6

    return {"rps": len(times) / sum(times), "requests": len(times), "errors": 0,
            "p50": at(0.5), "p99": at(0.99), "p999": at(0.999),
            "clicks": totals["clicks"], "events": totals["events"]}


def events_beside_reports(url: str, ids: list[str], rate: int, seconds: int,
                          reporters: int) -> dict[str, Any]:
    """Events at ``rate`` alone, then again while ``reporters`` clients ask for month
    reports without pause: how much the reports cost the event path.

    The report clients run in a process of their own, so they do not share the load
    generator's interpreter and skew its timing.
    """
    half = len(ids) // 2
    alone = open_loop_run(url, ids[:half], rate, seconds)
    clients = subprocess.Popen(
        [sys.executable, __file__, "--report-clients", url, str(reporters),
         str(seconds + 2)], stdout=subprocess.PIPE, text=True)
    time.sleep(1)  # the clients are asking before the events start
    try:
        beside = open_loop_run(url, ids[half:], rate, seconds)
    finally:
        out, _ = clients.communicate(timeout=seconds + 60)
    statuses = {int(status): count for status, count in json.loads(out).items()}
    return {**beside, "p99_alone": alone["p99"], "reporters": reporters,
            "reports": statuses}


def report_clients(url: str, count: int, seconds: float) -> dict[int, int]:
    """``count`` clients asking for REPORT_QUERY for ``seconds``, each waiting as a 503's
    Retry-After says; how many answers of each status."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def ask() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": "Bearer bench"}) as client:
            while time.monotonic() < until:
                response = client.get("/api/reports", params=REPORT_QUERY)
                with lock:
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def events_beside(url: str, settings: Settings) -> dict[str, Any]:
    """The RE row: fresh leads, then events_beside_reports at the first open-loop rate."""
    rate, seconds = settings.rates[0], settings.duration
    fresh = uvloop.run(mint(url, rate * seconds // 5 + 1))
    return events_beside_reports(url, fresh, rate, seconds, settings.reporters)


def report_only(settings: Settings) -> dict[str, Any]:
    """Just the report row, on a copy of the pre-filled database."""
    work = Path(tempfile.mkdtemp(prefix="event-postback-bench-"))
    config = work / "bench.toml"
    config.write_text(CONFIG)
    try:
        template, _ = cold_template(settings)
        db = work / "R.db"
        shutil.copyfile(template, db)
        port = free_port()
        with serving(service_command(config, db, port, "commit"), port,
                     work / "R.log") as server:
            row = report_run(server.url, settings.reports)
            row["rss_mb"] = server.peak_rss_mb()
            print_row("R", row, {}, flush=True)
            by_sub1 = report_run(server.url, max(1, settings.reports // 4), SUB1_QUERY)
            by_sub1["rss_mb"] = server.peak_rss_mb()
            print_row("R-sub1", by_sub1, {}, flush=True)
            beside = events_beside(server.url, settings)
            beside["rss_mb"] = server.peak_rss_mb()
        print_row("RE", beside, {}, flush=True)
        by_rollups = sub1_from_rollups(settings, work, db)
        print_row("R-sub1r", by_rollups, {}, flush=True)
        return {"R": row, "R-sub1": by_sub1, "RE": beside, "R-sub1r": by_rollups}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sub1_from_rollups(settings: Settings, work: Path, db: Path) -> dict[str, Any]:
    """R-sub1 again after a restart with roll-ups kept by sub1; ``startup_s`` is how long
    the server took to answer, counting the field from every stored row once."""
    config = work / "breakdowns.toml"
    config.write_text(BREAKDOWN_CONFIG)
    port = free_port()
    started = time.perf_counter()
    # Start-up counts the field over every stored row before it listens.
    with serving(service_command(config, db, port, "commit"), port,
                 work / "R-sub1r.log", ready_within=900) as server:
        startup = time.perf_counter() - started
        row = report_run(server.url, settings.reports, SUB1_QUERY)
        row["rss_mb"] = server.peak_rss_mb()
        row["startup_s"] = round(startup, 2)
    return row


def open_loop_run(url: str, ids: list[str], rate: int, seconds: int) -> dict[str, Any]:
    host = url.removeprefix("http://")
    count = rate * seconds
    requests = [post_request(host, "/api/event/trigger", json.dumps({
        "cid": CID, "event_id": EVENTS[(index // len(ids)) % 10],
        "transaction_id": ids[index % len(ids)], "pid": PID}).encode())
        for index in range(count)]
    results: Results = uvloop.run(open_loop(url, requests, rate=rate))
    bad = sum(n for status, n in results.statuses.items() if status != 200) + results.errors
    return {"rate": rate, "rps": len(results.latencies) / seconds,
            "requests": len(results.latencies), "errors": bad,
            "p50": results.percentile(50) * 1e6, "p99": results.percentile(99) * 1e6,
            "p999": results.percentile(99.9) * 1e6, "statuses": results.statuses}


def money_rule_rows(settings: Settings, work: Path, report: dict[str, Any]) -> None:
    """S and SR: conversions with revenue in commit mode, without and with money rules."""
    for name, text in (("S", SALES_CONFIG), ("SR", RULES_CONFIG)):
        config = work / f"{name}.toml"
        config.write_text(text)
        port = free_port()
        with serving(service_command(config, work / f"{name}.db", port, "commit"), port,
                     work / f"{name}.log") as server:
            ids = uvloop.run(mint(server.url, settings.mint, emails=True))
            warm, timed = _split(ids, 2)
            warm_up(server.url, write_ids(work / f"{name}-w.txt", warm), "sale",
                    settings.connections, settings.warmup)
            report[name] = wrk(server.url, write_ids(work / f"{name}.txt", timed), "sale",
                               settings.connections, settings.duration)
            report[name]["rss_mb"] = server.peak_rss_mb()
        print_row(name, report[name], report, flush=True)


def run(settings: Settings) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="event-postback-bench-"))
    config = work / "bench.toml"
    config.write_text(CONFIG)
    report: dict[str, Any] = {}
    seconds, warmup, conns = settings.duration, settings.warmup, settings.connections
    try:
        baseline_row(settings, work, report)

        for name, durability in (("B", "commit"), ("C", "write-behind")):
            port = free_port()
            with serving(service_command(config, work / f"{name}.db", port, durability), port,
                         work / f"{name}.log") as server:
                ids = uvloop.run(mint(server.url, settings.mint))
                parts = _split(ids, 5)
                warm_up(server.url, write_ids(work / f"{name}-w.txt", parts[0]), "rotate",
                        conns, warmup)
                report[name] = wrk(server.url, write_ids(work / f"{name}.txt", parts[1]),
                                   "rotate", conns, seconds)
                if name == "B":
                    for index, rate in enumerate(settings.rates):
                        report[f"B@{rate}/s"] = open_loop_run(server.url, parts[2 + index],
                                                              rate, seconds)
                    report["B@256c"] = wrk(server.url, write_ids(work / "B-sat.txt", parts[4]),
                                           "rotate", 256, seconds)
                report[name]["rss_mb"] = server.peak_rss_mb()
            print_row(name, report[name], report, flush=True)

        money_rule_rows(settings, work, report)
        postgres_rows(settings, work, config, report)

        # D and E: the cold path, on a pre-filled database.
        template, cold_ids = cold_template(settings)
        db = work / "D.db"
        shutil.copyfile(template, db)
        port = free_port()
        with serving(service_command(config, db, port, "commit"), port,
                     work / "D.log") as server:
            warm_ids, rest = cold_ids[:20_000], cold_ids[20_000:]
            warm_up(server.url, write_ids(work / "D-w.txt", warm_ids), "cold", conns, warmup)
            report["D"] = wrk(server.url, write_ids(work / "D.txt", rest), "cold", conns, seconds)
            report["D"]["rss_mb"] = server.peak_rss_mb()
            print_row("D", report["D"], report, flush=True)
            # wrk counts answered requests; the ones in flight when it stopped were sent too,
            # and a resend would (rightly) be answered 400 duplicate.
            skip = report["D"]["requests"] + 4 * conns
            done = 20_000 + skip
            remaining = rest[skip:settings.memory_events - 20_000]
            started = time.perf_counter()
            host = server.url.removeprefix("http://")
            results = uvloop.run(closed_loop(server.url, (
                post_request(host, "/api/event/trigger", json.dumps({
                    "cid": CID, "event_id": "ev1", "transaction_id": txn, "pid": PID,
                }).encode()) for txn in remaining)))
            elapsed = time.perf_counter() - started
            report["E"] = {
                "transactions": done + len(remaining),
                "requests": len(remaining),
                "rps": len(remaining) / elapsed if elapsed else 0.0,
                "errors": sum(n for status, n in results.statuses.items() if status != 200),
                "statuses": results.statuses,
                "rss_mb": server.peak_rss_mb(),
            }
            # After E: a report over a million rows raises the peak RSS by about 110 MB
            # (SQLite's in-memory sorting), which E must not be charged with.
            report["R"] = report_run(server.url, settings.reports)
            report["R"]["rss_mb"] = server.peak_rss_mb()
            report["R-sub1"] = report_run(server.url, max(1, settings.reports // 4), SUB1_QUERY)
            report["R-sub1"]["rss_mb"] = server.peak_rss_mb()
            report["RE"] = events_beside(server.url, settings)
            report["RE"]["rss_mb"] = server.peak_rss_mb()
        print_row("E", report["E"], report, flush=True)
        print_row("R", report["R"], report, flush=True)
        print_row("R-sub1", report["R-sub1"], report, flush=True)
        print_row("RE", report["RE"], report, flush=True)
        report["R-sub1r"] = sub1_from_rollups(settings, work, db)
        print_row("R-sub1r", report["R-sub1r"], report, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def budget_run(events: int) -> dict[str, Any]:
    """The per-request budget of each mode, each measured in a process of its own."""
    found = {}
    for durability in ("write-behind", "commit"):
        result = subprocess.run(
            [sys.executable, str(HERE / "budget.py"), "--events", str(events),
             "--durability", durability, "--json"],
            capture_output=True, text=True, check=True)
        found[durability] = json.loads(result.stdout)
    return found


def budget_lines(report: dict[str, Any]) -> list[str]:
    baseline = report.get("A", {}).get("rps")
    return [budget.line(measured, 1e6 / baseline if baseline else None)
            for measured in report["_budget"].values()]


def baseline_row(settings: Settings, work: Path, report: dict[str, Any]) -> None:
    """A: the bare endpoint."""
    port = free_port()
    fake = write_ids(work / "fake.txt", [f"txn_{n}" for n in range(50_000)])
    with serving([sys.executable, str(HERE / "baseline_app.py"), str(port)], port,
                 work / "a.log") as server:
        warm_up(server.url, fake, "rotate", settings.connections, settings.warmup)
        report["A"] = wrk(server.url, fake, "rotate", settings.connections, settings.duration)
        report["A"]["rss_mb"] = server.peak_rss_mb()
    print_row("A", report["A"], report, flush=True)


def postgres_only(settings: Settings) -> dict[str, Any]:
    """A, then P1 and P2."""
    work = Path(tempfile.mkdtemp(prefix="event-postback-bench-"))
    config = work / "bench.toml"
    config.write_text(CONFIG)
    report: dict[str, Any] = {}
    try:
        baseline_row(settings, work, report)
        postgres_rows(settings, work, config, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _split(items: list[str], parts: int) -> list[list[str]]:
    size = len(items) // parts
    return [items[i * size:(i + 1) * size] for i in range(parts)]


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f}"


def print_row(name: str, row: dict[str, Any], report: dict[str, Any], flush: bool = False) -> None:
    baseline = report.get("A", {}).get("rps")
    ratio = f"{row['rps'] / baseline * 100:.0f} %" if baseline and name in RATIOS else ""
    print(f"{name:10s} {row.get('rps', 0):10,.0f} {_ms(row.get('p50', float('nan'))):>8s} "
          f"{_ms(row.get('p99', float('nan'))):>8s} {row.get('errors', 0):>7} "
          f"{row.get('rss_mb', float('nan')):8.0f} {ratio:>7s}", flush=flush)


def cpu_line(row: dict[str, Any]) -> str:
    parts = ", ".join(f"{name} {us:.0f}" for name, us in row["cpu_us_per_event"].items())
    return (f"cores {row['cpu_busy']:.0%} busy; CPU us per event: {parts};"
            f" mean commit batch {row['mean_batch']:.1f} writes")


def mean_batch(url: str) -> float:
    """Writes per committed transaction, from the service's own histogram."""
    found = {}
    scrape = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer bench"}, timeout=10)
    scrape.raise_for_status()
    for line in scrape.text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("event_postback_commit_batch_size_sum",
                    "event_postback_commit_batch_size_count"):
            found[name] = float(value)
    count = found.get("event_postback_commit_batch_size_count", 0.0)
    return found.get("event_postback_commit_batch_size_sum", 0.0) / count if count else 0.0


def table(report: dict[str, Any]) -> str:
    baseline = report.get("A", {}).get("rps")
    lines = ["| scenario | requests/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MB "
             "| ratio to A |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in report.items():
        if name.startswith("_"):
            continue
        cells = [
            name, f"{row['rps']:,.0f}",
            _ms(row["p50"]) if "p50" in row else "",
            _ms(row["p99"]) if "p99" in row else "",
            _ms(row["p999"]) if "p999" in row else "",
            str(row.get("errors", 0)),
            f"{row['rss_mb']:.0f}" if "rss_mb" in row else "",
            f"{row['rps'] / baseline * 100:.0f} %" if name in RATIOS and baseline else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(report: dict[str, Any]) -> list[str]:
    found = []
    if "R" in report:
        row = report["R"]
        found.append(f"R report p50 <= {REPORT_TARGET_MS} ms over {row['events']:,} events: "
                     f"{'met' if row['p50'] <= REPORT_TARGET_MS * 1000 else 'MISSED'}"
                     f" (p50 {_ms(row['p50'])} ms, p99 {_ms(row['p99'])} ms)")
    if "RE" in report:
        row = report["RE"]
        ok = row["p99"] <= 2 * row["p99_alone"] and row["errors"] == 0
        answered = row["reports"].get(200, 0)
        found.append(f"RE event p99 with {row['reporters']} report clients <= 2x without: "
                     f"{'met' if ok else 'MISSED'} (p99 {_ms(row['p99'])} ms against "
                     f"{_ms(row['p99_alone'])} ms; {answered} reports answered, "
                     f"{row['reports'].get(503, 0)} told to retry)")
    if "A" not in report:
        return found
    baseline = report["A"]["rps"]
    for name, share in TARGETS.items():
        if name not in report:  # --only-postgres
            continue
        ratio = report[name]["rps"] / baseline
        found.append(f"{name} >= {share:.0%} of A: {'met' if ratio >= share else 'MISSED'}"
                     f" ({ratio:.0%})")
    top = max((key for key in report if key.startswith("B@") and key.endswith("/s")),
              key=lambda key: report[key]["rate"], default=None)
    if top is not None:
        row = report[top]
        ok = row["p99"] <= 5_000 and row["errors"] == 0
        found.append(f"{top} p99 <= 5 ms, no errors: {'met' if ok else 'MISSED'}"
                     f" (p99 {_ms(row['p99'])} ms, {row['errors']} errors)")
    if "B@256c" in report:
        row = report["B@256c"]
        refused_fast = row["timeout"] == 0 and (row["p99"] <= 50_000)
        found.append(f"B@256c p99 <= 50 ms, no timeouts: "
                     f"{'met' if refused_fast else 'MISSED'} (p99 {_ms(row['p99'])} ms, "
                     f"{row['timeout']} timeouts)")
    if "P1" in report and "P2" in report:
        gain = report["P2"]["rps"] / report["P1"]["rps"]
        found.append(f"P2 >= 1.5x P1: {'met' if gain >= 1.5 else 'MISSED'} ({gain:.2f}x)")
        for name in ("P1", "P2"):
            if "cpu_busy" in report[name]:
                found.append(f"  {name}: {cpu_line(report[name])}")
    if "E" in report:
        row = report["E"]
        found.append(f"E peak RSS < 200 MB after {row['transactions']:,} transactions: "
                     f"{'met' if row['rss_mb'] < 200 else 'MISSED'} ({row['rss_mb']:.0f} MB)")
    return found


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds and small counts: proves the scripts run")
    parser.add_argument("--only-report", action="store_true",
                        help="only the report rows R and RE (on the pre-filled database)")
    parser.add_argument("--only-postgres", action="store_true",
                        help="only A and the PostgreSQL rows P1 and P2")
    parser.add_argument("--report-clients", nargs=3, metavar=("URL", "COUNT", "SECONDS"),
                        help=argparse.SUPPRESS)  # the RE row's report clients, in a process
    args = parser.parse_args()
    if args.report_clients:
        url, count, seconds = args.report_clients
        print(json.dumps(report_clients(url, int(count), float(seconds))))
        return 0
    if shutil.which("wrk") is None:
        sys.stderr.write("wrk is not installed (make bench installs Debian's wrk)\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        settings = Settings(duration=1, warmup=0, connections=8, mint=3_000,
                            cold_leads=30_000, memory_events=30_000, rates=(100, 200),
                            out=args.out, reports=3, budget_events=1_000, reporters=3)
    else:
        settings = Settings(duration=args.duration, warmup=args.warmup,
                            connections=args.connections, mint=100_000,
                            cold_leads=max(1_000_000, args.memory_events),
                            memory_events=args.memory_events, rates=(1000, 2000),
                            out=args.out)
    print(f"{'scenario':10s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s} "
          f"{'RSS MB':>8s} {'vs A':>7s}", flush=True)
    if args.only_report:
        report = report_only(settings)
    elif args.only_postgres:
        report = postgres_only(settings)
    else:
        report = run(settings)
        report["_budget"] = budget_run(settings.budget_events)
    report["_machine"] = machine()
    report["_when"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["_settings"] = {"duration": settings.duration, "connections": settings.connections,
                           "quick": args.quick}
    print()
    print(table(report))
    print()
    for line in verdicts(report):
        print(line)
    if "_budget" in report:
        print()
        for line in budget_lines(report):
            print(line)
    print(f"\nmachine: {report['_machine']}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for path in (args.out / f"bench-{stamp}.json", args.out / "bench-latest.json"):
        path.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
