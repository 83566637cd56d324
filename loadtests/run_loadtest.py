"""make loadtest: serve event-postback on a temp database and run locust against it.

Reports (CSV and HTML) go to loadtests/results/. Exits non-zero when more than 1 % of
requests failed.

    python loadtests/run_loadtest.py [--duration 60] [--users 50]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loadtests.servers import Server, free_port  # noqa: E402

MAX_FAILURE_RATIO = 0.01


def failure_ratio(stats_csv: Path) -> tuple[int, int]:
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return int(row["Request Count"]), int(row["Failure Count"])
    raise RuntimeError(f"no aggregated row in {stats_csv}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="60s", help="locust run time, e.g. 60s")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="event-postback-loadtest-"))
    port = free_port()
    executable = Path(sys.executable).with_name("event-postback")
    server = Server(
        [str(executable), "serve", "--config", str(HERE / "loadtest.toml"),
         "--db", str(work / "loadtest.db"), "--port", str(port)],
        port, args.out / "loadtest-server.log")
    try:
        prefix = args.out / "loadtest"
        locust = subprocess.run([
            str(Path(sys.executable).with_name("locust")), "-f", str(HERE / "locustfile.py"),
            "--headless", "--host", f"http://127.0.0.1:{port}", "--users", str(args.users),
            "--spawn-rate", str(args.spawn_rate), "--run-time", args.duration,
            "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
            "--exit-code-on-error", "0",
        ])
        if locust.returncode != 0:
            sys.stderr.write(f"locust exited with {locust.returncode}\n")
            return locust.returncode
        requests, failures = failure_ratio(Path(f"{prefix}_stats.csv"))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = failures / requests if requests else 1.0
    print(f"{requests} requests, {failures} failures ({ratio:.2%}); "
          f"reports in {args.out}/loadtest*")
    if not requests or ratio > MAX_FAILURE_RATIO:
        sys.stderr.write(f"failure ratio over {MAX_FAILURE_RATIO:.0%}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
