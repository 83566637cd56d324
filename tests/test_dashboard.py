"""The dashboard in headless Chromium: token, names and figures of a seeded database,
Resend, Resume, and what a partner's token shows. One served instance for the file."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import Answer, Receiver
from tests.served import Served

pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: `make test` installs the dev extras")

from app.config.tokens import hash_token
from tests.test_browser import CHROMIUM, browser, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: `make chromium` installs Debian's (.ci/run does), or set "
           "EVENT_POSTBACK_CHROMIUM to a Chromium binary")

TOKEN = "dashboard-token"
PARTNER_TOKEN = "partner-token-0123456789"
ARTIFACTS = Path(__file__).parent / "artifacts"
# EVENT_POSTBACK_SCREENSHOTS=docs/img writes the manual's pictures instead.
SHOTS = Path(os.environ.get("EVENT_POSTBACK_SCREENSHOTS", ARTIFACTS))


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


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Receiver]]:
    """The served shop, seeded, its buyer postback failed and the partner's endpoint
    paused (410)."""
    tmp_path = tmp_path_factory.mktemp("shop")
    with Receiver() as buyer:
        buyer.script("/buyer", Answer(status=400, body="bad lead"), Answer(status=200))
        buyer.script("/gone", Answer(status=410, body="moved away"))
        config = tmp_path / "shop.toml"
        config.write_text(f"""
[server]
admin_token = "{TOKEN}"

[reports]
currency = "EUR"

[[sources]]
pid = "src_a"
name = "Price comparison"
payout = {{ type = "percent", value = 50 }}

[[sources]]
pid = "src_b"
name = "Newsletter"

[[campaigns]]
cid = "cmp_shop"
name = "Spring shop"

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

