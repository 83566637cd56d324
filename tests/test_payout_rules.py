"""Payout rules per offer: the most specific rule prices each conversion, and says so."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.config.schema import ConfigError, parse_config
from storage.money import percent_of, round_money
from tests.conftest import ADMIN_TOKEN, running_on
from tests.test_reload import reload, serving_on

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CID = "cmp_rules"
PIDS = ("src_a", "src_b", "src_c")
EVENTS = ("sale", "upsell", "renewal")
SEEDS = range(5)


LEVELS = ("campaign+source+event", "campaign+source", "campaign+event", "campaign",
          "source", "none")


def reference_payout(rules: list[dict[str, Any]], sources: dict[str, Any], pid: str,
                     event_id: str, revenue: Decimal) -> tuple[str | None, str | None, str]:
    """The payout, rule name and precedence level, by the manual's list, written plainly."""
    wanted = ((pid, event_id), (pid, None), (None, event_id), (None, None))
    for level, (want_pid, want_event) in zip(LEVELS, wanted, strict=False):
        for rule in rules:
            if rule.get("pid") == want_pid and rule.get("event_id") == want_event:
                return _amount(rule["payout"], revenue), rule["name"], level
    if sources.get(pid) is not None:
        return _amount(sources[pid], revenue), "source", "source"
    return None, None, "none"


def _amount(payout: dict[str, Any], revenue: Decimal) -> str:
    value = Decimal(payout["value"])
    if payout["type"] == "percent":
        return f"{percent_of(revenue, value)}"
    return f"{round_money(value)}"


def _toml_payout(payout: dict[str, Any]) -> str:
    return f'{{ type = "{payout["type"]}", value = {payout["value"]} }}'


def random_rules(seed: int) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """A config with a random subset of every kind of rule, and the rules as data."""
    chooser = random.Random(seed)

    def payout() -> dict[str, Any]:
        if chooser.random() < 0.5:
            return {"type": "percent", "value": f"{chooser.randint(0, 10000) / 100}"}
        return {"type": "fixed", "value": f"{chooser.randint(0, 100000) / 1000}"}

    sources = {pid: payout() if chooser.random() < 0.6 else None for pid in PIDS}
    rules = []
    for pid in (*PIDS, None):
        for event_id in (*EVENTS, None):
            if chooser.random() < 0.6:
                name = f"r{len(rules)}" if chooser.random() < 0.5 else None
                rules.append({"pid": pid, "event_id": event_id, "payout": payout(),
                              "name": name})
    text = f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n'
    for pid, paid in sources.items():
        text += f'\n[[sources]]\npid = "{pid}"\n'
        if paid is not None:
            text += f"payout = {_toml_payout(paid)}\n"
    text += f'\n[[campaigns]]\ncid = "{CID}"\n'
    for event_id in EVENTS:
        text += f'\n[[campaigns.events]]\nevent_id = "{event_id}"\nconversion = true\n'
    for rule in rules:
        text += "\n[[campaigns.payouts]]\n"
        for key in ("pid", "event_id", "name"):
            if rule[key] is not None:
                text += f'{key} = "{rule[key]}"\n'
        text += f"payout = {_toml_payout(rule['payout'])}\n"
        if rule["name"] is None:
            filters = [f"{key}={rule[key]}" for key in ("pid", "event_id") if rule[key]]
            rule["name"] = " ".join(filters) or "campaign"
    return text, rules, sources


