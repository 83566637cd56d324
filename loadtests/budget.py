"""The per-request budget: where an event's microseconds go inside the service.

Event requests go straight into the ASGI app, no sockets (leads minted first so their
actors are in memory, 64 at a time, the request log rendered to /dev/null), twice: once
timed and once under cProfile. The profile's cumulative times give each stage's share
of the event loop's time; the shares are applied to the timed run's CPU per request,
because the profiler slows many small calls more than a few big ones. Read the figures
as shares of a measured total, not as stopwatch readings. The loop's time also holds
the writer task (building each batch's statements) and the loop's own callbacks; the
driver's own time is left out. SQLite's work and the log flushing run in threads and
are counted apart. So are the round trips the writer makes to its SQLite thread, per
batch: each one hands the interpreter lock to that thread and back.

HTTP itself (uvicorn and httptools parsing the request, the socket writes) is not in
here: the bench prints it beside these figures as the bare endpoint A's time per request.

    python loadtests/budget.py [--events 20000] [--durability write-behind] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from app.config.schema import parse_config, with_server_overrides  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.observe.logs import configure_logging  # noqa: E402

CID, PID = "cmp_budget", "src_budget"
EVENTS = [f"ev{n}" for n in range(10)]
CONFIG = f"""
[server]
admin_token = "budget"
durability = "%s"
# Requests arrive faster without sockets than the writer commits in the timed window.
max_pending_writes = 1000000

[[sources]]
pid = "{PID}"

[[campaigns]]
cid = "{CID}"
""" + "".join(f'\n[[campaigns.events]]\nevent_id = "{event}"\n' for event in EVENTS)
CONCURRENCY = 64

# (stage, [(file suffix, function)]): the functions whose cumulative time is the stage.
_PROBES: dict[str, list[tuple[str, str]]] = {
    "app": [("starlette/applications.py", "__call__")],
    "driver": [("loadtests/budget.py", "worker")],
    "writer": [("storage/writer.py", "_run")],
    "body": [("app/edge/body_reader.py", "read_body")],
    "handler": [("app/routes/events.py", "trigger")],
    "actor_and_queue": [("actors/registry.py", "fire")],
    "queue": [("storage/batched.py", "submit")],
    "answer": [("app/edge/envelope.py", "success_response"),
               ("starlette/responses.py", "__call__")],
    "log": [("app/observe/logs.py", "info_line")],
    "metrics": [("app/observe/metrics.py", "observe_request")],
}
# The stages printed, in the order a request meets them.
STAGES = ("body", "decode_and_checks", "actor", "write_queue", "answer", "log_line",
          "metrics", "middleware_and_routing", "writer_task", "loop_callbacks")


class _App:
    """The app with its lifespan started, and a way to send it one request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        started = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        await self._lifespan.put({"type": "lifespan.startup"})
        self._task = asyncio.create_task(self.app(
            {"type": "lifespan", "state": self.state, "asgi": {"version": "3.0"}},
            self._lifespan.get, send))
        await started.wait()

    async def stop(self) -> None:
        await self._lifespan.put({"type": "lifespan.shutdown"})
        assert self._task is not None
        await self._task

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"user-agent", b"budget")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            "state": dict(self.state), "asgi": {"version": "3.0"},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _events(app: _App, count: int) -> list[bytes]:
    """Bodies of ``count`` unique valid events, on leads minted for them."""
    bodies = []
    for _ in range(count // len(EVENTS) + 1):
        status, answer = await app.post("/api/click", json.dumps({"cid": CID, "pid": PID}).encode())
        assert status == 200, answer
        transaction_id = json.loads(answer)["data"]["transaction_id"]
        bodies.extend(json.dumps({"cid": CID, "event_id": event, "pid": PID,
                                  "transaction_id": transaction_id}).encode()
                      for event in EVENTS)
    return bodies[:count]


async def _send_all(app: _App, bodies: list[bytes]) -> None:
    async def worker(first: int) -> None:
        for index in range(first, len(bodies), CONCURRENCY):
            status, answer = await app.post("/api/event/trigger", bodies[index])
            assert status == 200, answer
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))


