"""One event request end to end in-process: its CPU per request, and where it goes.

The same driver as loadtests/budget.py (requests straight into the ASGI app, leads
minted first, 64 at a time), run ``--repeat`` times; prints each run's loop CPU per
request and their median, so two versions of the code compare by medians on a machine
that others share. ``--profile`` adds one run under cProfile and prints its heaviest
functions.

    python loadtests/profile_event.py [--events 5000] [--repeat 5] [--profile 40]
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
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from app.observe.logs import configure_logging  # noqa: E402
from loadtests import budget  # noqa: E402


def loop_us(events: int, durability: str, repeat: int) -> list[float]:
    """The event loop's CPU per request, in microseconds, once per run."""
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for run in range(repeat):
            db = Path(work) / f"run{run}.db"
            runs.append(uvloop.run(budget._run(events, durability, db, None))["loop"])
    return runs


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
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)  # as `event-postback serve` sets it
    # Left open: the log writer's flushing thread writes to it until the process ends.
    configure_logging("info", stream=open(os.devnull, "wb"))  # noqa: SIM115
    runs = loop_us(args.events, args.durability, args.repeat)
    print(f"loop us per event request ({args.durability}): "
          + " ".join(f"{value:.1f}" for value in runs)
          + f"; median {statistics.median(runs):.1f}")
    if args.profile:
        profile(args.events, args.durability, args.profile, args.sort)
    return 0


if __name__ == "__main__":
    sys.exit(main())
