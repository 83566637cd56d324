"""The command line explains itself: its version, every flag's default, what a config holds."""

from __future__ import annotations

import argparse
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from app.config.schema import ServerConfig
from app.serve.cli import _parser, main

ROOT = Path(__file__).resolve().parent.parent

ONE_OF_EACH = """
[[sources]]
pid = "organic"
postback_url = "https://partner.example/cb?c={conversion_id}"

[[campaigns]]
cid = "cmp_a"

[[campaigns.events]]
event_id = "sale"
conversion = true
"""

SEVERAL = """
[[sources]]
pid = "src_a"
postback_url = "https://a.example/cb?c={conversion_id}"

[[sources]]
pid = "src_b"

[[campaigns]]
cid = "cmp_a"
postbacks = [{ url = "https://buyer.example/pb?t={transaction_id}" }]
events = [{ event_id = "view" }, { event_id = "sale", conversion = true }]

[[campaigns]]
cid = "cmp_b"
events = [{ event_id = "a" }, { event_id = "b" }, { event_id = "c", conversion = true }]
"""


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "my.toml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 0
    return capsys.readouterr().out.replace(str(path), "my.toml")


@pytest.mark.parametrize(("text", "expected"), [
    ("", "my.toml: ok (0 campaigns, 1 source, 0 events, 0 postbacks)\n"),
    (ONE_OF_EACH, "my.toml: ok (1 campaign, 1 source, 1 event, 1 postback)\n"
                  "warning: campaign cmp_a accepts conversions from anyone\n"),
    (SEVERAL, "my.toml: ok (2 campaigns, 3 sources, 5 events, 2 postbacks)\n"
              "warning: campaign cmp_a accepts conversions from anyone\n"
              "warning: campaign cmp_b accepts conversions from anyone\n"),
], ids=["empty", "one-of-each", "several"])
def test_check_config_counts_what_the_config_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # organic is a source whether it is listed or not, and counted once.
    assert _check(tmp_path, text, capsys) == expected


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"event-postback {project['version']}\n"


def _subparser(name: str) -> argparse.ArgumentParser:
    [commands] = [action for action in _parser()._actions
                  if isinstance(action, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def test_every_serve_flag_has_help_and_states_its_default() -> None:
    server = ServerConfig()
    helps = {action.dest: action.help or "" for action in _subparser("serve")._actions
             if action.dest != "help"}
    assert set(helps) == {"config", "db", "host", "port", "durability", "workers",
                          "log_level"}
    for name in ("db", "host", "port", "durability"):
        assert helps[name].endswith(f"(default: {getattr(server, name)})"), name
    assert helps["config"].endswith("(default: the built-in demo config)")
    assert helps["log_level"].endswith("(default: %(default)s)")
    assert helps["workers"].endswith("(default: %(default)s)")


def _help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_serve_help_shows_the_server_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ServerConfig()
    text = " ".join(_help(monkeypatch, capsys, "serve").split())
    for value in (server.host, server.port, server.db, server.durability, "info"):
        assert f"(default: {value})" in text


def test_the_manual_command_line_section_is_the_help_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manual = (ROOT / "docs" / "configuration.md").read_text()
    section = manual.split("## Command line\n", 1)[1].split("\n## ", 1)[0]
    for argv in ((), ("serve",), ("check-config",), ("conversions",), ("report",)):
        command = " ".join(("event-postback", *argv, "--help"))
        shown = f"$ {command}\n{_help(monkeypatch, capsys, *argv)}"
        assert shown in section, f"docs/configuration.md's Command line section lacks `{command}`"
    assert f"$ event-postback --version\nevent-postback {version('event-postback')}\n" in section
