"""The TOML contract: what loads, and the one-line diagnosis for what does not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.config.money_rules import FixedPayout, PercentPayout
from app.config.schema import (
    ConfigError,
    demo_config,
    load_config,
    with_server_overrides,
)
from app.serve.cli import main

FULL = """
[server]
host = "0.0.0.0"
port = 9000
db = "x.db"
durability = "write-behind"
flush_ms = 20
lock_seconds = 1.5
admin_token = "t0ken"
max_actors = 500
max_pending_writes = 100

[[sources]]
pid = "src_abc123"
active = true
payout = { type = "percent", value = 50 }

[[sources]]
pid = "src_fixed"
payout = { type = "fixed", value = 12.5 }

[[campaigns]]
cid = "cmp_9z8y7x6w"
name = "Auto insurance quotes"
landing_url = "https://example.com/quote?tid={transaction_id}"

[[campaigns.events]]
event_id = "quote_viewed"
conversion = false
allow_duplicates = false

[[campaigns.events]]
event_id = "sale_completed"
conversion = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_full_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.server.durability == "write-behind"
    assert config.server.lock_seconds == 1.5
    assert config.sources[0].payout == PercentPayout(value=Decimal(50))
    assert config.sources[1].payout == FixedPayout(value=Decimal("12.5"))
    assert [e.event_id for e in config.campaigns[0].events] == ["quote_viewed",
                                                                "sale_completed"]
    assert config.campaigns[0].events[1].conversion is True


def test_every_key_is_optional(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert (config.server.port, config.server.durability, config.server.flush_ms,
            config.server.lock_seconds, config.server.admin_token) == (
        8000, "commit", 5, 2.0, None)


def test_demo_config_holds_the_seed_examples() -> None:
    config = demo_config()
    [campaign] = config.campaigns
    assert campaign.cid == "cmp_9z8y7x6w"
    assert {(e.event_id, e.conversion) for e in campaign.events} == {
        ("quote_viewed", False), ("sale_completed", True)}
    assert [(s.pid, s.active) for s in config.sources] == [("src_abc123", True)]


BROKEN = [
    ("[server]\nprot = 1\n", "server: Object contains unknown field `prot`"),
    ("[server]\nport = \"eighty\"\n", "server.port: Expected `int`, got `str`"),
    ("[server]\nport = 70000\n", "server.port: Expected `int` <= 65535"),
    ("[server]\ndurability = \"sometimes\"\n",
     "server.durability: Invalid enum value 'sometimes'"),
    ("[server]\nadmin_token = \"  \"\n", "server.admin_token: must not be empty"),
    ("[[sources]]\npid = \"a\"\n[[sources]]\npid = \"a\"\n",
     "sources[1].pid: duplicate pid 'a' (also sources[0])"),
    ("[[sources]]\npid = \"a\"\npayout = { type = \"bonus\", value = 1 }\n",
     "sources[0].payout.type: Invalid value 'bonus'"),
    ("[[sources]]\npid = \"a\"\npayout = { type = \"percent\" }\n",
     "sources[0].payout: Object missing required field `value`"),
    ("[[sources]]\npid = \"a\"\npayout = { type = \"percent\", value = 150 }\n",
     "sources[0].payout.value: a percent payout must be between 0 and 100"),
    ("[[sources]]\npid = \"a\"\npayout = { type = \"fixed\", value = -1 }\n",
     "sources[0].payout.value: must be a finite number >= 0"),
    ("[[sources]]\npid = \"a\"\npayout = { type = \"fixed\", value = 1000000000000.01 }\n",
     "sources[0].payout.value: must not be more than 1000000000000"),
    ("[[sources]]\npid = \"organic\"\nactive = false\n",
     "sources[0].active: the organic source is always active"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns]]\ncid = \"a\"\n",
     "campaigns[1].cid: duplicate cid 'a' (also campaigns[0])"),
    ("[[campaigns]]\ncid = \"trigger\"\n",
     "campaigns[0].cid: 'trigger' is reserved by the API's routes"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.events]]\nevent_id = \"e\"\n"
     "[[campaigns.events]]\nevent_id = \"e\"\n",
     "campaigns[0].events[1].event_id: duplicate event_id 'e' in campaign 'a'"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.events]]\nevent_id = \"e\"\nconversion = \"yes\"\n",
     "campaigns[0].events[0].conversion: Expected `bool`, got `str`"),
    ("[[campaigns]]\ncid = \"a\"\nlanding_url = \"/relative\"\n",
     "campaigns[0].landing_url: must be an absolute http(s) URL"),
    ("[[campaigns]]\ncid = \"a\"\nlanding_url = \"https://x.example/?t={tid}\"\n",
     "campaigns[0].landing_url: unknown macro {tid}"),
    ("[[campaigns]]\ncid = \"\"\n", "campaigns[0].cid: Expected `str` of length >= 1"),
    ("[server\nport = 1\n", "TOML syntax: Expected ']' at the end of a table declaration"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.postbacks]]\nurl = \"https://b.example/?x={nope}\"\n",
     "campaigns[0].postbacks[0].url: unknown macro {nope}"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.postbacks]]\nurl = \"https://{sub1}.example/\"\n",
     "campaigns[0].postbacks[0].url: macros may not appear in the host"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.postbacks]]\nurl = \"ftp://b.example/\"\n",
     "campaigns[0].postbacks[0].url: must be an absolute http(s) URL"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.postbacks]]\nurl = \"https://b.example/\"\n"
     "events = [\"sold\"]\n",
     "campaigns[0].postbacks[0].events: 'sold' is not an event of campaign 'a'"),
    ("[[campaigns]]\ncid = \"a\"\n[[campaigns.postbacks]]\nurl = \"https://b.example/\"\n"
     "method = \"PUT\"\n",
     "campaigns[0].postbacks[0].method: Invalid enum value 'PUT'"),
    ("[[sources]]\npid = \"s\"\npostback_url = \"https://p.example/?n={first_name}\"\n",
     "sources[0].postback_url: unknown macro {first_name}"),
    ("[delivery]\nper_host = 10\nconcurrency = 5\n",
     "delivery.per_host: must not be more than concurrency"),
    ("[delivery]\nfirst_retry_seconds = 10\nmax_retry_seconds = 5\n",
     "delivery.max_retry_seconds: must not be less than first_retry_seconds"),
    ("[delivery]\ntimeout_seconds = 0\n", "delivery.timeout_seconds: Expected `float` > 0.0"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_config_error_is_one_line_naming_file_place_and_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}"), message


