"""The live actors, bounded: least recently used ones are evicted when it is safe."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from itertools import islice

from actors.actor import Runtime, TransactionActor
from actors.messages import CreateLead, FireEvent, LeadOf, Reply, Verdict
from actors.state import TransactionState

# How far past the oldest actors to look for evictable ones; actors that cannot be evicted
# (open window, unstored writes) are recent, so they sit at the other end.
_SCAN_SLACK = 256


class ActorRegistry:
    def __init__(self, runtime: Runtime, *, max_actors: int) -> None:
        self._rt = runtime
        self._max_actors = max_actors
        self._actors: OrderedDict[str, TransactionActor] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._actors)

    def __contains__(self, transaction_id: object) -> bool:
        return transaction_id in self._actors

    async def fire(self, event: FireEvent) -> Reply:
        actor = self._actors.get(event.transaction_id)
        if actor is None:
            actor = self._spawn(event.transaction_id, None)
        else:
            self._actors.move_to_end(event.transaction_id)
            # Over the limit once the actors that were in the way went idle: shrink back.
            # `>=` would only evict at the limit rather than one past it.
            if len(self._actors) > self._max_actors:  # pragma: no mutate
                self._evict(len(self._actors) - self._max_actors, keep=actor)
        return await actor.ask(event)

    async def lead_of(self, transaction_id: str) -> tuple[str, str] | None:
        """The (cid, pid) of the transaction's lead, or None when there is no such lead.

        A live transaction answers from memory; another is loaded as an event would load it.
        """
        actor = self._actors.get(transaction_id)
        if actor is None:
            actor = self._spawn(transaction_id, None)
        reply = await actor.ask(LeadOf(transaction_id=transaction_id))
        return (reply.cid, reply.pid) if reply.verdict is Verdict.FOUND else None

    async def create_lead(self, lead: CreateLead) -> Reply:
        if lead.transaction_id in self._actors:
            raise RuntimeError(  # pragma: no mutate
                f"transaction id {lead.transaction_id} is already live")
        state = TransactionState(cid=lead.cid, pid=lead.pid)
        return await self._spawn(lead.transaction_id, state).ask(lead)

    async def close(self) -> None:
        """Let every running actor finish its mailbox."""
        tasks = [task for actor in self._actors.values()
                 if (task := actor.running_task) is not None]
        if tasks:
            # A drain task never raises (each message's failure is its caller's answer):
            # with or without return_exceptions, this only waits.
            await asyncio.gather(*tasks, return_exceptions=True)  # pragma: no mutate

    def _spawn(self, transaction_id: str, state: TransactionState | None) -> TransactionActor:
        if len(self._actors) >= self._max_actors:
            self._evict(len(self._actors) + 1 - self._max_actors)
        actor = TransactionActor(transaction_id, self._rt, self._on_idle, state)
        self._actors[transaction_id] = actor
        return actor

    def _evict(self, excess: int, keep: TransactionActor | None = None) -> None:
        """Forget up to ``excess`` of the least recently used actors that are safe to forget."""
        now = self._rt.clock.monotonic()
        victims = [
            transaction_id
            for transaction_id, actor in islice(self._actors.items(), excess + _SCAN_SLACK)
            if actor is not keep and actor.evictable(now)
        ][:excess]
        for transaction_id in victims:
            del self._actors[transaction_id]
        self.evictions += len(victims)

    def _on_idle(self, actor: TransactionActor) -> None:
        # An unknown transaction is not worth remembering: it would only crowd out real ones.
        if (
            actor.state is None
            and actor.evictable(self._rt.clock.monotonic())
            and self._actors.get(actor.transaction_id) is actor
        ):
            del self._actors[actor.transaction_id]
