"""A config mistake is diagnosed with what would have been right: the close key, the
allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config.schema import ConfigError, demo_config, parse_config, with_server_overrides
from app.serve.cli import main

CAMPAIGN = '[[campaigns]]\ncid = "c"\n[[campaigns.events]]\nevent_id = "e"\n'


def _diagnosis(text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, origin="my.toml")
    return str(raised.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("[server]\nprot = 8000\n",
     "my.toml: server: Object contains unknown field `prot` (did you mean `port`?)"),
    ("[sever]\nport = 8000\n",
     "my.toml: top level: Object contains unknown field `sever` (did you mean `server`?)"),
    (CAMPAIGN + "conversoin = true\n",
     "my.toml: campaigns[0].events[0]: Object contains unknown field `conversoin`"
     " (did you mean `conversion`?)"),
    ('[[sources]]\npid = "s"\npayout = { type = "percent", vlue = 40 }\n',
     "my.toml: sources[0].payout: Object contains unknown field `vlue`"
     " (did you mean `value`?)"),
    ("[delivery]\nmax_attemps = 3\n",
     "my.toml: delivery: Object contains unknown field `max_attemps`"
     " (did you mean `max_attempts`?)"),
])
def test_an_unknown_key_names_the_close_one(text: str, expected: str) -> None:
    assert _diagnosis(text) == expected


def test_an_unknown_key_with_nothing_close_gets_no_guess() -> None:
    assert _diagnosis("[server]\nzzzzzz = 1\n") == (
        "my.toml: server: Object contains unknown field `zzzzzz`")


@pytest.mark.parametrize(("text", "expected"), [
    (CAMPAIGN + 'conversion = true\napproval = "manul"\n',
     "my.toml: campaigns[0].events[0].approval: Invalid enum value 'manul'"
     " (allowed: 'auto', 'manual'; did you mean 'manual'?)"),
    ('[server]\ndurability = "comit"\n',
     "my.toml: server.durability: Invalid enum value 'comit'"
     " (allowed: 'commit', 'write-behind'; did you mean 'commit'?)"),
    ('[[campaigns]]\ncid = "c"\nunknown_transactions = "ignore"\n',
     "my.toml: campaigns[0].unknown_transactions: Invalid enum value 'ignore'"
     " (allowed: 'create', 'reject')"),
])
def test_a_wrong_value_lists_the_allowed_ones(text: str, expected: str) -> None:
    assert _diagnosis(text) == expected


def test_other_problems_are_left_as_they_are() -> None:
    assert _diagnosis('[server]\nport = "x"\n') == (
        "my.toml: server.port: Expected `int`, got `str`")


def test_server_overrides_are_diagnosed_the_same_way() -> None:
    with pytest.raises(ConfigError) as raised:
        with_server_overrides(demo_config(), "command line", durability="comit")
    assert str(raised.value) == (
        "command line: server.durability: Invalid enum value 'comit'"
        " (allowed: 'commit', 'write-behind'; did you mean 'commit'?)")


def test_check_config_prints_the_guess(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "my.toml"
    path.write_text("[server]\nprot = 8000\n")
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: server: Object contains unknown field `prot` (did you mean `port`?)\n")
