"""One actor per live transaction: its messages are handled one at a time, in order."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from actors.clock import Clock, utc_text
from actors.messages import CreateLead, FireEvent, LeadOf, Message, Reply, Verdict
from actors.rows import event_row, lead_write
from actors.rules import apply_cost, decide, fire_status, opens_window, rejection_reason
from actors.state import TransactionState
from storage.backend import EventStore
from storage.errors import (
    CapReached,
    DuplicateEvent,
    LeadExists,
    StoreBusy,
    StoreClosed,
    StoreUnavailable,
)
from storage.records import (
    LeadKeyRow,
    LeadRow,
    PostbackRow,
    WriteOp,
    encode_fields,
)


class PostbackPlanner(Protocol):
    def __call__(
        self,
        event: FireEvent,
        lead_fields: Mapping[str, Any],
        conversion_id: str,
        fired_at: str,
    ) -> tuple[PostbackRow, ...]:
        """The postbacks a fired event owes, rendered from the event and its lead."""
        ...


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every actor shares."""

    store: EventStore
    clock: Clock
    lock_seconds: float
    # Commit durability: answer only once the write has committed.
    wait_for_commit: bool
    plan_postbacks: PostbackPlanner | None = None
    # How long a request waits on the store before it answers 503 instead.
    write_timeout: float = 5.0


