"""GET /api/catalog/names: the names the dashboard shows, and nothing else of the config."""

from __future__ import annotations

from pathlib import Path

from app.config.tokens import hash_token
from tests.conftest import ADMIN_TOKEN, CID, OTHER_CID, PID, TEST_CONFIG
from tests.test_reload import reload, serving_on

PARTNER_TOKEN = "partner-token-0123456789"
NAMED = TEST_CONFIG.replace(
    f'pid = "{PID}"\n', f'pid = "{PID}"\nname = "Comparison partner"\n', 1) + f"""
[[sources]]
pid = "src_secret"
name = "Another partner"
postback_url = "https://other.example/cb?c={{external_clickid}}"

[[tokens]]
name = "partner desk"
token = "{hash_token(PARTNER_TOKEN)}"
role = "partner"
pid = "{PID}"
"""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_names_of_campaigns_and_sources_without_their_settings(
    tmp_path: Path, db: str
) -> None:
    async with serving_on(tmp_path, NAMED, db) as (client, _):
        response = await client.get("/api/catalog/names", headers=_auth(ADMIN_TOKEN))
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["role"], data["pid"], data["currency"]) == ("admin", None, "USD")
        assert data["campaigns"][0] == {"cid": CID, "name": "Auto insurance quotes"}
        assert {"cid": OTHER_CID, "name": ""} in data["campaigns"]
        assert data["sources"] == [
            {"pid": PID, "name": "Comparison partner"}, {"pid": "src_fixed", "name": ""},
            {"pid": "src_paused", "name": ""}, {"pid": "src_secret", "name": "Another partner"}]
        assert "other.example" not in response.text


async def test_a_partner_learns_its_own_source_only(tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, NAMED, db) as (client, _):
        data = (await client.get("/api/catalog/names",
                                 headers=_auth(PARTNER_TOKEN))).json()["data"]
        assert (data["role"], data["pid"]) == ("partner", PID)
        assert data["sources"] == [{"pid": PID, "name": "Comparison partner"}]
        assert data["campaigns"][0]["name"] == "Auto insurance quotes"


async def test_a_reload_renames(tmp_path: Path, db: str) -> None:
    async with serving_on(tmp_path, NAMED, db) as (client, path):
        path.write_text(NAMED.replace("Comparison partner", "Quotes partner"))
        assert (await reload(client)).status_code == 200
        data = (await client.get("/api/catalog/names",
                                 headers=_auth(PARTNER_TOKEN))).json()["data"]
        assert data["sources"] == [{"pid": PID, "name": "Quotes partner"}]


async def test_names_say_where_the_catalog_is_kept_and_follow_its_changes(
    tmp_path: Path, db: str
) -> None:
    (tmp_path / "file").mkdir()
    async with serving_on(tmp_path / "file", NAMED, db) as (client, _):
        data = (await client.get("/api/catalog/names", headers=_auth(ADMIN_TOKEN))).json()
        assert data["data"]["catalog"] == "file"
    in_database = NAMED.replace("[server]\n", '[server]\ncatalog = "database"\n', 1)
    async with serving_on(tmp_path, in_database, db) as (client, path):
        created = await client.put("/api/sources/src_new", json={"name": "New partner"},
                                   headers={**_auth(ADMIN_TOKEN), "If-Match": '"1"'})
        assert created.status_code == 201, created.text
        path.write_text(in_database.replace("Comparison partner", "Quotes partner"))
        assert (await reload(client)).status_code == 200
        data = (await client.get("/api/catalog/names",
                                 headers=_auth(ADMIN_TOKEN))).json()["data"]
        assert data["catalog"] == "database"
        # The database's catalog stays in force: the file's rename is not taken.
        assert {"pid": "src_new", "name": "New partner"} in data["sources"]
        assert {"pid": PID, "name": "Comparison partner"} in data["sources"]