[[tokens]]
name = "price comparison desk"
token = "{hash_token(PARTNER_TOKEN)}"
role = "partner"
pid = "src_a"
""")
        service = Served(tmp_path, "--config", str(config), "--db", str(tmp_path / "shop.db"))
        try:
            _seed(service.url)
            wait_for(lambda: _failed(service.url) and buyer.of("/gone"))
            yield service, buyer
        finally:
            service.kill()


def test_dashboard_shows_the_figures_and_resends_a_failed_postback(
    shop: tuple[Served, Receiver], browser: Any  # noqa: F811 (the fixture)
) -> None:
    _look(browser, *shop)


def _look(chromium: Any, service: Served, buyer: Receiver) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
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
    # Money in [reports] currency, ratios as percentages: roi = 21.30 / (22.50 paid + 1.20
    # spent).
    assert [figure(name) for name in ("clicks", "conversions", "net_revenue", "net_payout",
                                      "profit", "conversion_rate", "roi")] == [
        "3", "1", "€45.00", "€22.50", "€21.30", "33.33 %", "89.87 %"]
    # Names instead of ids, the id kept in the cell's title.
    page.locator("#by-key td.named").first.wait_for()
    for key, names in (("cid", ["Spring shop"]), ("pid", ["Price comparison", "Newsletter"])):
        page.select_option("#breakdown", key)
        page.locator("#by-key th").first.filter(has_text=key).wait_for()
        assert page.locator("#by-key td.named").all_text_contents() == names
    assert page.locator("#by-key td.named").first.get_attribute("title") == "src_a"
    _fits(page)
    page.select_option("#breakdown", "hour")  # the longest keys: local hours with offsets
    page.locator("#by-key th").first.filter(has_text="hour").wait_for()
    _fits(page)
    # The breakdown picker: one row per ad (sub1), conversions counted by status beside.
    page.select_option("#breakdown", "sub1")
    rows = page.locator("#by-key tr")
    rows.nth(1).locator("td").first.filter(has_text="ad_blue").wait_for()
    assert rows.nth(1).locator("td").all_text_contents()[:3] == ["ad_blue", "1", "0"]
    assert rows.nth(2).locator("td").all_text_contents()[:8] == [
        "ad_red", "2", "1", "1", "0", "0", "0", "€45.00"]
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
        "Spring shop", "any", "any", "conversions", today, "1", "1", "100 %"]
    assert page.locator("#caps tr").nth(1).locator("td.warn").count() == 1
    assert page.locator("#failures tr").nth(1).locator("td").nth(1).text_content() == (
        "Spring shop")
    _fits(page)

    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-operator.png"), full_page=True)

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
    page.screenshot(path=str(SHOTS / "dashboard-phone.png"), full_page=True)
    page.close()
    assert errors == []
    assert requested and all(url.startswith(service.url + "/") for url in requested)
    assert not any(TOKEN in url for url in requested)


def _fits(page: Any) -> None:
    """At 1,280 px wide, no table is wider than its box (nothing to scroll sideways)."""
    wide = page.evaluate("""() => [...document.querySelectorAll("table")]
        .filter((table) => table.offsetParent !== null)
        .filter((table) => table.parentElement.scrollWidth > table.parentElement.clientWidth
                           || table.scrollWidth > table.clientWidth)
        .map((table) => table.id)""")
    assert wide == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280


def _signed_in(chromium: Any, service: Served, token: str) -> Any:
    page = chromium.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    page.goto(f"{service.url}/dashboard?tz=UTC&from={today}&to={today}")
    page.fill("#token", token)
    page.click("#login button")
    return page


def test_the_token_stays_in_the_tab_session_never_in_local_storage_or_the_url(
    shop: tuple[Served, Receiver], browser: Any  # noqa: F811 (the fixture)
) -> None:
    service, _ = shop
    page = _signed_in(browser, service, TOKEN)
    clicks = page.locator('#headline [data-figure="clicks"] .value')
    clicks.filter(has_text="3").wait_for()
    page.reload()
    clicks.filter(has_text="3").wait_for()  # still signed in, and working
    assert page.locator("#login").is_hidden()
    assert TOKEN not in page.url
    assert page.evaluate("() => localStorage.length") == 0
    assert page.evaluate("() => Object.values(sessionStorage)") == [TOKEN]
    page.click("#logout")
    assert page.evaluate("() => sessionStorage.length") == 0
    page.close()


def test_a_partner_sees_its_own_numbers_without_the_buyers_money(
    shop: tuple[Served, Receiver], browser: Any  # noqa: F811 (the fixture)
) -> None:
    service, _ = shop
    page = _signed_in(browser, service, PARTNER_TOKEN)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.locator('#headline [data-figure="clicks"] .value').filter(has_text="2").wait_for()
    cards = page.locator("#headline .card")
    assert [cards.nth(i).get_attribute("data-figure") for i in range(cards.count())] == [
        "clicks", "conversions", "net_payout", "conversion_rate"]
    assert page.locator('#headline [data-figure="net_payout"] .value').text_content() == (
        "€22.50")
    page.select_option("#breakdown", "pid")
    page.locator("#by-key th").first.filter(has_text="pid").wait_for()
    assert page.locator("#by-key td.named").all_text_contents() == ["Price comparison"]
    headings = page.locator("#by-key th").all_text_contents()
    assert "payout" in headings
    assert not {"revenue", "cost", "profit", "EPC", "CPC", "ROI"} & set(headings)
    assert "Newsletter" not in page.content() and "src_b" not in page.content()
    # Caps, paused endpoints and the actions are an operator's, not a partner's.
    for hidden in ("#caps", "#paused", "#pid"):
        assert page.locator(hidden).is_hidden()
    assert page.locator("#by-status th").all_text_contents() == [
        "status", "reason", "conversions", "pending"]
    assert page.locator("#failures button").count() == 0
    assert page.locator("#error").text_content() == ""
    _fits(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-partner.png"), full_page=True)
    page.close()
    assert errors == []


def test_a_file_catalog_is_read_only_for_an_admin_and_hidden_from_a_partner(
    shop: tuple[Served, Receiver], browser: Any  # noqa: F811 (the fixture)
) -> None:
    service, _ = shop
    page = _signed_in(browser, service, TOKEN)
    page.click('#tabs [data-page="catalog"]')
    page.locator("#catalog-note").filter(has_text="changed in the file").wait_for()
    page.locator('#sources tr[data-id="src_b"]').wait_for()
    assert page.locator('#sources tr[data-id="src_a"] td').all_text_contents() == [
        "src_a", "Price comparison", "yes", "50 %", "\N{EN DASH}"]
    assert page.locator("#catalog-page button:visible").count() == 0
    page.close()
    partner = _signed_in(browser, service, PARTNER_TOKEN)
    partner.locator('#headline [data-figure="clicks"] .value').filter(has_text="2").wait_for()
    assert partner.locator('#tabs [data-page="catalog"]').is_hidden()
    partner.close()
