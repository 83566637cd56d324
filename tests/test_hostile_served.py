"""The reproductions of hostile input and a full disk, against the real served process."""

from __future__ import annotations

import resource
import signal
import sqlite3
from pathlib import Path

import httpx

from tests.demo_visit import CID, DEMO_TOKEN, PID
from tests.served import Served

SALE = '{"cid": "%s", "event_id": "sale_completed", "transaction_id": "%%s", "pid": "%s", ' \
       % (CID, PID)


def test_each_reproduction_gets_its_exact_answer(tmp_path: Path) -> None:
    server = Served(tmp_path, "--db", str(tmp_path / "hostile.db"))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            transaction_id = client.post("/api/click", json={"cid": CID, "pid": PID}).json()[
                "data"]["transaction_id"]
            cases: list[tuple[bytes, int, str]] = [
                (b'{"k":' + b"[" * 1000 + b"]" * 1000 + b"}", 400, "Invalid JSON body"),
                (b'{"cid":"a\xffb"}', 400, "Invalid JSON body"),
                # The demo campaign drops bad optional fields; revenue still refuses.
                ((SALE % transaction_id + '"revenue": "null", "sub1": 5}').encode(), 400,
                 "Invalid revenue"),
                ((SALE % transaction_id + '"revenue": 1, "conversion_date": '
                  '"9999-12-31 23:00:00", "conversion_timezone": "PST"}').replace(
                      "sale_completed", "quote_viewed").encode(), 200,
                 "Event triggered successfully"),
                (b'{"cid": "%s", "zz": 1e+300000000}' % CID.encode(), 400, "Invalid zz"),
                ((SALE % transaction_id + '"revenue": 1e-200000000}').encode(), 200,
                 "Event triggered successfully"),
            ]
            for body, status, message in cases:
                route = "/api/click" if b'"zz"' in body else "/api/event/trigger"
                response = client.post(route, content=body)
                assert (response.status_code, response.json()["message"]) == (
                    status, message), body[:80]
            view = client.get(f"/api/transactions/{transaction_id}", headers=DEMO_TOKEN)
            _, sale = view.json()["data"]["events"]
            assert (sale["revenue"], sale["payout"]) == ("0.00", "0.00")
            assert client.get("/healthz").status_code == 200
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def _small_files() -> None:
    # Files may not grow past 512 KiB, as on a full disk; Python ignores SIGXFSZ, so a
    # write past it fails with an error instead of killing the process. The empty schema
    # alone takes about 100 KiB, and migrating it passes through the WAL.
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, resource.RLIM_INFINITY))


def test_a_full_disk_answers_503_and_sigterm_still_exits_promptly(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    config = tmp_path / "full.toml"
    config.write_text("[server]\nwrite_timeout_seconds = 1.0\n"
                      '[[campaigns]]\ncid = "%s"\n' % CID)
    server = Served(tmp_path, "--config", str(config), "--db", str(db),
                    preexec_fn=_small_files)
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            pad = "x" * 250
            for _ in range(2000):
                response = client.post("/api/click", json={"cid": CID, "a": pad, "b": pad,
                                                           "c": pad, "d": pad})
                if response.status_code != 200:
                    break
                acknowledged.append(response.json()["data"]["transaction_id"])
            assert response.status_code == 503, response.text
            assert response.json()["message"] == "Store unavailable"
            assert response.headers["Retry-After"] == "5"
            assert client.get("/healthz").status_code == 503
        server.signal(signal.SIGTERM)
        # Bounded although the queued write can never be stored: no acknowledged one is lost.
        assert server.wait(timeout=20) == 0
    finally:
        server.kill()
    assert acknowledged
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT transaction_id FROM leads")}
    assert set(acknowledged) <= stored
    log = server.log_path.read_text()
    assert "writes_abandoned_at_shutdown" in log
