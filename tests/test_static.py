"""The web SDK and the demo landing page."""

from __future__ import annotations

import os
from pathlib import Path

from app.config.schema import demo_config, with_server_overrides
from tests.conftest import Harness, make_config, running

ROOT = Path(__file__).resolve().parent.parent
LANDING = ROOT / "app" / "static" / "examples" / "landing.html"


async def test_sdk_is_served_with_caching_headers_and_an_etag(api: Harness) -> None:
    response = await api.client.get("/sdk.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "max-age=" in response.headers["cache-control"]
    assert b"window.EventPostback" in response.content
    etag = response.headers["etag"]
    cached = await api.client.get("/sdk.js", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", etag)
    stale = await api.client.get("/sdk.js", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200


async def test_sdk_file_in_the_repository_is_what_is_served(api: Harness) -> None:
    source = Path(__file__).parent.parent / "app" / "static" / "sdk.js"
    assert (await api.client.get("/sdk.js")).content == source.read_bytes()


async def test_landing_page_is_served_only_with_the_demo(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        assert (await api.client.get("/examples/landing.html")).status_code == 404
    demo = with_server_overrides(demo_config(), "test", db=str(db_path))
    async with running(demo, demo=True) as api:
        page = await api.client.get("/examples/landing.html")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert b'src="/sdk.js" data-cid="cmp_9z8y7x6w"' in page.content
        assert page.content == LANDING.read_bytes()


def test_the_served_landing_page_is_the_only_copy_in_the_repository() -> None:
    # A second copy drifts from the one served; the manual names the served one.
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        # Hidden folders (.git, .venv), build output and mutmut's copy hold no sources.
        subfolders[:] = [name for name in subfolders if not name.startswith(".")
                         and name not in ("build", "dist", "mutants")]
        found += [Path(folder, name) for name in files if name == "landing.html"]
    assert found == [LANDING]
    assert "`app/static/examples/landing.html`" in (ROOT / "docs" / "api.md").read_text()


async def test_favicon_is_an_empty_answer_browsers_may_cache(api: Harness) -> None:
    # Served with any config: browsers ask every origin, not only the demo's pages.
    icon = await api.client.get("/favicon.ico")
    assert (icon.status_code, icon.content) == (204, b"")
    assert icon.headers["cache-control"] == "public, max-age=86400"
