"""The web SDK in real headless Chromium, on pages served from other origins.

Needs Debian's chromium (``make chromium`` or ``.ci/run`` installs it); skipped, saying
so, when no browser can be found.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.receiver import Answer, Receiver
from tests.served import Served
from tests.threaded import ThreadedServer

playwright_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: `make test` installs the dev extras")

CHROMIUM = os.environ.get("EVENT_POSTBACK_CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome")
     if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: `make chromium` installs Debian's (.ci/run does), or set "
           "EVENT_POSTBACK_CHROMIUM to a Chromium binary")

CID = "cmp_web"
PID = "src_abc123"
TOKEN = "browser-token"
# Chromium needs these in a container run as root; the rest keep it off the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def landing_page(service: str) -> str:
    return f"""<!doctype html>
<html><head>
<script src="{service}/sdk.js" data-cid="{CID}"></script>
</head><body>
<p data-ep-event-view="quote_viewed">Your quote: $45.00</p>
<button id="buy" data-ep-event="sale_completed" data-ep-revenue="45.00">Buy</button>
<a id="leave" href="/next.html">Next</a>
<script>
  window.addEventListener("pagehide", function () {{
    EventPostback.track("page_left", {{sub5: "leaving"}});
  }});
</script>
</body></html>"""


SDK_SOURCE = (Path(__file__).parent.parent / "app" / "static" / "sdk.js").read_bytes()


class Pages:
    """A second origin serving the test pages; they load the SDK from ``self.service``."""

    def __init__(self, host: str) -> None:
        self.service = ""
        self._server = ThreadedServer(Starlette(routes=[
            Route("/landing.html", lambda request: HTMLResponse(landing_page(self.service))),
            Route("/next.html", lambda request: HTMLResponse("<p>Thanks</p>")),
            Route("/blank.html", lambda request: HTMLResponse(
                '<script src="/sdk.js"></script><p>No markup</p>')),
            Route("/sdk.js", lambda request: Response(SDK_SOURCE,
                                                      media_type="application/javascript")),
        ]), host=host)
        self.url = self._server.url

    def __enter__(self) -> Pages:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


def wait_for(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the browser's requests did not arrive in time")
        time.sleep(0.05)


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_sdk_mints_a_lead_fires_events_and_beacons_on_leaving(
    tmp_path: Path, browser: Any
) -> None:
    # The allowed page is on localhost, the refused one on 127.0.0.1: other origins, and
    # other cookie jars too.
    with Pages("localhost") as pages, Pages("127.0.0.1") as stranger:
        config = tmp_path / "web.toml"
        config.write_text(f"""
[server]
admin_token = "{TOKEN}"

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}

