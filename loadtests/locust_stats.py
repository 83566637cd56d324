"""Reading locust's statistics: a progress line while it runs, the totals when it is done."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, NamedTuple


class Totals(NamedTuple):
    requests: int
    failures: int

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def progress_line(stats_csv: Path) -> str | None:
    """Requests and failures so far, from the ``_stats.csv`` locust rewrites every second.

    Good enough to watch a run, not to judge it: the last rewrite can miss the final
    second. None while the file is missing or half written.
    """
    try:
        with stats_csv.open() as handle:
            for row in csv.DictReader(handle):
                if row["Name"] == "Aggregated":
                    return (f"{int(row['Request Count']):,} requests, "
                            f"{int(row['Failure Count']):,} failures, "
                            f"{float(row['Requests/s']):,.0f} requests/s")
    except (OSError, KeyError, ValueError):
        pass
    return None


def final_entries(stats_json: Path) -> list[dict[str, Any]]:
    """Locust's final stats per endpoint (``--json-file``), written once every user stopped."""
    entries: list[dict[str, Any]] = json.loads(stats_json.read_text())
    return entries


def totals(entries: list[dict[str, Any]]) -> Totals:
    # Every request is counted in exactly one entry, so the sums are locust's own totals.
    return Totals(sum(entry["num_requests"] for entry in entries),
                  sum(entry["num_failures"] for entry in entries))


def percentile_ms(response_times: dict[str, int], share: float) -> int:
    """The response time (ms, as locust rounds it) below which ``share`` of requests fall."""
    counted = sorted((int(ms), count) for ms, count in response_times.items())
    wanted = share * sum(count for _, count in counted)
    seen = 0
    for ms, count in counted:
        seen += count
        if seen >= wanted:
            return ms
    return 0


def summary_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per endpoint: requests, failures, median and p99 latency."""
    lines = []
    for entry in sorted(entries, key=lambda entry: (entry["name"], entry["method"])):
        times = entry["response_times"]
        lines.append(f"{entry['method']:>4} {entry['name']:<40} {entry['num_requests']:>8,} "
                     f"{entry['num_failures']:>6,} failed  p50 {percentile_ms(times, 0.5)} ms"
                     f"  p99 {percentile_ms(times, 0.99)} ms")
    return lines