def test_declared_lead_fields_may_be_used_as_macros(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
lead_fields = ["first_name"]
[[sources]]
pid = "s"
postback_url = "https://p.example/?n={first_name}&s={sub1}&t={transaction_id}"
"""))
    assert config.sources[0].postback_url is not None


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")


def test_command_line_overrides_are_checked_like_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    changed = with_server_overrides(config, "command line", port=1234, durability="commit",
                                    host=None)
    assert (changed.server.port, changed.server.durability, changed.server.host) == (
        1234, "commit", "0.0.0.0")
    with pytest.raises(ConfigError, match=r"^command line: server\.port: Expected `int` <= "):
        with_server_overrides(config, "command line", port=99999)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, FULL)
    assert main(["check-config", str(good)]) == 0
    assert capsys.readouterr().out == (
        f"{good}: ok (1 campaign, 3 sources, 2 events, 0 postbacks)\n"
        "warning: campaign cmp_9z8y7x6w accepts conversions from anyone\n")

    bad = tmp_path / "bad.toml"
    bad.write_text("[[sources]]\npid = \"a\"\n[[sources]]\npid = \"a\"\n")
    assert main(["check-config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"{bad}: sources[1].pid: duplicate pid 'a' (also sources[0])\n"
    assert captured.out == ""


def test_serve_with_a_broken_config_exits_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "[server]\nport = \"x\"\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}: server.port: Expected `int`")


def test_the_manual_config_example_is_a_valid_config(tmp_path: Path) -> None:
    manual = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    example = manual.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, example))
    assert config.lead_fields == ["first_name"]
    assert config.campaigns[0].postbacks[0].events == ["sale_completed"]