@pytest.mark.parametrize("seed", SEEDS)
async def test_each_conversion_is_priced_by_the_most_specific_rule(
        backend: pytest.FixtureRequest, tmp_path: Path, seed: int) -> None:
    text, rules, sources = random_rules(seed)
    config = parse_config(text.replace("[server]\n", f'[server]\ndb = "{tmp_path / "e.db"}"\n'),
                          origin="rules")
    chooser = random.Random(seed)
    async with running_on(backend, config) as api:
        for pid in (*PIDS, None):
            for event_id in EVENTS:
                revenue = Decimal(chooser.randint(1, 10_000_000)) / 100
                click = await api.client.post("/api/click", json={"cid": CID, "pid": pid or
                                                                  "src_a"})
                transaction_id = click.json()["data"]["transaction_id"]
                body = {"cid": CID, "event_id": event_id, "transaction_id": transaction_id,
                        "revenue": f"{revenue}"}
                if pid is not None:
                    body["pid"] = pid
                fired = await api.client.post("/api/event/trigger", json=body)
                assert fired.status_code == 200, fired.text
                conversion_id = fired.json()["data"]["conversion_id"]
                found = await api.client.get(f"/api/conversions/{conversion_id}",
                                             headers=AUTH)
                stored = found.json()["data"]
                want = reference_payout(rules, sources, pid or "organic", event_id, revenue)
                assert (stored.get("payout"), stored.get("payout_rule")) == want[:2], (
                    pid, event_id)
        # The transaction's own view names the rule too.
        events = (await api.view(transaction_id))["events"]
        assert events[-1]["payout_rule"] == want[1]


def test_the_random_configs_reach_every_level_of_the_precedence() -> None:
    """So the served test above covers each step of the list, and each pair of them."""
    reached: set[str] = set()
    for seed in SEEDS:
        _, rules, sources = random_rules(seed)
        reached |= {reference_payout(rules, sources, pid or "organic", event_id,
                                     Decimal(1))[2]
                    for pid in (*PIDS, None) for event_id in EVENTS}
    assert reached == set(LEVELS)


async def test_a_reload_changes_the_rule_that_prices_the_next_conversion(
        tmp_path: Path, db: str) -> None:
    base = (f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n'
            '[[sources]]\npid = "src_a"\npayout = { type = "fixed", value = 1 }\n'
            f'[[campaigns]]\ncid = "{CID}"\n'
            '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n')
    ruled = base + ('[[campaigns.payouts]]\npid = "src_a"\nname = "launch"\n'
                    'payout = { type = "percent", value = 10 }\n')
    async with serving_on(tmp_path, base, db) as (client, path):
        async def sale() -> dict[str, Any]:
            click = await client.post("/api/click", json={"cid": CID, "pid": "src_a"})
            fired = await client.post("/api/event/trigger", json={
                "cid": CID, "event_id": "sale", "pid": "src_a", "revenue": "250",
                "transaction_id": click.json()["data"]["transaction_id"]})
            conversion_id = fired.json()["data"]["conversion_id"]
            found = await client.get(f"/api/conversions/{conversion_id}", headers=AUTH)
            data: dict[str, Any] = found.json()["data"]
            return data

        before = await sale()
        assert (before["payout"], before["payout_rule"]) == ("1.00", "source")
        path.write_text(ruled)
        assert (await reload(client)).status_code == 200
        after = await sale()
        assert (after["payout"], after["payout_rule"]) == ("25.00", "launch")


@pytest.mark.parametrize(("rule", "problem"), [
    ('pid = "src_a"\nevent_id = "view"', "payouts[0].event_id: 'view' is not a conversion"
                                         " event of campaign 'cmp_rules'"),
    ('event_id = "nope"', "payouts[0].event_id: 'nope' is not an event of campaign"),
    ('pid = "src_z"', "payouts[0].pid: 'src_z' is not a source"),
])
def test_a_rule_must_name_a_conversion_event_and_a_source(rule: str, problem: str) -> None:
    text = ('[[sources]]\npid = "src_a"\n'
            f'[[campaigns]]\ncid = "{CID}"\n'
            '[[campaigns.events]]\nevent_id = "view"\n'
            '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n'
            f'[[campaigns.payouts]]\n{rule}\npayout = {{ type = "fixed", value = 1 }}\n')
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_config(text, origin="f")


def test_two_rules_with_the_same_filters_are_refused() -> None:
    text = (f'[[campaigns]]\ncid = "{CID}"\n'
            '[[campaigns.events]]\nevent_id = "sale"\nconversion = true\n'
            '[[campaigns.payouts]]\nevent_id = "sale"\npayout = { type = "fixed", value = 1 }\n'
            '[[campaigns.payouts]]\nevent_id = "sale"\npayout = { type = "fixed", value = 2 }\n')
    with pytest.raises(ConfigError, match=r"campaigns\[0\].payouts\[1\]: the same pid and "
                                          r"event_id as payouts\[0\]"):
        parse_config(text, origin="f")
