"""One event request end to end in-process: its CPU per request, and where it goes.

The same driver as loadtests/budget.py (requests straight into the ASGI app, leads
minted first, 64 at a time), run ``--repeat`` times; prints each run's loop CPU per
request and their median, so two versions of the code compare by medians on a machine
that others share. ``--profile`` adds one run under cProfile and prints its heaviest
functions.

``--edge`` measures instead what an event request costs around its handler (reading
the body, the request id, admission, routing, the log line, the metrics, every
middleware layer): the same requests into the app with the event handler replaced by
one that answers at once, less that handler called directly with the same request.

    python loadtests/profile_event.py [--events 5000] [--repeat 5] [--profile 40]
    python loadtests/profile_event.py --edge [--events 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from app.config.schema import parse_config, with_server_overrides  # noqa: E402
from app.edge.envelope import success_response  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.observe.logs import annotate, configure_logging  # noqa: E402
from app.routes import events as event_routes  # noqa: E402
from loadtests import budget  # noqa: E402


def loop_us(events: int, durability: str, repeat: int) -> list[float]:
    """The event loop's CPU per request, in microseconds, once per run."""
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for run in range(repeat):
            db = Path(work) / f"run{run}.db"
            runs.append(uvloop.run(budget._run(events, durability, db, None))["loop"])
    return runs


async def _answer_at_once(request: Request) -> Response:
    """An event handler with nothing inside: the fields a fired event logs, its answer."""
    annotate(cid=budget.CID, event_id="ev0", transaction_id="tx", pid=budget.PID,
             outcome="fired")
    return success_response(200, "Event triggered successfully", {"cid": budget.CID})


def _scope(state: dict[str, Any], body: bytes) -> dict[str, Any]:
    path = "/api/event/trigger"
    return {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"user-agent", b"budget")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "state": dict(state), "asgi": {"version": "3.0"},
    }


async def _edge_run(requests: int, db: Path) -> float:
    """CPU per request around the handler, in microseconds: through the app, less direct."""
    config = with_server_overrides(parse_config(budget.CONFIG % "write-behind",
                                                origin="budget"), "budget", db=str(db))
    real = event_routes.trigger
    event_routes.trigger = _answer_at_once  # the route table reads it when it is built
    try:
        app = budget._App(create_app(config))
    finally:
        event_routes.trigger = real
    await app.start()
    body = b'{"cid": "cmp_budget"}'

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        pass

    try:
        # Both ways once untimed first: the first requests of a process warm its caches.
        for _ in range(requests // 4):
            await app.app(_scope(app.state, body), receive, send)
            scope = _scope(app.state, body)
            await (await _answer_at_once(Request(scope, receive, send)))(scope, receive, send)
        started = time.thread_time()
        for _ in range(requests):
            await app.app(_scope(app.state, body), receive, send)
        through_app = time.thread_time() - started
        started = time.thread_time()
        for _ in range(requests):
            scope = _scope(app.state, body)
            response = await _answer_at_once(Request(scope, receive, send))
            await response(scope, receive, send)
        direct = time.thread_time() - started
    finally:
        await app.stop()
    return (through_app - direct) / requests * 1e6


def edge_us(requests: int, repeat: int) -> list[float]:
    with tempfile.TemporaryDirectory() as work:
        return [uvloop.run(_edge_run(requests, Path(work) / f"edge{run}.db"))
                for run in range(repeat)]


def profile(events: int, durability: str, top: int, sort: str) -> None:
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as work:
        uvloop.run(budget._run(events, durability, Path(work) / "profiled.db", profiler))
    pstats.Stats(profiler).sort_stats(sort).print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--durability", choices=("write-behind", "commit"),
                        default="write-behind")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="also profile one run and print its TOP heaviest functions")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile")
    parser.add_argument("--edge", action="store_true",
                        help="measure the CPU per request around the event handler instead")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as `event-postback serve` sets it
    # Left open: the log writer's flushing thread writes to it until the process ends.
    configure_logging("info", stream=open(os.devnull, "wb"))  # noqa: SIM115
    if args.edge:
        runs = edge_us(args.events, args.repeat)
        print("edge us per event request (around the handler): "
              + " ".join(f"{value:.1f}" for value in runs)
              + f"; median {statistics.median(runs):.1f}")
        return 0
    runs = loop_us(args.events, args.durability, args.repeat)
    print(f"loop us per event request ({args.durability}): "
          + " ".join(f"{value:.1f}" for value in runs)
          + f"; median {statistics.median(runs):.1f}")
    if args.profile:
        profile(args.events, args.durability, args.profile, args.sort)
    return 0


if __name__ == "__main__":
    sys.exit(main())
