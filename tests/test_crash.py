"""Smoke run of the crash campaign: one short kill -9 per mode; nothing is timed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Longer than the suite's per-test bound: a kill -9 cycle and a restart per mode.
pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by mode and flush_ms, e.g. ``commit`` or ``write-behind 5``."""
    table: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in ("commit", "write-behind"):
            table[f"{cells[0]} {cells[1]}".strip()] = cells
    return table


def test_a_kill_9_loses_and_doubles_nothing_acknowledged_in_commit_mode() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "loadtests" / "crash.py"), "--quick"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verdict: ok" in result.stdout
    table = rows(result.stdout)
    _, _, cycles, acknowledged, lost, doubled, _, kept, _ = table["commit"]
    assert cycles == "1" and int(acknowledged.replace(",", "")) > 0
    assert (lost, doubled) == ("0", "0")
    assert int(kept.replace(",", "")) > 0  # conversions happened and their postbacks stayed
    assert table["write-behind 5"][5] == "0"  # doubled
