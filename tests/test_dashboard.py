"""The dashboard in headless Chromium: token, figures of a seeded database, Resend, Resume."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import Answer, Receiver
from tests.served import Served

pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: `make test` installs the dev extras")

from tests.test_browser import CHROMIUM, browser, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: `make chromium` installs Debian's (.ci/run does), or set "
           "EVENT_POSTBACK_CHROMIUM to a Chromium binary")

TOKEN = "dashboard-token"
ARTIFACTS = Path(__file__).parent / "artifacts"


def _seed(url: str) -> None:
    """Three clicks from two sources and two ads (sub1), one sale (its buyer postback
    fails), one cost."""
    with httpx.Client(base_url=url) as client:
        ids = [client.post("/api/click", json={"cid": "cmp_shop", "pid": pid, "sub1": ad})
               .json()["data"]["transaction_id"]
               for pid, ad in (("src_a", "ad_red"), ("src_a", "ad_blue"), ("src_b", "ad_red"))]
        for transaction_id, pid in zip(ids, ("src_a", "src_a", "src_b"), strict=True):
            client.post("/api/event/trigger", json={
                "cid": "cmp_shop", "event_id": "visit", "transaction_id": transaction_id,
                "pid": pid, "cost": "0.40"}).raise_for_status()
        client.post("/api/event/trigger", json={
            "cid": "cmp_shop", "event_id": "sale", "transaction_id": ids[0], "pid": "src_a",
            "revenue": 45}).raise_for_status()


def _failed(url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(
        f"{url}/api/postbacks?status=failed",
        headers={"Authorization": f"Bearer {TOKEN}"}).json()["data"]
    return found


def test_dashboard_shows_the_figures_and_resends_a_failed_postback(
    tmp_path: Path, browser: Any  # noqa: F811 (the fixture)
) -> None:
    with Receiver() as buyer:
        buyer.script("/buyer", Answer(status=400, body="bad lead"), Answer(status=200))
        buyer.script("/gone", Answer(status=410, body="moved away"))
        config = tmp_path / "shop.toml"
        config.write_text(f"""
[server]
admin_token = "{TOKEN}"

[[sources]]
pid = "src_a"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "src_b"

[[campaigns]]
cid = "cmp_shop"

[[campaigns.events]]
event_id = "visit"

[[campaigns.events]]
event_id = "sale"
conversion = true

[[campaigns.postbacks]]
url = "{buyer.url}/buyer?conv={{conversion_id}}"

[[campaigns.postbacks]]
name = "partner"
url = "{buyer.url}/gone?conv={{conversion_id}}"

[[campaigns.caps]]
metric = "conversions"
period = "day"
limit = 1
""")
        service = Served(tmp_path, "--config", str(config), "--db", str(tmp_path / "shop.db"))
        try:
            _seed(service.url)
            wait_for(lambda: _failed(service.url) and buyer.of("/gone"))
            _look(browser, service, buyer)
        finally:
            service.kill()


def _look(chromium: Any, service: Served, buyer: Receiver) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 1100})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    today = dt.datetime.now(dt.UTC).date().isoformat()
    page.goto(f"{service.url}/dashboard?tz=UTC&from={today}&to={today}")

    page.fill("#token", "wrong")
    page.click("#login button")
    page.locator("#login-error").filter(has_text="Unknown token").wait_for()
    page.fill("#token", TOKEN)
    page.click("#login button")

    def figure(name: str) -> str:
        text: str = page.locator(f'#headline [data-figure="{name}"] .value').text_content()
        return text

    page.locator('#headline [data-figure="clicks"] .value').filter(has_text="3").wait_for()
    # Ratios as percentages: roi = 21.30 / (22.50 paid + 1.20 spent).
    assert [figure(name) for name in ("clicks", "conversions", "net_revenue", "net_payout",
                                      "profit", "conversion_rate", "roi")] == [
        "3", "1", "45.00", "22.50", "21.30", "33.33 %", "89.87 %"]
    # The breakdown picker: one row per ad (sub1), conversions counted by status beside.
    page.select_option("#breakdown", "sub1")
    rows = page.locator("#by-key tr")
    rows.nth(1).locator("td").first.filter(has_text="ad_blue").wait_for()
    assert rows.nth(1).locator("td").all_text_contents()[:3] == ["ad_blue", "1", "0"]
    assert rows.nth(2).locator("td").all_text_contents()[:8] == [
        "ad_red", "2", "1", "1", "0", "0", "0", "45.00"]
    page.locator('#by-key th[data-figure="clicks"]').click()  # sorted by clicks, most first
    assert page.locator("#by-key tr").nth(1).locator("td").first.text_content() == "ad_red"
    with page.expect_download() as download:
        page.click("#csv")
    csv_lines = Path(download.value.path()).read_text().splitlines()
    assert csv_lines[0].startswith("sub1,clicks,")
    assert [line.split(",")[:4] for line in csv_lines[1:3]] == [
        ["ad_blue", "1", "1", "0"], ["ad_red", "2", "3", "1"]]
    # 24 hours of the day, the sale's shaded.
    hours = page.locator("#hours td").all_text_contents()
    assert len(hours) == 24 and sorted(hours) == ["0"] * 23 + ["1"]
    assert page.locator('[data-status="failed"] .value').text_content() == "1"
    assert page.locator("#updated").text_content().startswith("updated at ")
    # The sale by status and reason, and the cap it filled.
    assert page.locator('#by-status tr[data-status="approved"] td').all_text_contents()[
        :3] == ["approved", "none", "1"]
    assert page.locator("#caps tr").nth(1).locator("td").all_text_contents() == [
        "cmp_shop", "any", "any", "conversions", today, "1", "1", "100 %"]
    assert page.locator("#caps tr").nth(1).locator("td.warn").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # The partner's 410 paused its endpoint; Resume sends its postback again.
    page.locator('#paused tr[data-endpoint="partner"]').wait_for()
    assert page.locator('#paused tr[data-endpoint="partner"] td').all_text_contents()[
        2:5] == ["gone", "1", "HTTP 410"]
    assert page.locator('[data-status="paused"] .value').text_content() == "1"
    page.locator("#paused button", has_text="Resume").click()
    wait_for(lambda: len(buyer.of("/gone")) == 2)
    page.locator('#paused tr[data-endpoint="partner"]').wait_for(state="detached")

    page.locator("#failures button", has_text="Resend").click()
    wait_for(lambda: len(buyer.of("/buyer")) == 2)
    page.locator('[data-status="delivered"] .value').filter(has_text="2").wait_for()
    assert page.locator('[data-status="failed"] .value').text_content() == "0"

    # Narrow screen: one column.
    page.set_viewport_size({"width": 390, "height": 844})
    charts = page.locator(".charts figure")
    assert charts.nth(0).bounding_box()["x"] == charts.nth(1).bounding_box()["x"]
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.close()
    assert errors == []
    assert requested and all(url.startswith(service.url + "/") for url in requested)
    assert not any(TOKEN in url for url in requested)
