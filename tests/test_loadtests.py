"""Smoke runs of the load test and the benchmark: the scripts work, nothing is timed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests import budget
from loadtests.cpu import CpuSplit, descendants
from loadtests.locust_stats import Totals, percentile_ms, progress_line, totals
from tests.pg_cluster import ClusterUnavailable, binaries

# Longer than the suite's per-test bound: the bench and locust smoke runs serve several times.
pytestmark = pytest.mark.timeout(420)

ROOT = Path(__file__).resolve().parent.parent


def test_locust_scenario_runs_without_failures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "run_loadtest.py"), "--duration", "4s",
         "--users", "6", "--spawn-rate", "6", "--out", str(tmp_path),
         "--progress-every", "1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "loadtest_stats.csv").exists()
    assert (tmp_path / "loadtest.html").exists()
    assert re.search(r"^\[ +\d+ s\] [\d,]+ requests, 0 failures", result.stdout, re.M)
    # The verdict counts what locust's final stats count.
    final = totals(json.loads((tmp_path / "loadtest.json").read_text()))
    assert final.requests > 0
    assert f"\n{final.requests} requests, 0 failures (0.00%)" in result.stdout


def test_progress_is_read_from_the_aggregated_row_and_waits_for_a_whole_file(
    tmp_path: Path,
) -> None:
    stats = tmp_path / "loadtest_stats.csv"
    assert progress_line(stats) is None
    header = "Type,Name,Request Count,Failure Count,Requests/s\n"
    stats.write_text(header + "POST,view,7,1,3.5\n,Aggregated,1200,3,41.6\n")
    assert progress_line(stats) == "1,200 requests, 3 failures, 42 requests/s"
    stats.write_text(header + "POST,view,7,1,3.5\n,Aggreg")
    assert progress_line(stats) is None


def test_totals_sum_every_endpoint_and_an_empty_run_fails() -> None:
    found = totals([{"num_requests": 990, "num_failures": 9},
                    {"num_requests": 10, "num_failures": 2}])
    assert found == Totals(1000, 11)
    assert found.failure_ratio == 0.011
    assert Totals(0, 0).failure_ratio == 1.0


def test_percentiles_come_from_locusts_response_time_buckets() -> None:
    times = {"2": 50, "3": 40, "90": 9, "400": 1}
    assert [percentile_ms(times, share) for share in (0.5, 0.9, 0.99, 1.0)] == [
        2, 3, 90, 400]


@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed: `make wrk` (or .ci/run) installs it")
def test_bench_runs_every_scenario(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / "bench.py"), "--quick", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "bench-latest.json").read_text())
    for scenario in ("A", "B", "B@100/s", "B@200/s", "B@256c", "C", "S", "SR", "D", "E", "R",
                     "R-sub1", "R-sub1r", "RE"):
        assert report[scenario]["requests"] > 0, scenario
    # By sub1 from roll-ups (after a restart that counted them) as from the rows: the same
    # month, the same figures.
    assert report["R-sub1r"]["startup_s"] > 0
    assert report["R-sub1r"]["events"] == report["R-sub1"]["events"] > 0
    assert report["R-sub1r"]["clicks"] == report["R-sub1"]["clicks"] > 0
    # Every sale answered 200: no cap reached, no lead a duplicate of another.
    assert report["S"]["errors"] == report["SR"]["errors"] == 0
    assert report["E"]["transactions"] == 30_000
    # Events beside reports: measured both ways, with the reports answered or refused.
    beside = report["RE"]
    assert beside["p99_alone"] > 0 and beside["errors"] == 0
    assert sum(beside["reports"].values()) > 0
    assert set(beside["reports"]) <= {"200", "503"}  # status codes, as JSON keys
    assert "RE event p99 with 3 report clients" in result.stdout
    try:
        binaries()
    except ClusterUnavailable:  # the rows are left out without PostgreSQL
        assert "P1" not in report
    else:
        for name in ("P1", "P2"):
            assert report[name]["requests"] > 0
            # Where the cores went, and the batches each process committed.
            assert report[name]["cpu_us_per_event"]["service"] > 0
            assert report[name]["cpu_us_per_event"]["postgres"] > 0
            assert report[name]["mean_batch"] >= 1
    assert "| scenario | requests/s |" in result.stdout
    # The per-request budget of each mode: every stage measured, adding up to the loop's.
    for durability in ("write-behind", "commit"):
        measured = report["_budget"][durability]
        stages = measured["stages_us"]
        assert set(stages) == set(budget.STAGES)
        assert all(value >= 0 for value in stages.values())
        assert sum(stages.values()) == pytest.approx(measured["loop_us"])
        assert stages["decode_and_checks"] > 0 and stages["actor"] > 0
        assert f"budget, us per event request ({durability}): HTTP " in result.stdout


def test_the_cpu_split_charges_each_process_tree_its_own_cpu() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    # A parent whose child burns, then stays (as workers and database backends do): the
    # tree is charged, not only its root.
    child = f"{burn}\ntime.sleep(30)"
    tree = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run("
                             f"[sys.executable, '-c', {child!r}])"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for _ in range(500):
            if len(descendants(tree.pid)) == 2:
                break
            time.sleep(0.01)
        with CpuSplit({"burner": tree.pid, "idle": idle.pid}) as split:
            subprocess.run([sys.executable, "-c", burn], check=True)  # a child of ours
            time.sleep(0.5)
    finally:
        for process in (tree, idle):
            for pid in reversed(descendants(process.pid)):
                os.kill(pid, signal.SIGKILL)
            process.wait()
    assert split.seconds["burner"] >= 0.2
    assert split.seconds["load generator"] >= 0.25
    assert split.seconds["idle"] < 0.1
    assert 0 < split.busy <= split.capacity
    assert split.per_event_us(1000)["burner"] == round(split.seconds["burner"] * 1000, 1)
