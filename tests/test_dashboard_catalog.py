"""The dashboard's Catalog page in headless Chromium, on a served shop with
[server] catalog = "database": a source added through its form takes traffic the figures
count, a form filled at an older version is refused inline (412) and can be reloaded, and
check-config's diagnosis shows beside the campaign editor (400)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.served import Served

pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is not installed: `make test` installs the dev extras")

from tests.test_browser import CHROMIUM, browser  # noqa: F401 (fixture)
from tests.test_dashboard import SHOTS

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found: `make chromium` installs Debian's (.ci/run does), or set "
           "EVENT_POSTBACK_CHROMIUM to a Chromium binary")

TOKEN = "catalog-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
REFUSED_412 = "Changed by someone else since you opened it"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("catalog-shop")
    config = tmp_path / "shop.toml"
    config.write_text(f"""
[server]
admin_token = "{TOKEN}"
catalog = "database"

[reports]
currency = "EUR"

[[sources]]
pid = "src_a"
name = "Price comparison"

[[campaigns]]
cid = "cmp_shop"
name = "Spring shop"

[[campaigns.events]]
event_id = "sale"
conversion = true
""")
    service = Served(tmp_path, "--config", str(config), "--db", str(tmp_path / "shop.db"))
    try:
        yield service
    finally:
        service.kill()


def _catalog_page(chromium: Any, service: Served) -> tuple[Any, list[str]]:
    page = chromium.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    today = dt.datetime.now(dt.UTC).date().isoformat()
    page.goto(f"{service.url}/dashboard?tz=UTC&from={today}&to={today}")
    page.fill("#token", TOKEN)
    page.click("#login button")
    page.click('#tabs [data-page="catalog"]')
    page.locator("#catalog-note").filter(has_text="kept in the database").wait_for()
    return page, errors


def _version(service: Served) -> str:
    etag: str = httpx.get(f"{service.url}/api/catalog", headers=ADMIN).headers["etag"]
    return etag


def test_a_source_added_in_the_dashboard_takes_traffic_the_figures_count(
    shop: Served, browser: Any  # noqa: F811 (the fixture)
) -> None:
    page, errors = _catalog_page(browser, shop)
    page.click("#source-new")
    form = page.locator("#source-form")
    form.locator('[name="pid"]').fill("src_coupons")
    form.locator('[name="name"]').fill("Coupon site")
    form.locator('[name="payout_type"]').select_option("fixed")
    form.locator('[name="payout_value"]').fill("3.10")
    form.locator('[name="postback_url"]').fill("https://coupons.example/pb?c={conversion_id}")
    form.locator('button[type="submit"]').click()
    page.locator("#catalog-done").filter(has_text="Source created").wait_for()
    assert form.is_hidden()
    row = page.locator('#sources tr[data-id="src_coupons"] td')
    assert row.all_text_contents()[:5] == [
        "src_coupons", "Coupon site", "yes", "fixed 3.10",
        "https://coupons.example/pb?c={conversion_id}"]
    source = httpx.get(f"{shop.url}/api/sources/src_coupons", headers=ADMIN).json()["data"]
    assert source["payout"] == {"type": "fixed", "value": "3.10"}

    with httpx.Client(base_url=shop.url) as client:
        click = client.post("/api/click", json={"cid": "cmp_shop", "pid": "src_coupons"})
        assert click.status_code == 200, click.text
        client.post("/api/event/trigger", json={
            "cid": "cmp_shop", "event_id": "sale", "pid": "src_coupons", "revenue": "20",
            "transaction_id": click.json()["data"]["transaction_id"]}).raise_for_status()

    page.click('#tabs [data-page="figures"]')
    page.select_option("#breakdown", "pid")
    line = page.locator("#by-key tr", has_text="Coupon site")
    line.wait_for()
    # Its name, one click, one conversion, approved.
    assert line.locator("td").all_text_contents()[:4] == ["Coupon site", "1", "1", "1"]
    page.close()
    assert errors == []


def test_a_form_filled_at_an_older_version_is_refused_inline_and_reloads(
    shop: Served, browser: Any  # noqa: F811 (the fixture)
) -> None:
    page, errors = _catalog_page(browser, shop)
    page.locator('#sources tr[data-id="src_a"] button', has_text="Edit").click()
    form = page.locator("#source-form")
    assert form.locator('[name="pid"]').input_value() == "src_a"
    assert form.locator('[name="name"]').input_value() == "Price comparison"
    # Someone else changes the catalog after the form was filled.
    other = httpx.put(f"{shop.url}/api/sources/src_elsewhere", json={"name": "Elsewhere"},
                      headers={**ADMIN, "If-Match": _version(shop)})
    assert other.status_code == 201, other.text
    form.locator('[name="name"]').fill("Price comparison EU")
    form.locator('button[type="submit"]').click()
    problem = form.locator("[data-problem]")
    problem.filter(has_text=REFUSED_412).wait_for()
    assert httpx.get(f"{shop.url}/api/sources/src_a", headers=ADMIN).json()["data"][
        "name"] == "Price comparison"
    problem.locator("button", has_text="Reload").click()
    page.locator('#sources tr[data-id="src_elsewhere"]').wait_for()
    assert problem.text_content() == ""
    form.locator('[name="name"]').fill("Price comparison EU")
    form.locator('button[type="submit"]').click()
    page.locator("#catalog-done").filter(has_text="Source replaced").wait_for()
    assert page.locator('#sources tr[data-id="src_a"] td').nth(1).text_content() == (
        "Price comparison EU")

    # Delete asks first: dismissed, the source stays; accepted, it goes.
    doomed = page.locator('#sources tr[data-id="src_elsewhere"]')
    page.once("dialog", lambda dialog: dialog.dismiss())
    doomed.locator("button", has_text="Delete").click()
    page.once("dialog", lambda dialog: dialog.accept())
    doomed.locator("button", has_text="Delete").click()
    page.locator("#catalog-done").filter(has_text="Source deleted").wait_for()
    doomed.wait_for(state="detached")
    assert httpx.get(f"{shop.url}/api/sources/src_elsewhere",
                     headers=ADMIN).status_code == 404
    page.close()
    assert errors == []


def test_the_campaign_editor_shows_check_configs_diagnosis_inline(
    shop: Served, browser: Any  # noqa: F811 (the fixture)
) -> None:
    page, errors = _catalog_page(browser, shop)
    page.locator('#campaigns tr[data-id="cmp_shop"] button', has_text="Edit").click()
    form = page.locator("#campaign-form")
    assert form.locator('[name="name"]').input_value() == "Spring shop"
    document = form.locator('[name="document"]')
    assert '"event_id": "sale"' in document.input_value()
    wrong = ('{"events": [{"event_id": "sale", "conversion": true},'
             ' {"event_id": "visit", "approval": "manual"}]}')
    document.fill(wrong)
    form.locator('button[type="submit"]').click()
    problem = form.locator("[data-problem]")
    problem.filter(has_text="catalog: campaigns[").wait_for()
    # The API's own answer to the same document, word for word.
    expected = httpx.put(f"{shop.url}/api/campaigns/cmp_shop", content=wrong.replace(
        "{", '{"cid": "cmp_shop", "name": "Spring shop", ', 1),
        headers={**ADMIN, "If-Match": _version(shop)}).json()["message"]
    assert problem.text_content() == expected
    assert "only a conversion event can wait for approval" in expected

    document.fill("{not json")
    form.locator('button[type="submit"]').click()
    problem.filter(has_text="The document is not JSON").wait_for()

    # Amounts go as typed, never through a float.
    document.fill('{"events": [{"event_id": "sale", "conversion": true,'
                  ' "max_revenue": 123.456789012345678}]}')
    form.locator('[name="landing_url"]').fill("https://shop.example/spring")
    form.locator('button[type="submit"]').click()
    page.locator("#catalog-done").filter(has_text="Campaign replaced").wait_for()
    saved = httpx.get(f"{shop.url}/api/campaigns/cmp_shop", headers=ADMIN).json()["data"]
    assert saved["events"][0]["max_revenue"] == "123.456789012345678"
    assert (saved["name"], saved["landing_url"]) == ("Spring shop", "https://shop.example/spring")

    page.locator('#campaigns tr[data-id="cmp_shop"] button', has_text="Edit").click()
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-catalog.png"), full_page=True)
    page.close()
    assert errors == []