[[campaigns]]
cid = "{CID}"
allowed_origins = ["{pages.url}"]

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.events]]
event_id = "page_left"
allow_duplicates = true
""")
        db = tmp_path / "web.db"
        service = Served(tmp_path, "--config", str(config), "--db", str(db))
        try:
            pages.service = stranger.service = service.url
            _visit_allowed_page(browser, service, pages)
            _visit_refused_page(browser, service, stranger)
        finally:
            service.kill()


def _read_with(service: Served, transaction_id: str, token: str) -> dict[str, Any]:
    response = httpx.get(f"{service.url}/api/transactions/{transaction_id}",
                         headers={"Authorization": f"Bearer {token}"})
    data: dict[str, Any] = response.json()["data"]
    return data


def _read(service: Served, transaction_id: str) -> dict[str, Any]:
    return _read_with(service, transaction_id, TOKEN)


def _event_ids(service: Served, transaction_id: str) -> list[str]:
    return [event["event_id"] for event in _read(service, transaction_id)["events"]]


def _visit_allowed_page(browser: Any, service: Served, pages: Pages) -> None:
    page = browser.new_page()
    page.goto(f"{pages.url}/landing.html?pid={PID}&sub1=s-one&sub2=s-two"
              "&utm_source=newsletter&ignored=1")
    page.wait_for_function("() => EventPostback.transactionId() !== null")
    transaction_id = page.evaluate("() => EventPostback.transactionId()")
    wait_for(lambda: "quote_viewed" in _event_ids(service, transaction_id))

    # The page can read the server's answers: a repeat is refused, and says why.
    answer = page.evaluate("() => EventPostback.track('quote_viewed')")
    assert answer["status"] in (400, 403)
    assert answer["message"] in ("Concurrent event in progress",
                                 "Duplicate event for this transaction_id")

    page.click("#buy")
    wait_for(lambda: "sale_completed" in _event_ids(service, transaction_id))

    page.click("#leave")  # navigating away: the pagehide handler's event goes as a beacon
    page.wait_for_url(f"{pages.url}/next.html")
    wait_for(lambda: "page_left" in _event_ids(service, transaction_id))
    page.close()

    lead = _read(service, transaction_id)
    assert lead["pid"] == PID
    assert lead["fields"]["sub1"] == "s-one"
    assert lead["fields"]["sub2"] == "s-two"
    assert lead["fields"]["utm_source"] == "newsletter"
    assert "ignored" not in lead["fields"]
    events = {event["event_id"]: event for event in lead["events"]}
    assert [event["event_id"] for event in lead["events"]] == [
        "quote_viewed", "sale_completed", "page_left"]
    assert all(event["pid"] == PID for event in lead["events"])
    sale = events["sale_completed"]
    assert (sale["conversion"], sale["revenue"], sale["payout"]) == (True, "45.00", "22.50")
    assert events["page_left"]["fields"] == {"sub5": "leaving"}


def _live_leads(service: Served) -> int:
    # The served file is locked to its server; every lead it minted has a live actor.
    count: int = httpx.get(f"{service.url}/healthz").json()["data"]["live_actors"]
    return count


def _visit_refused_page(browser: Any, service: Served, stranger: Pages) -> None:
    leads_before = _live_leads(service)
    page = browser.new_page()
    page.goto(f"{stranger.url}/landing.html?pid={PID}")
    answer = page.evaluate("() => EventPostback.init({cid: '%s'})" % CID)
    assert answer["status"] == 0 and answer["type"] == "error"
    direct = page.evaluate("""async (service) => {
        try {
            await fetch(service + "/api/click", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({cid: "%s"})});
            return "read";
        } catch (error) {
            return "refused";
        }
    }""" % CID, service.url)
    assert direct == "refused"
    page.close()
    assert _live_leads(service) == leads_before


def _api_answer(status: int, message: str, data: dict[str, Any] | None = None) -> Answer:
    body: dict[str, Any] = {"status": status, "type": "success" if status < 400 else "error",
                            "message": message}
    if data is not None:
        body["data"] = data
    return Answer(status=status, body=json.dumps(body),
                  headers={"Access-Control-Allow-Origin": "*",
                           "Content-Type": "application/json"})


def test_sdk_retries_5xx_and_network_errors_but_never_a_4xx(browser: Any) -> None:
    """A scripted API stands in for the service, so each answer can be chosen."""
    with Receiver() as api, Pages("localhost") as pages:
        click = _api_answer(200, "Click recorded", {"transaction_id": "txn_scripted",
                                                    "cid": CID, "pid": PID})
        fired = _api_answer(200, "Event triggered successfully")
        api.script("/api/click", click)
        api.script("/api/event/trigger",
                   _api_answer(503, "Server busy"), fired,              # retried, then ok
                   _api_answer(403, "Concurrent event in progress"),    # final at once
                   _api_answer(400, "Duplicate event for this transaction_id"))
        errors: list[str] = []
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{pages.url}/blank.html?pid={PID}")
        not_ready = page.evaluate("() => EventPostback.track('quote_viewed')")
        assert (not_ready["status"], not_ready["type"]) == (0, "error")
        assert page.evaluate("() => EventPostback.init({})")["type"] == "error"

        ready = page.evaluate("(api) => EventPostback.init({cid: '%s', endpoint: api})" % CID,
                              api.url)
        assert ready["transaction_id"] == "txn_scripted"
        first = page.evaluate("() => EventPostback.track('quote_viewed', {sub3: 'x'})")
        assert (first["status"], first["message"]) == (200, "Event triggered successfully")
        assert len(api.of("/api/event/trigger")) == 2  # the 503 was retried once
        locked = page.evaluate("() => EventPostback.track('quote_viewed')")
        duplicate = page.evaluate("() => EventPostback.track('quote_viewed')")
        assert (locked["status"], duplicate["status"]) == (403, 400)
        assert len(api.of("/api/event/trigger")) == 4  # no retry of either 4xx

        sent = json.loads(api.of("/api/event/trigger")[0].body)
        assert sent == {"sub3": "x", "cid": CID, "event_id": "quote_viewed",
                        "transaction_id": "txn_scripted", "pid": PID}
        sent_first = api.of("/api/event/trigger")
        assert sent_first[0].headers["content-type"].startswith("text/plain")
        # The 503's retry kept its call's key; the next call has a fresh one.
        keys = [request.headers["idempotency-key"] for request in sent_first]
        assert keys[0] == keys[1] and len(set(keys)) == 3 and all(keys)

        page.close()

        # No service at all: network errors are retried too (0.5 + 1.5 + 4 s), then the
        # promise resolves with a failure; nothing is thrown into the page.
        offline = browser.new_page()
        offline.on("pageerror", lambda error: errors.append(str(error)))
        offline.goto(f"{pages.url}/blank.html")
        offline.evaluate("""() => {
            window.fetchCalls = 0;
            const realFetch = window.fetch;
            window.fetch = (...args) => { window.fetchCalls += 1; return realFetch(...args); };
        }""")
        answer = offline.evaluate(
            "() => EventPostback.init({cid: '%s', endpoint: 'http://127.0.0.1:9'})" % CID)
        assert (answer["status"], answer["type"]) == (0, "error")
        assert offline.evaluate("() => window.fetchCalls") == 4  # one try, three retries
        offline.close()
        assert errors == []


def test_demo_page_shows_the_answer_of_each_button(tmp_path: Path, browser: Any) -> None:
    service = Served(tmp_path, "--db", str(tmp_path / "demo.db"))  # the built-in demo
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        failed: list[str] = []  # what the console reports as failed to load
        page.on("console", lambda message: failed.append(message.location["url"])
                if message.type == "error" else None)
        page.goto(f"{service.url}/examples/landing.html?pid=src_abc123&sub1=banner-a")
        answers = page.locator("#answers li")

        # The view fired on load: its answer is on the page, with no conversion.
        viewed = page.locator('#answers li[data-event="quote_viewed"]')
        viewed.wait_for()
        assert viewed.locator("p").text_content() == (
            "quote_viewed: 200 Event triggered successfully")
        assert json.loads(viewed.locator("pre").text_content())["data"]["conversion_id"] == ""
        transaction_id = page.evaluate("() => EventPostback.transactionId()")
        assert page.locator("#transaction").text_content() == (
            f"transaction_id: {transaction_id}")

        # The sale shows its own answer, with the conversion_id the service stored.
        page.click("#buy")
        sale = page.locator('#answers li[data-event="sale_completed"]')
        sale.first.wait_for()
        stored = _read_with(service, transaction_id, "change-me")["events"]
        conversion_id = next(event["conversion_id"] for event in stored
                             if event["event_id"] == "sale_completed")
        assert conversion_id.startswith("conv_")
        assert sale.first.locator("p").text_content() == (
            f"sale_completed: 200 Event triggered successfully, conversion_id {conversion_id}")

        # Buying again is refused, and the page says why.
        page.click("#buy")
        sale.nth(1).wait_for()
        assert sale.nth(1).locator("p").text_content() in (
            "sale_completed: 403 Concurrent event in progress",
            "sale_completed: 400 Duplicate event for this transaction_id")
        assert answers.count() == 3
        page.close()
        assert errors == []
        # The refused purchase is the console's only complaint: no missing favicon.
        assert failed == [f"{service.url}/api/event/trigger"]
    finally:
        service.kill()


def test_sdk_retry_after_a_dropped_answer_gets_the_stored_answer(
    tmp_path: Path, browser: Any
) -> None:
    """The first answer is lost on its way back; the retry, same key, learns the sale."""
    with Pages("localhost") as pages:
        config = tmp_path / "retry.toml"
        config.write_text(f"""
