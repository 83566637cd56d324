"""Smoke runs of the load test and the benchmark: the scripts work, nothing is timed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_locust_scenario_runs_without_failures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run_loadtest.py"), "--duration", "4s",
         "--users", "6", "--spawn-rate", "6", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "loadtest_stats.csv").exists()
    assert (tmp_path / "loadtest.html").exists()
    assert " 0 failures" in result.stdout


@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed (make wrk, or .ci/run, installs it)")
def test_bench_runs_every_scenario(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "bench.py"), "--quick", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "bench-latest.json").read_text())
    for scenario in ("A", "B", "B@100/s", "B@200/s", "B@256c", "C", "D", "E"):
        assert report[scenario]["requests"] > 0, scenario
    assert report["E"]["transactions"] == 30_000
    assert "| scenario | requests/s |" in result.stdout