class TransactionActor:
    """Serializes all work on one transaction without locks.

    A drain task exists only while the mailbox has messages, so an idle actor costs its
    state and nothing else. After a write fails the in-memory state may be ahead of the
    database, so the actor reloads it (once its other writes have settled) before the
    next message.
    """

    __slots__ = ("_inline", "_loaded", "_mailbox", "_on_idle", "_pending", "_rt", "_task",
                 "state", "transaction_id")

    def __init__(
        self,
        transaction_id: str,
        runtime: Runtime,
        on_idle: Callable[[TransactionActor], None],
        state: TransactionState | None = None,
    ) -> None:
        self.transaction_id = transaction_id
        self.state = state
        self._loaded = state is not None
        self._rt = runtime
        self._on_idle = on_idle
        # Both made on first use: most actors sit idle, and an empty deque alone is 600 bytes.
        self._mailbox: deque[tuple[Message, asyncio.Future[Reply]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._inline = False
        self._pending: set[asyncio.Future[None]] | None = None

    async def ask(self, message: Message) -> Reply:
        """The reply to ``message``, handled after every message sent before it.

        An idle actor handles the message at once in the caller's own task: no task to
        start, no mailbox round trip. Messages that arrive meanwhile wait in the mailbox
        for a drain task, started when this one is done.
        """
        if self._task is None and not self._inline and not self._mailbox:
            self._inline = True
            try:
                return await self._run(message)
            finally:
                self._inline = False
                if self._mailbox:
                    self._start_drain()
                else:
                    self._on_idle(self)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if self._mailbox is None:
            self._mailbox = deque()
        self._mailbox.append((message, reply))
        if self._task is None and not self._inline:
            self._start_drain()
        return await reply

    @property
    def running_task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def busy(self) -> bool:
        return self._inline or self._task is not None

    def evictable(self, now: float) -> bool:
        """Safe to forget: nothing queued or running, every write stored, no window open."""
        return (
            not self.busy
            and not self._mailbox
            and not self._pending
            and (self.state is None or not self.state.any_window_open(now))
        )

    def _start_drain(self) -> None:
        # A fresh context: the task must not carry the log bindings of the request that
        # happened to start it. Nothing a drain runs logs or annotates a request yet, so
        # no test can see the difference.
        self._task = asyncio.get_running_loop().create_task(
            self._drain(), context=contextvars.Context())  # pragma: no mutate

    async def _drain(self) -> None:
        try:
            while self._mailbox:
                message, reply = self._mailbox.popleft()
                if not self._mailbox:
                    self._mailbox = None
                if reply.done():  # the caller went away before we got to it
                    continue
                try:
                    result = await self._run(message)
                except Exception as exc:
                    if not reply.done():
                        reply.set_exception(exc)
                else:
                    if not reply.done():
                        reply.set_result(result)
        finally:
            self._task = None
            self._on_idle(self)

    async def _run(self, message: Message) -> Reply:
        # On a shared database another process may create the lead at any time: an
        # unknown transaction is asked for again, not remembered as unknown.
        if not self._loaded or (self.state is None and self._rt.store.windows is not None):
            await self._load()
        return await self._handle(message)

    async def _writes_settled(self) -> None:
        """Wait until every write this actor queued has committed or failed.

        Raises StoreUnavailable past the write timeout; the writes stay queued.
        """
        if self._pending:
            # asyncio.wait, unlike gather or wait_for, never cancels what it waits on: a
            # cancelled write future would make this actor reload before the write lands.
            _, late = await asyncio.wait(self._pending, timeout=self._rt.write_timeout)
            if late:
                raise StoreUnavailable

    async def _committed(self, written: asyncio.Future[None]) -> None:
        """Wait for ``written`` to commit; StoreUnavailable past the write timeout."""
        if not written.done():
            await _within(written, self._rt.write_timeout)
            if not written.done():
                raise StoreUnavailable
        written.result()

    async def _load(self) -> None:
        await self._writes_settled()
        stored = await self._rt.store.load_transaction(self.transaction_id)
        windows = self.state.windows if self.state is not None else {}
        self.state = None if stored is None else TransactionState.from_stored(stored)
        if self.state is not None:
            self.state.windows = windows
        self._loaded = True

    async def _handle(self, message: Message) -> Reply:
        match message:
            case FireEvent():
                return await self._fire(message)
            case CreateLead():
                return await self._create(message)
            case LeadOf():
                if self.state is None:
                    return Reply(Verdict.UNKNOWN_TRANSACTION)
                return Reply(Verdict.FOUND, cid=self.state.cid, pid=self.state.pid)

    async def _fire(self, event: FireEvent,
                    held: datetime | None = None) -> Reply:  # pragma: no mutate
        """``held``: this very request already holds the event's window, until then
        (PostgreSQL)."""
        rt = self._rt
        now = rt.clock.monotonic()
        state = self.state
        created = state is None and event.create
        if created:
            state = TransactionState(cid=event.cid, pid=event.pid)
        verdict = decide(state, event, now)
        # Shared by several processes, the database keeps the windows (local ones stay
        # empty): a request that reaches the lock check claims the window there.
        # Lines not mutated here and below: PostgreSQL only, and tests/test_postgres_rules.py
        # and test_postgres_races.py fail for their mutants, but `make mutate` leaves the
        # PostgreSQL tests out.
        windows = rt.store.windows  # pragma: no mutate
        if (windows is not None and state is not None and opens_window(verdict)  # pragma: no mutate
                and held is None):  # pragma: no mutate
            held = await windows.claim(self.transaction_id,  # pragma: no mutate
                                       event.event_id, rt.lock_seconds)
            if held is None:  # pragma: no mutate
                return Reply(Verdict.LOCKED)
        if state is None or verdict is not Verdict.FIRED:
            if state is not None and opens_window(verdict) and windows is None:
                state.forget_closed_windows(now)
                state.windows[event.event_id] = now + rt.lock_seconds
            return Reply(verdict)

        moment = rt.clock.now()
        fired_at = utc_text(moment)
        if created:
            state.created_at = fired_at
        rejected = rejection_reason(event, state.created_at, moment)
        if rejected is not None:
            event = msgspec.structs.replace(event, rejected_reason=rejected)
        status, why = fire_status(event)
        conversion_id = f"conv_{uuid.uuid4()}" if event.conversion else ""
        # A conversion rejected as it fires counts against no cap.
        charges = (event.caps.charges(conversion_id, moment)
                   if event.caps is not None and status != "rejected" else ())
        cost = None if event.cost is None else apply_cost(state.cost, event.cost,
                                                          event.cost_operation)
        postbacks: tuple[PostbackRow, ...] = ()
        if event.postbacks and rt.plan_postbacks is not None:
            lead_fields = await self._stored_lead_fields() | event.lead_fields
            postbacks = rt.plan_postbacks(event, lead_fields, conversion_id, fired_at)
        lead, change = lead_write(self.transaction_id, event, created=created, cost=cost,
                                  fired_at=fired_at)
        op = WriteOp(
            lead=lead,
            lead_keys=_key_rows(state.cid, event.lead_keys, state.created_at or fired_at,
                                self.transaction_id),
            event=event_row(self.transaction_id, event, conversion_id, moment, status, why,
                            fired_at),
            change=change,
            postbacks=postbacks,
            answer=None if event.answer is None else event.answer(conversion_id, status or "", why),
            cap_charges=charges,
        )
        try:
            written = rt.store.submit(op)  # raises StoreBusy before any state changes
        except (StoreBusy, StoreClosed):
            if windows is not None and held is not None:  # pragma: no mutate
                # Nothing was queued: the retry that the 503 invites must not be locked
                # out by this attempt's window.
                await windows.release(self.transaction_id,  # pragma: no mutate
                                      event.event_id, held)
            raise
        self.state = state
        if windows is None:
            state.forget_closed_windows(now)
            state.windows[event.event_id] = now + rt.lock_seconds
        state.fired.add(event.event_id)
        if cost is not None:
            state.cost = cost
        self._track(written)
        # A capped conversion is answered once the database has counted it, in either mode.
        if rt.wait_for_commit or charges:
            try:
                await self._committed(written)
            except DuplicateEvent:
                # Another process stored it first; this actor reloads before its next
                # message (see _settled), and so learns that it fired.
                return Reply(Verdict.DUPLICATE)
            except LeadExists:
                # Another process created the lead first: decide again against it.
                await self._load()
                return await self._fire(event, held=held)  # pragma: no mutate
            except CapReached as reached:
                return await self._past_cap(event, reached.cap, held)
        return Reply(Verdict.FIRED, conversion_id, status=status or "", reason=why)

    async def _past_cap(self, event: FireEvent, cap: str, held: datetime | None) -> Reply:
        """Nothing of the conversion was written: refuse it, or fire it held or unpaid as
        the cap's ``over`` says (counting against no cap)."""
        assert event.caps is not None
        over = event.caps.over(cap)
        await self._load()
        if self.state is not None:
            # The attempt that opened it stored nothing.
            self.state.windows.pop(event.event_id, None)
        if over == "reject":
            if self._rt.store.windows is not None and held is not None:  # pragma: no mutate
                await self._rt.store.windows.release(self.transaction_id,  # pragma: no mutate
                                                     event.event_id, held)
            return Reply(Verdict.CAP_REACHED)
        unpaid = over == "unpaid"
        retry = msgspec.structs.replace(
            event, caps=None, cap_reason="cap_reached_unpaid" if unpaid else "cap_reached",
            payout=Decimal(0) if unpaid and event.payout is not None else event.payout)
        return await self._fire(retry, held=held)

    async def _stored_lead_fields(self) -> dict[str, Any]:
        """The lead's fields as stored, once this actor's own queued writes are in."""
        await self._writes_settled()
        return await self._rt.store.lead_fields(self.transaction_id)

    async def _create(self, lead: CreateLead) -> Reply:
        rt = self._rt
        created_at = utc_text(rt.clock.now())
        op = WriteOp(lead=LeadRow(
            transaction_id=self.transaction_id,
            cid=lead.cid,
            pid=lead.pid,
            fields=encode_fields(lead.fields),
            cost=None,
            ip=lead.ip,
            user_agent=lead.user_agent,
            created_at=created_at,
        ), lead_keys=_key_rows(lead.cid, lead.lead_keys, created_at, self.transaction_id))
        if self.state is not None:
            self.state.created_at = op.lead.created_at if op.lead is not None else None
        try:
            written = rt.store.submit(op)
        except Exception:
            self.state = None  # the lead never made it into the queue
            raise
        self._track(written)
        if rt.wait_for_commit:
            await self._committed(written)
        return Reply(Verdict.CREATED)

    def _track(self, written: asyncio.Future[None]) -> None:
        if self._pending is None:
            self._pending = set()
        self._pending.add(written)
        written.add_done_callback(self._settled)

    def _settled(self, written: asyncio.Future[None]) -> None:
        if self._pending is not None:
            self._pending.discard(written)
            if not self._pending:
                self._pending = None
        if written.cancelled() or written.exception() is not None:
            self._loaded = False


def _key_rows(cid: str, digests: tuple[str, ...], created_at: str,
              transaction_id: str) -> tuple[LeadKeyRow, ...]:
    """The lead's keys, stamped with when it was created: the dedupe window counts from
    the lead's click, whenever a field arrived."""
    return tuple(LeadKeyRow(cid=cid, digest=digest, created_at=created_at,
                            transaction_id=transaction_id) for digest in digests)


async def _within(future: asyncio.Future[None], timeout: float) -> None:
    """Wait until ``future`` is done or ``timeout`` seconds have passed, never cancelling
    it: what ``asyncio.wait((future,), timeout=...)`` does, without the set, the generator
    and the second pass over its futures that made it ~8 % of commit mode's loop time
    (one wait per event)."""
    waiter = future.get_loop().create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    timer = future.get_loop().call_later(timeout, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
