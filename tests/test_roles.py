"""Roles and tokens: every route behind a token answers 403 to a role below its own.

The table is the OpenAPI document's own (app/routes/operations.py): every admin route
names its least role there, and each is called here with a token of every role, so a
route whose handler checks another role, or a new route that names none, fails.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from app.config.schema import ConfigError, parse_config, with_server_overrides
from app.config.tokens import hash_token
from app.observe.logs import merge_request_fields
from app.routes.access import RANK
from app.routes.operations import operations
from tests.conftest import ADMIN_TOKEN, CID, PID, Harness, running, running_on

TOKENS = {role: f"{role}-token-0123456789abcdef" for role in RANK}
CONFIG = f"""
[server]
admin_token = "{ADMIN_TOKEN}"

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "sale"
conversion = true
""" + "".join(f"""
[[tokens]]
name = "{role} desk"
token = "{hash_token(token)}"
role = "{role}"
""" + (f'pid = "{PID}"\n' if role == "partner" else "") for role, token in TOKENS.items())
SAMPLE = {"postback_id": "1", "conversion_id": "conv_x", "transaction_id": "txn_x", "cid": CID,
          "pid": PID, "version": "1",
          "name": "buyer.example/pb"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    config = with_server_overrides(parse_config(CONFIG, origin="roles"), "test",
                                   db=str(tmp_path / "roles.db"))
    async with running(config) as harness:
        yield harness


def _routes() -> list[tuple[str, str, str, bool]]:
    found = []
    for path, methods in operations(demo=False).items():
        for method, op in methods.items():
            if op.admin:
                assert op.role is not None, f"{method.upper()} {path} names no role"
                url = path.format(**{name: SAMPLE[name] for name in SAMPLE
                                     if f"{{{name}}}" in path})
                found.append((method, url, op.role, op.partner))
    return found


ROUTES = _routes()


@pytest.mark.parametrize(("method", "url", "least", "partner"), ROUTES,
                         ids=[f"{method} {url}" for method, url, _, _ in ROUTES])
async def test_each_role_below_the_routes_own_gets_403(
    api: Harness, method: str, url: str, least: str, partner: bool
) -> None:
    for role, token in TOKENS.items():
        kwargs = {"json": {}} if method == "post" else {}
        response = await api.client.request(
            method.upper(), url, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        reaches = partner if role == "partner" else RANK[role] >= RANK[least]  # type: ignore[index]
        if reaches:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert response.json()["code"] == "forbidden"


def test_the_route_table_gives_every_role_something_to_refuse() -> None:
    """The reads are a viewer's, the changes an operator's, backups and reloads an admin's."""
    least = {(method, url): role for method, url, role, _ in ROUTES}
    assert least[("get", "/api/reports")] == "viewer"
    assert least[("post", "/api/conversions/conv_x/approve")] == "operator"
    assert least[("post", "/api/admin/reload")] == "admin"


