"""Postbacks of the real served process survive a kill -9."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.receiver import Answer, Receiver
from tests.served import Served

CID = "cmp_9z8y7x6w"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_kill_9_during_delivery_still_delivers_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = tmp_path / "postbacks.toml"
    config.write_text(f"""
[server]
admin_token = "t"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?conv={{conversion_id}}&rev={{revenue}}"
""")
    db = tmp_path / "pb.db"
    receiver.script("/buyer", Answer(hang=True))
    server = Served(tmp_path, "--config", str(config), "--db", str(db))
    try:
        with httpx.Client(base_url=server.url) as client:
            transaction_id = client.post("/api/click", json={"cid": CID}).json()["data"][
                "transaction_id"]
            sale = client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale_completed", "transaction_id": transaction_id,
                "revenue": "12"})
            assert sale.status_code == 200
            conversion_id = sale.json()["data"]["conversion_id"]
        wait_until(lambda: receiver.hanging == 1)  # the delivery is in flight
        server.signal(signal.SIGKILL)
        server.wait()
    finally:
        server.kill()

    restarted = Served(tmp_path, "--config", str(config), "--db", str(db), name="restarted")
    try:
        wait_until(lambda: len(receiver.of("/buyer")) == 2)
        with httpx.Client(base_url=restarted.url, headers={"Authorization": "Bearer t"}) as c:
            def delivered() -> bool:
                found = c.get("/api/postbacks", params={"status": "delivered"}).json()["data"]
                return len(found) == 1
            wait_until(delivered)
    finally:
        restarted.kill()
    resent = receiver.of("/buyer")[1]
    assert resent.query == {"conv": [conversion_id], "rev": ["12.00"]}
