"""What an actor remembers about its transaction."""

from __future__ import annotations

import math
from decimal import Decimal

import msgspec

from storage.records import StoredTransaction


class TransactionState(msgspec.Struct):
    cid: str
    pid: str
    cost: Decimal | None = None
    # When the lead was created (its click), as stored UTC text; None if unknown.
    created_at: str | None = None
    # Event ids this transaction has fired, whether or not they allow duplicates.
    fired: set[str] = msgspec.field(default_factory=set)
    # event_id -> monotonic time until which its lock window stays open.
    windows: dict[str, float] = msgspec.field(default_factory=dict)

    @classmethod
    def from_stored(cls, stored: StoredTransaction) -> TransactionState:
        return cls(cid=stored.cid, pid=stored.pid, cost=stored.cost, fired=set(stored.fired),
                   created_at=stored.created_at)

    def window_open(self, event_id: str, now: float) -> bool:
        return self.windows.get(event_id, -math.inf) > now

    def any_window_open(self, now: float) -> bool:
        return any(until > now for until in self.windows.values())

    def forget_closed_windows(self, now: float) -> None:
        if self.windows:
            # `>=` would do the same: a window ending now is closed for window_open too.
            self.windows = {
                key: end for key, end in self.windows.items() if end > now  # pragma: no mutate
            }