async def _run(events: int, durability: str, db: Path,
               profile: cProfile.Profile | None) -> dict[str, float]:
    config = with_server_overrides(parse_config(CONFIG % durability, origin="budget"),
                                   "budget", db=str(db))
    app = _App(create_app(config))
    await app.start()
    try:
        bodies = await _events(app, events)
        main_cpu = time.thread_time()
        all_cpu = time.process_time()
        if profile is not None:
            profile.enable()
        await _send_all(app, bodies)
        if profile is not None:
            profile.disable()
        loop_cpu = time.thread_time() - main_cpu
    finally:
        # Shutdown commits what is still queued: the writer's share is counted whole.
        await app.stop()
    main_cpu = time.thread_time() - main_cpu
    all_cpu = time.process_time() - all_cpu
    writer = app.state["current"].services.store.writer
    # The writer's SQLite work and the log flushing run in threads of their own.
    return {"loop": loop_cpu / events * 1e6, "threads": (all_cpu - main_cpu) / events * 1e6,
            "round_trips_per_batch": writer.round_trips / writer.batches_committed}


def _cumulative(stats: pstats.Stats, probes: list[tuple[str, str]]) -> float:
    total = 0.0
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if any(filename.endswith(suffix) and function == name for suffix, name in probes):
            total += row[3]
    return total


def stages(stats: pstats.Stats, loop_us: float) -> dict[str, float]:
    """Each stage's microseconds: its share of the profiled loop time times ``loop_us``,
    the loop thread's CPU per request; the driver's own share is left out.
    """
    seconds = {name: _cumulative(stats, probes) for name, probes in _PROBES.items()}
    # A probe that finds nothing (a function renamed or moved) would silently move its
    # time into another stage.
    unseen = [name for name, value in seconds.items() if value <= 0]
    if unseen:
        raise RuntimeError(f"no profiled calls for {unseen}: update _PROBES")
    total = stats.total_tt  # type: ignore[attr-defined]
    app = seconds["app"]
    raw = {
        "body": seconds["body"],
        "decode_and_checks": seconds["handler"] - seconds["actor_and_queue"]
        - seconds["answer"],
        "actor": seconds["actor_and_queue"] - seconds["queue"],
        "write_queue": seconds["queue"],
        "answer": seconds["answer"],
        "log_line": seconds["log"],
        "metrics": seconds["metrics"],
    }
    raw["middleware_and_routing"] = app - sum(raw.values())
    raw["writer_task"] = seconds["writer"]
    # What the loop ran outside the requests and the writer: futures' callbacks, the
    # threads' hand-backs. The driver's own code (its share of "driver" that is not the
    # app) is in no stage.
    raw["loop_callbacks"] = total - seconds["driver"] - seconds["writer"]
    return {name: max(0.0, raw[name]) / total * loop_us for name in STAGES}


def measure(events: int, durability: str = "write-behind") -> dict[str, Any]:
    """The budget of one event request, in microseconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as `event-postback serve` sets it
    # Left open: the log writer's flushing thread writes to it until the process ends.
    configure_logging("info", stream=open(os.devnull, "wb"))  # noqa: SIM115
    with tempfile.TemporaryDirectory() as work:
        timed = uvloop.run(_run(events, durability, Path(work) / "timed.db", None))
        profile = cProfile.Profile()
        uvloop.run(_run(events, durability, Path(work) / "profiled.db", profile))
    budget = stages(pstats.Stats(profile), timed["loop"])
    return {"events": events, "durability": durability, "loop_us": sum(budget.values()),
            "threads_us": timed["threads"], "stages_us": budget,
            "round_trips_per_batch": timed["round_trips_per_batch"]}


def line(budget: dict[str, Any], http_us: float | None) -> str:
    """The budget as one line: HTTP (from the bare endpoint), then the app's stages."""
    parts = [] if http_us is None else [f"HTTP {http_us:.0f} (bare endpoint A)"]
    parts += [f"{name.replace('_', ' ')} {value:.1f}"
              for name, value in budget["stages_us"].items()]
    parts.append(f"= {budget['loop_us']:.0f} on the event loop")
    parts.append(f"+ SQLite and log threads {budget['threads_us']:.0f}")
    parts.append(f"loop<->SQLite round trips per batch {budget['round_trips_per_batch']:.1f}")
    return f"budget, us per event request ({budget['durability']}): " + ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--durability", choices=("write-behind", "commit"),
                        default="write-behind")
    parser.add_argument("--json", action="store_true", help="print the budget as JSON")
    args = parser.parse_args()
    budget = measure(args.events, args.durability)
    print(json.dumps(budget) if args.json else line(budget, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
