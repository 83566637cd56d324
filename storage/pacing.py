"""A host's send rate (``[delivery] per_host_per_second``) as slots handed out in turn.

Each send to a host takes the next free slot, one interval after the one before. A slot
is handed out only while the host's queue reaches no further than ``horizon`` seconds
ahead, so a delivery never waits long holding its postback (and its lease); past that,
the postback is due again once the queue has moved on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec


class Slot(msgspec.Struct, frozen=True):
    """``granted``: send at ``at`` (now or a little later); else not before ``at``."""

    granted: bool
    at: datetime


class Slots:
    """The slots of one process's hosts: exact where one process sends (SQLite); the
    PostgreSQL store keeps them in the database instead, shared by every process."""

    def __init__(self) -> None:
        self._next_free: dict[str, datetime] = {}

    def take(self, host: str, now: datetime, interval: float, horizon: float) -> Slot:
        free = max(self._next_free.get(host, now), now)
        if free > now + timedelta(seconds=horizon):
            return Slot(False, free)
        self._next_free[host] = free + timedelta(seconds=interval)
        if len(self._next_free) > _KEPT:
            self._forget(now)
        return Slot(True, free)

    def _forget(self, now: datetime) -> None:
        """Hosts whose queue has run out take no room (the map stays bounded)."""
        self._next_free = {host: moment for host, moment in self._next_free.items()
                           if moment > now}


# Hosts remembered before the ones with nothing queued are dropped.
_KEPT = 10_000
