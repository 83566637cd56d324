"""make loadtest: serve event-postback on a temp database and run locust against it.

Prints a progress line every few seconds, then a line per endpoint and the verdict from
locust's final stats. Reports (CSV, JSON and HTML) go to loadtests/results/. Exits
non-zero when more than 1 % of requests failed.

    python loadtests/run_loadtest.py [--duration 60s] [--users 50]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loadtests.locust_stats import final_entries, progress_line, summary_lines, totals  # noqa: E402
from loadtests.servers import Server, free_port  # noqa: E402

MAX_FAILURE_RATIO = 0.01


def run_locust(command: list[str], stats_csv: Path, every: float) -> int:
    """Run locust, printing its running totals every ``every`` seconds."""
    started = time.monotonic()
    locust = subprocess.Popen(command)
    while True:
        try:
            return locust.wait(timeout=every)
        except subprocess.TimeoutExpired:
            line = progress_line(stats_csv)
            if line:
                print(f"[{time.monotonic() - started:4.0f} s] {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="60s", help="locust run time, e.g. 60s")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="event-postback-loadtest-"))
    port = free_port()
    executable = Path(sys.executable).with_name("event-postback")
    server = Server(
        [str(executable), "serve", "--config", str(HERE / "loadtest.toml"),
         "--db", str(work / "loadtest.db"), "--port", str(port)],
        port, args.out / "loadtest-server.log")
    prefix = args.out / "loadtest"
    for stale in (Path(f"{prefix}.json"), Path(f"{prefix}_stats.csv")):
        stale.unlink(missing_ok=True)  # an earlier run's, which would pass for this one's
    try:
        code = run_locust([
            str(Path(sys.executable).with_name("locust")), "-f", str(HERE / "locustfile.py"),
            "--headless", "--host", f"http://127.0.0.1:{port}", "--users", str(args.users),
            "--spawn-rate", str(args.spawn_rate), "--run-time", args.duration,
            "--csv", str(prefix), "--html", f"{prefix}.html", "--json-file", str(prefix),
            "--only-summary", "--exit-code-on-error", "0",
        ], Path(f"{prefix}_stats.csv"), args.progress_every)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if code != 0:
        sys.stderr.write(f"locust exited with {code}\n")
        return code
    # The verdict comes from the stats locust writes after its last request, not from the
    # CSV snapshot, which can miss the final second.
    entries = final_entries(Path(f"{prefix}.json"))
    print("\n".join(summary_lines(entries)))
    found = totals(entries)
    print(f"{found.requests} requests, {found.failures} failures "
          f"({found.failure_ratio:.2%}); reports in {args.out}/loadtest*")
    if found.failure_ratio > MAX_FAILURE_RATIO:
        sys.stderr.write(f"failure ratio over {MAX_FAILURE_RATIO:.0%}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
