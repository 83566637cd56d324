"""Realistic traffic for event-postback: visitors moving through a webflow, and a buyer.

Answers the rules call for (403 for a double submit inside the lock window, 400 for a
re-send of a fire-once event) count as successes of the scenario; anything else that is
not the expected answer is a failure.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import FastHttpUser, between, task

WEBFLOW, BUYER, SOURCE = "cmp_webflow", "cmp_buyer", "src_affiliate"
LOCK_SECONDS = 2.0


class Visitor(FastHttpUser):
    """A visitor from an affiliate: lands, views a quote, fills a form, sometimes buys."""

    weight = 4
    wait_time = between(0.2, 1.0)

    def click(self, cid: str) -> str | None:
        with self.client.post("/api/click", json={
            "cid": cid, "pid": SOURCE, "sub1": f"banner-{random.randint(1, 5)}",
            "utm_source": "newsletter",
        }, name="/api/click", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"click answered {response.status_code}")
                return None
            transaction_id: str = response.json()["data"]["transaction_id"]
            return transaction_id

    def fire(self, transaction_id: str, event_id: str, expect: int, name: str,
             **fields: Any) -> None:
        body = {"cid": WEBFLOW, "event_id": event_id, "transaction_id": transaction_id,
                "pid": SOURCE, **fields}
        with self.client.post("/api/event/trigger", json=body, name=name,
                              catch_response=True) as response:
            if response.status_code == expect:
                response.success()
            else:
                response.failure(f"expected {expect}, got {response.status_code}: "
                                 f"{response.text[:200]}")

    @task
    def journey(self) -> None:
        transaction_id = self.click(WEBFLOW)
        if transaction_id is None:
            return
        self.fire(transaction_id, "quote_viewed", 200, "view")
        for step in range(random.randint(1, 3)):
            self.fire(transaction_id, "form_step", 200, "form step", sub2=f"step-{step}")
            time.sleep(LOCK_SECONDS)  # form_step allows duplicates, once its window closes
        self.fire(transaction_id, "form_submitted", 200, "submit")
        if random.random() < 0.3:
            # A double submit inside the window is refused with 403.
            self.fire(transaction_id, "form_submitted", 403, "double submit (403 expected)")
        if random.random() < 0.2:
            # A re-send after the window is a duplicate.
            time.sleep(LOCK_SECONDS + 0.1)
            self.fire(transaction_id, "form_submitted", 400, "re-send (400 expected)")
        if random.random() < 0.25:
            self.fire(transaction_id, "sale_completed", 200, "conversion",
                      revenue=f"{random.randint(10, 200)}.{random.randint(0, 99):02d}")


class BuyerServer(FastHttpUser):
    """A buyer's server: receives leads, reports completed calls through /api/event/{cid}."""

    weight = 1
    wait_time = between(0.5, 1.5)

    @task
    def call_completed(self) -> None:
        with self.client.post("/api/click", json={"cid": BUYER, "pid": SOURCE},
                              name="/api/click (buyer)", catch_response=True) as click:
            if click.status_code != 200:
                click.failure(f"click answered {click.status_code}")
                return
            transaction_id = click.json()["data"]["transaction_id"]
        with self.client.post(f"/api/event/{BUYER}", json={
            "event_id": "call_completed", "transaction_id": transaction_id, "pid": SOURCE,
            "revenue": f"{random.randint(5, 60)}.00",
        }, name="/api/event/{cid}", catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"expected 201, got {response.status_code}")
