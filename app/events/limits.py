"""The largest amounts an event may carry: ``[server] max_revenue``, lowered per event.

An amount past it is refused like any invalid field (400 ``Invalid <field>``): without a
bound, anyone who can reach the service could report a sale of any size and have its
payout owed.
"""

from __future__ import annotations

from decimal import Decimal

from app.config.schema import EventConfig, ServerConfig
from app.events.payloads import MONEY_FIELDS, EventFields

_REVENUE = ("revenue", "amount")
# A money field, its bound, and the reason an amount past it is refused.
Bound = tuple[str, Decimal, str]


def bounds(event: EventConfig, server: ServerConfig) -> tuple[Bound, ...]:
    """Each money field's bound for ``event``, in field order, with its refusal."""
    found = []
    for name in MONEY_FIELDS:
        bound = server.max_revenue
        if name in _REVENUE and event.max_revenue is not None:
            bound = event.max_revenue
        found.append((name, bound, f"Expected a number <= {bound:f}"))
    return tuple(found)


def over_limit(fields: EventFields, limits: tuple[Bound, ...]) -> dict[str, str]:
    """Each money field past its bound, with why, in field order; empty when none is."""
    found = {}
    for name, bound, why in limits:
        value: Decimal | None = getattr(fields, name)
        if value is not None and value > bound:
            found[name] = why
    return found
