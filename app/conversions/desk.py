"""The one place conversion statuses change: checked, written with their postbacks and
audit rows in one transaction, one change at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Literal

import msgspec

from actors.clock import Clock, utc_text
from app.conversions.rules import Action, next_status
from app.edge import errors
from app.events.caps import CapRules
from app.postbacks.plan import Planner
from storage.backend import EventStore
from storage.errors import CapReached, ConversionConflict
from storage.records import (
    CapCharge,
    ChangeSource,
    ConversionChange,
    ConversionStatus,
    ConversionView,
    PostbackRow,
    WriteOp,
)

Result = Literal["changed", "already", "unknown"]
# Each retry follows a change another process committed meanwhile; past this many in a
# row, the conflict is the caller's answer (503).
_DECISIONS = 5


class ChangeResult(msgspec.Struct, frozen=True, kw_only=True):
    conversion_id: str
    result: Result
    # The status it has now (None when unknown).
    status: ConversionStatus | None


class ConversionDesk:
    """Applies status changes.

    Changes are rare next to events and may span many transactions (a bulk reversal), so
    they are serialized by one lock rather than by the per-transaction actors: each
    change reads the statuses as committed, decides, and waits for its own commit before
    the next one reads. Firing never changes a status, so it needs no part in this.
    Processes sharing a database each have their own lock: there the database refuses a
    change decided from a status another process has changed since (ConversionConflict),
    and the change is decided again from the status now stored.
    """

    def __init__(
        self, store: EventStore, planner: Callable[[], Planner], clock: Clock,
        on_changed: Callable[[list[tuple[ConversionView, ConversionStatus]]], None]
        | None = None, caps: Callable[[], CapRules] | None = None,
    ) -> None:
        self._store = store
        self._planner = planner
        # The caps in force: approving a conversion a cap held counts it against them.
        self._caps = caps
        # Told of every committed change with the conversion as it was (metrics).
        self._on_changed = on_changed
        self._clock = clock
        self._lock = asyncio.Lock()

    async def change(
        self, conversion_ids: list[str], action: Action, reason: str | None,
        source: ChangeSource, *, token: str,
    ) -> list[ChangeResult]:
        """Apply ``action`` to each conversion, all in one transaction; one result per id.

        ``token`` names who asked (a token's configured name, or "cli"): each change is
        stored with it."""
        async with self._lock:
            for _ in range(_DECISIONS - 1):
                with contextlib.suppress(ConversionConflict):
                    return await self._decide(conversion_ids, action, reason, source, token)
            return await self._decide(conversion_ids, action, reason, source, token)

    async def _decide(
        self, conversion_ids: list[str], action: Action, reason: str | None,
        source: ChangeSource, token: str,
    ) -> list[ChangeResult]:
        await self._store.flush()
        current = await self._store.conversion_statuses(list(dict.fromkeys(conversion_ids)))
        now = utc_text(self._clock.now())
        changes: list[ConversionChange] = []
        changed: list[tuple[ConversionView, ConversionStatus]] = []
        postbacks: list[PostbackRow] = []
        charges: list[CapCharge] = []
        results = []
        for conversion_id in conversion_ids:
            view = current.get(conversion_id)
            if view is None:
                results.append(ChangeResult(conversion_id=conversion_id, result="unknown",
                                            status=None))
                continue
            status = next_status(view.status, action)
            if status is None:
                results.append(ChangeResult(conversion_id=conversion_id, result="already",
                                            status=view.status))
                continue
            changes.append(ConversionChange(
                conversion_id=conversion_id, from_status=view.status, to_status=status,
                reason=reason, source=source, changed_at=now, token=token))
            postbacks += await self._postbacks(view, status, reason, now)
            if status == "approved" and view.reason == "cap_reached" and self._caps:
                charges += self._caps().charges_for(view)
            changed.append((view, status))
            # A repeated id in one call sees the change just made.
            current[conversion_id] = msgspec.structs.replace(view, status=status,
                                                             decided_at=now)
            results.append(ChangeResult(conversion_id=conversion_id, result="changed",
                                        status=status))
        if changes:
            try:
                await self._store.commit(WriteOp(conversion_changes=tuple(changes),
                                                 postbacks=tuple(postbacks),
                                                 cap_charges=tuple(charges)))
            except CapReached:
                raise errors.cap_reached_on_approval() from None
            if self._on_changed is not None:
                self._on_changed(changed)
        return results

    async def _postbacks(self, view: ConversionView, status: ConversionStatus,
                         reason: str | None, now: str) -> tuple[PostbackRow, ...]:
        planner = self._planner()
        if not planner.wants_change(view, status):
            return ()
        lead_fields = await self._store.lead_fields(view.transaction_id)
        return planner.for_change(view, status, reason, lead_fields, now)
