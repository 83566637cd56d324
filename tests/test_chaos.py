"""Short run of the chaos campaign: one fault of each kind on two nodes sharing one
PostgreSQL; nothing acknowledged lost or doubled, no 500, no postback sent twice without a
node dying or freezing in the middle of it. Nothing is timed: ``--quick`` reports the
slowest request but leaves its bound to ``make chaos``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import no_postgres
from tests.pg_cluster import ClusterUnavailable, binaries

# Longer than the suite's per-test bound: a cluster, two nodes, five faults, and the
# postbacks let through at the end.
pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by fault kind."""
    table: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in ("calm", "freeze", "kill", "pg-restart", "pg-freeze", "hup"):
            table[cells[0]] = cells
    return table


def test_two_nodes_lose_double_and_fail_nothing_through_one_fault_of_each_kind() -> None:
    try:
        binaries()
    except ClusterUnavailable as exc:
        no_postgres(exc, os.environ)
    result = subprocess.run([sys.executable, str(ROOT / "loadtests" / "chaos.py"), "--quick"],
                            capture_output=True, text=True, timeout=220)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED:")]
    assert failed == [], result.stdout[-4000:] + result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "verdict: ok" in result.stdout
    table = rows(result.stdout)
    for kind in ("freeze", "kill", "pg-restart", "pg-freeze", "hup"):
        _, injected, _, lost, doubled, _, errors_500, _, _ = table[kind]
        assert injected == "1", kind
        assert (lost, doubled, errors_500) == ("0", "0", "0"), kind
    assert sum(int(row[2].replace(",", "")) for row in table.values()) > 0
