"""The manual: a short README that leads into docs/, a site that builds, a Try it that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import markdown
import pytest

from tests.served import Served

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DEMO_URL = "http://127.0.0.1:8000"
DEMO_TOKEN = {"Authorization": "Bearer change-me"}

# [text](target) and ![alt](target), outside code; the target ends at a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
TRANSACTION_ID = re.compile(r"\btxn_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _links(text: str) -> list[str]:
    """Every link target of a Markdown text, leaving out code blocks and code spans."""
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    return LINK.findall(prose)


def _anchors(path: Path) -> set[str]:
    """The ids Python-Markdown's toc extension (as mkdocs runs it) gives the headings."""
    md = markdown.Markdown(extensions=["toc", "fenced_code", "tables", "attr_list"])
    md.convert(path.read_text())
    found: set[str] = set()

    def walk(tokens: list[dict[str, Any]]) -> None:
        for token in tokens:
            found.add(token["id"])
            walk(token["children"])

    walk(md.toc_tokens)  # type: ignore[attr-defined]
    return found


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_a_short_guide() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the manual is in docs/"


def test_every_readme_link_leads_to_a_file_and_heading_and_every_page_is_linked() -> None:
    targets = _links(README.read_text())
    assert targets, "the README links to nothing"
    linked: set[Path] = set()
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check
        path_part, _, anchor = target.partition("#")
        path = (ROOT / path_part).resolve() if path_part else README
        assert path.is_file(), f"README.md links to {target}: no such file"
        linked.add(path)
        if anchor:
            assert anchor in _anchors(path), f"README.md links to {target}: no such heading"
    pages = set(DOCS.glob("*.md"))
    assert pages, "docs/ holds no pages"
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr
    for page in DOCS.glob("*.md"):
        name = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (tmp_path / "site" / name).is_file(), f"{page.name} was not built"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)  # no --config: the built-in demo, as `make serve` runs it
    yield server
    if server.process.poll() is None:
        server.signal(signal.SIGTERM)
    server.wait()


def test_the_try_it_block_runs_against_the_demo(demo: Served, tmp_path: Path) -> None:
    blocks = re.findall(r"^```sh\n(.*?)^```", _section(README.read_text(), "## Try it"),
                        re.MULTILINE | re.DOTALL)
    assert blocks, "the README's Try it section has no sh block"
    script = "\n".join(blocks)
    assert DEMO_URL in script
    assert not re.search(r"TXN=txn_", script), "Try it must capture the id, not name one"
    # python3 is the interpreter running the suite, as it is the one beside `make serve`.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    ran = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script.replace(DEMO_URL, demo.url)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": path},
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    minted = set(TRANSACTION_ID.findall(ran.stdout))
    assert len(minted) == 1, f"one transaction id expected in:\n{ran.stdout}"
    transaction_id = minted.pop()
    assert '"conversion":true' in ran.stdout, ran.stdout
    # The id the block captured is one the service minted, with the block's events.
    stored = httpx.get(f"{demo.url}/api/transactions/{transaction_id}", headers=DEMO_TOKEN)
    assert stored.status_code == 200, stored.text
    events = stored.json()["data"]["events"]
    assert [event["event_id"] for event in events] == ["quote_viewed", "sale_completed"]
    assert (events[1]["revenue"], events[1]["payout"]) == ("45.00", "22.50")
    # The block sends the demo's event token: its sale is approved, not held.
    assert events[1]["status"] == "approved"