[server]
admin_token = "{TOKEN}"

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"
allowed_origins = ["{pages.url}"]

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
""")
        service = Served(tmp_path, "--config", str(config), "--db", str(tmp_path / "r.db"))
        try:
            page = browser.new_page()
            page.goto(f"{pages.url}/blank.html?pid={PID}")
            # The first event request reaches the service, then its answer is dropped.
            page.evaluate("""() => {
                window.replayed = [];
                const realFetch = window.fetch;
                let dropped = false;
                window.fetch = (url, options) => realFetch(url, options).then((response) => {
                    if (url.endsWith('/api/event/trigger')) {
                        window.replayed.push(response.headers.get('Idempotent-Replayed'));
                        if (!dropped) {
                            dropped = true;
                            throw new TypeError('connection reset');
                        }
                    }
                    return response;
                });
            }""")
            ready = page.evaluate(
                "(api) => EventPostback.init({cid: '%s', endpoint: api})" % CID, service.url)
            transaction_id = ready["transaction_id"]
            answer = page.evaluate(
                "() => EventPostback.track('sale_completed', {revenue: '45.00'})")
            assert (answer["status"], answer["type"]) == (200, "success")
            assert page.evaluate("() => window.replayed") == [None, "true"]
            view = httpx.get(f"{service.url}/api/transactions/{transaction_id}",
                             headers={"Authorization": f"Bearer {TOKEN}"}).json()["data"]
            [sale] = view["events"]
            assert answer["data"]["conversion_id"] == sale["conversion_id"] != ""
            page.close()
        finally:
            service.kill()
