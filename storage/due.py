"""What the postback dispatcher reads: due postbacks, and how much room each host has."""

from __future__ import annotations

from typing import Literal

import msgspec


class DuePostback(msgspec.Struct, frozen=True, kw_only=True):
    """What the dispatcher needs to send a postback."""

    id: int
    method: Literal["GET", "POST"]
    url: str
    host: str
    body: str | None
    secret: str | None
    attempts: int
    max_attempts: int
    endpoint: str = ""
    signing_secrets: str | None = None
    # On PostgreSQL, the lease this process holds it under: its outcome is recorded only
    # while no other process has taken it since.
    lease: str | None = None


# How many due postbacks a read looks through, oldest first, for those their hosts have
# room for: what a read costs stays bounded however large the backlog.
DUE_SCAN = 1024


class HostLoad(msgspec.Struct, frozen=True, kw_only=True):
    """Deliveries in flight per host, and how many one host may have at once: a read for
    due postbacks returns no more for a host than it has room for."""

    per_host: int
    in_flight: dict[str, int]

    def full(self) -> list[str]:
        return [host for host, load in self.in_flight.items() if load >= self.per_host]
