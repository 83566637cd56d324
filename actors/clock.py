"""Time, injectable: wall-clock UTC for what is stored, monotonic for the lock windows."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def utc_text(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a Z, the one form times are stored and shown in."""
    # isoformat is several times faster than strftime, and this runs on every event; a
    # time already in UTC (the clock's) skips the conversion and ends in "+00:00".
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"