async def test_a_token_not_configured_is_401_and_the_caller_is_on_the_log_line(
    api: Harness
) -> None:
    wrong = await api.client.get("/api/caps", headers={"Authorization": "Bearer nope-" * 4})
    assert wrong.status_code == 401
    with capture_logs(processors=[merge_request_fields]) as logs:
        await api.client.get("/api/caps",
                             headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
        await api.client.post("/api/admin/backup",
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert [line.get("token") for line in logs if line["event"] == "request"] == [
        "viewer desk", "admin_token"]
    # The token itself is never logged, nor its hash.
    assert not any(TOKENS["viewer"] in str(line) or hash_token(TOKENS["viewer"]) in str(line)
                   for line in logs)


@pytest.mark.parametrize(("entry", "diagnosis"), [
    ('name = "a"\ntoken = "plain-text-token-123456"\nrole = "viewer"',
     "tokens[0].token: must be the token's hash"),
    (f'name = "a"\ntoken = "{hash_token("x" * 20)}"\nrole = "partner"',
     "tokens[0].pid: a partner token names the source it sees"),
    (f'name = "a"\ntoken = "{hash_token("x" * 20)}"\nrole = "viewer"\npid = "{PID}"',
     "tokens[0].pid: only a partner token is limited to one source"),
    (f'name = "a"\ntoken = "{hash_token("x" * 20)}"\nrole = "partner"\npid = "nope"',
     "tokens[0].pid: 'nope' is not a configured source"),
])
def test_a_token_entry_that_breaks_a_rule_is_named(entry: str, diagnosis: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(f'[[sources]]\npid = "{PID}"\n[[tokens]]\n{entry}\n', origin="t")
    assert diagnosis in str(raised.value)


def test_hash_token_prints_the_line_the_config_keeps() -> None:
    token = "a-token-of-the-desk-0123456789"
    done = subprocess.run([sys.executable, "-m", "app", "hash-token", "-"], input=token,
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, hash_token(token) + "\n")
    short = subprocess.run([sys.executable, "-m", "app", "hash-token", "short"],
                           capture_output=True, text=True, check=False)
    assert short.returncode == 2 and "16 to 255" in short.stderr


OTHER = "src_other"
PARTNER_CONFIG = CONFIG.replace(f'[[sources]]\npid = "{PID}"\n', f"""[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "http://127.0.0.1:9/partner?c={{conversion_id}}"

[[sources]]
pid = "{OTHER}"
""").replace('conversion = true\n', 'conversion = true\n\n[[campaigns.postbacks]]\n'
             'url = "http://127.0.0.1:9/buyer?rev={revenue}"\n', 1)


@pytest.mark.both_stores
async def test_a_partner_sees_only_its_source_and_never_the_revenue(
    tmp_path: Path, backend: pytest.FixtureRequest
) -> None:
    config = with_server_overrides(parse_config(PARTNER_CONFIG, origin="roles"), "test",
                                   db=str(tmp_path / "roles.db"))
    async with running_on(backend, config) as api:
        own, other = [], []
        for pid, kept in ((PID, own), (OTHER, other), (PID, own)):
            transaction_id = await api.click(pid=pid)
            fired = await api.fire(transaction_id, "sale", pid=pid, revenue="80")
            kept.append(fired.json()["data"]["conversion_id"])
        partner = {"Authorization": f"Bearer {TOKENS['partner']}"}
        viewer = {"Authorization": f"Bearer {TOKENS['viewer']}"}

        listed = (await api.client.get("/api/conversions", headers=partner,
                                       params={"pid": OTHER})).json()["data"]["conversions"]
        assert sorted(c["conversion_id"] for c in listed) == sorted(own)
        assert all(c["payout"] == "40.00" and "revenue" not in c for c in listed), listed
        shown = await api.client.get(f"/api/conversions/{own[0]}", headers=partner)
        assert shown.status_code == 200 and "revenue" not in shown.json()["data"]
        hidden = await api.client.get(f"/api/conversions/{other[0]}", headers=partner)
        assert (hidden.status_code, hidden.json()["message"]) == (404, "Conversion not found")

        everyone = (await api.client.get("/api/postbacks", headers=viewer)).json()["data"]
        assert {p["kind"] for p in everyone} == {"buyer", "source"}
        seen = (await api.client.get("/api/postbacks", headers=partner)).json()["data"]
        assert len(seen) == 2 and {(p["kind"], p["pid"]) for p in seen} == {("source", PID)}
        [buyer] = [p for p in everyone if p["kind"] == "buyer"][:1]
        refused = await api.client.get(f"/api/postbacks/{buyer['id']}", headers=partner)
        assert refused.status_code == 404
        # Its own numbers, whatever pid it asks for, with the buyer's money left empty.
        day = api.clock.now().date().isoformat()
        query = {"from": day, "to": day, "group_by": "pid", "pid": OTHER}
        report = (await api.client.get("/api/reports", headers=partner,
                                       params=query)).json()["data"]
        [row] = report["rows"]
        assert (row["pid"], row["conversions"], row["net_payout"]) == (PID, 2, "80.00")
        assert row["revenue"] is None and row["profit"] is None and row["roi"] is None
        assert report["totals"]["net_revenue"] is None
        full = (await api.client.get("/api/reports", headers=viewer, params=query | {
            "pid": [PID, OTHER]})).json()["data"]
        assert full["totals"]["revenue"] == "240.00"
        csv = await api.client.get("/api/reports", headers=partner,
                                   params=query | {"format": "csv"})
        assert "160.00" not in csv.text and "80.00" in csv.text
        # Everything else stays out of reach.
        assert (await api.client.get("/api/caps", headers=partner)).status_code == 403
