"""One visit through the built-in demo config over HTTP, as a fresh install must answer it."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

CID, PID = "cmp_9z8y7x6w", "src_abc123"
DEMO_TOKEN = {"Authorization": "Bearer change-me"}


def demo_visit(url: str) -> str:
    """A click, a view, a sale and the read API; returns the transaction id."""
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        click = client.post("/api/click", json={"cid": CID, "pid": PID, "sub1": "banner-a"})
        assert click.status_code == 200, click.text
        transaction_id: str = click.json()["data"]["transaction_id"]
        event = {"cid": CID, "pid": PID, "transaction_id": transaction_id}

        viewed = client.post("/api/event/trigger", json={**event, "event_id": "quote_viewed"})
        assert viewed.status_code == 200, viewed.text
        assert viewed.json()["data"]["conversion"] is False

        sale = client.post("/api/event/trigger",
                           json={**event, "event_id": "sale_completed", "revenue": "45.00"})
        assert sale.status_code == 200, sale.text
        assert sale.json()["data"]["conversion"] is True
        conversion_id = sale.json()["data"]["conversion_id"]
        assert conversion_id.startswith("conv_")

        stored = client.get(f"/api/transactions/{transaction_id}", headers=DEMO_TOKEN)
        assert stored.status_code == 200, stored.text
        events = stored.json()["data"]["events"]
        assert [(e["event_id"], e["conversion_id"]) for e in events][1] == (
            "sale_completed", conversion_id)
        assert events[0]["event_id"] == "quote_viewed"
        # The demo source is paid 50 % of the revenue, as an exact decimal.
        assert (events[1]["revenue"], events[1]["payout"]) == ("45.00", "22.50")

        # Today's report, folded in a report process (a spawned copy of the executable).
        today = datetime.now(UTC).date().isoformat()
        report = client.get("/api/reports", params={"from": today, "to": today},
                            headers=DEMO_TOKEN)
        assert report.status_code == 200, report.text
        assert report.json()["data"]["totals"]["clicks"] >= 1
    return transaction_id
