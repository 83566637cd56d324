"""The single writer: drains a bounded queue of ops and commits them in batches.

Every submitted op gets a future that completes exactly once: with ``None`` once its batch
has committed, or with the error that kept it from ever being stored. Errors that may pass
(a full disk, an I/O error) are retried with the batch kept whole, so an op that was
acknowledged in write-behind mode is not dropped; the store reports itself unhealthy
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from storage.catalog import CatalogVersionTaken
from storage.endpoints import EndpointOutcome
from storage.errors import (
    CapReached,
    ConversionConflict,
    DuplicateEvent,
    LeadExists,
    PostbackBeingSent,
    StoreBusy,
    StoreClosed,
)
from storage.records import (
    AnswerRow,
    AttemptRow,
    ConversionChange,
    EventRow,
    LeadChange,
    LeadKeyRow,
    LeadRow,
    PostbackChange,
    PostbackRow,
    WriteOp,
    encode_fields,
)

log = structlog.get_logger("storage.writer")

_patch = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def merge_lead_changes(changes: list[LeadChange]) -> list[LeadChange]:
    """One change per lead: later fields win, the last cost wins (costs are absolute)."""
    merged: dict[str, LeadChange] = {}
    for change in changes:
        prior = merged.get(change.transaction_id)
        if prior is None:
            merged[change.transaction_id] = change
            continue
        if prior.fields_patch is None or change.fields_patch is None:
            patch = change.fields_patch or prior.fields_patch
        else:
            combined = _patch.decode(prior.fields_patch) | _patch.decode(change.fields_patch)
            patch = encode_fields(combined)
        latest = change if change.cost is not None else prior
        merged[change.transaction_id] = LeadChange(
            transaction_id=change.transaction_id,
            fields_patch=patch,
            cost=latest.cost,
            cost_micro=latest.cost_micro,
        )
    return list(merged.values())


def postback_rounds(ops: list[WriteOp]) -> list[list[WriteOp]]:
    """The ops that change a postback, in order, split into rounds that change each
    postback at most once: a round is one statement, and every change is checked against
    the state the change before it left (see PostbackChange)."""
    rounds: list[tuple[list[WriteOp], set[int]]] = []
    for op in ops:
        if op.postback_change is None:
            continue
        postback_id = op.postback_change.postback_id
        after = next((index + 1 for index in range(len(rounds) - 1, -1, -1)
                      if postback_id in rounds[index][1]), 0)
        if after == len(rounds):
            rounds.append(([], set()))
        rounds[after][0].append(op)
        rounds[after][1].add(postback_id)
    return [round_ops for round_ops, _ in rounds]


def recorded_outcomes(ops: list[WriteOp], applied: set[int]) -> list[EndpointOutcome]:
    """The endpoint outcomes of the attempts whose change was recorded (an attempt whose
    outcome no longer counts does not count against its endpoint either)."""
    return [op.endpoint_outcome for op in ops
            if op.endpoint_outcome is not None and op.postback_change is not None
            and op.postback_change.postback_id in applied]


def note_paused(endpoints: list[str]) -> None:
    """One warning per endpoint a committed batch paused: someone has to look at it."""
    for endpoint in endpoints:
        log.warning("postback_endpoint_paused", endpoint=endpoint)


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch's rows by table, in the order of its ops: what each database's writer
    writes, in one transaction."""

    leads: list[LeadRow]
    events: list[EventRow]
    changes: list[LeadChange]
    postbacks: list[PostbackRow]
    attempts: list[AttemptRow]
    # The last state of a postback is the one to keep.
    postback_changes: list[PostbackChange]
    conversion_changes: list[ConversionChange]
    answers: list[AnswerRow]
    released_keys: list[str]
    lead_keys: list[LeadKeyRow]

    @classmethod
    def of(cls, ops: list[WriteOp]) -> BatchRows:
        return cls(
            leads=[op.lead for op in ops if op.lead is not None],
            events=[op.event for op in ops if op.event is not None],
            changes=[op.change for op in ops if op.change is not None],
            postbacks=[row for op in ops for row in op.postbacks],
            attempts=[op.attempt for op in ops if op.attempt is not None],
            postback_changes=list({op.postback_change.postback_id: op.postback_change
                                   for op in ops if op.postback_change is not None}.values()),
            conversion_changes=[change for op in ops for change in op.conversion_changes],
            answers=[op.answer for op in ops if op.answer is not None],
            released_keys=[op.released_key for op in ops if op.released_key is not None],
            lead_keys=[row for op in ops for row in op.lead_keys],
        )


# The writer's tuning: the most ops in one transaction, and the wait before retrying a
# failed batch, doubled after each failure up to the longest.
MAX_BATCH = 2000
RETRY_INITIAL_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0

# Errors that no retry can cure: the op itself is wrong and is refused alone. Each
# store's writer adds its driver's own.
_PERMANENT: tuple[type[Exception], ...] = (ValueError, TypeError)

_Item = tuple[WriteOp, "asyncio.Future[None]"]
_BARRIER = WriteOp()


# Refusals that are a rule's answer, which the caller turns into its own answer.
_ANSWERS = (CapReached, ConversionConflict, DuplicateEvent, LeadExists, PostbackBeingSent,
            CatalogVersionTaken)


def _without_secrets(op: WriteOp) -> WriteOp:
    """The op as an abandoned write is logged: its postbacks' signing secrets left out
    (they are the config's, not the write's; the rest is what a recovery needs)."""
    if not op.postbacks:
        return op
    return msgspec.structs.replace(op, postbacks=tuple(
        msgspec.structs.replace(row, secret=None, signing_secrets=None)
        for row in op.postbacks))


def _named(op: WriteOp) -> dict[str, Any]:
    """What an op writes and which rows it is about, without their contents."""
    named: dict[str, Any] = {
        "parts": [name for name in op.__struct_fields__ if getattr(op, name)]}
    for row in (op.lead, op.event):
        if row is not None:
            named["transaction_id"] = row.transaction_id
    if op.event is not None and op.event.conversion_id:
        named["conversion_id"] = op.event.conversion_id
    if op.conversion_changes:
        named["conversion_ids"] = [change.conversion_id for change in op.conversion_changes]
    if op.postback_change is not None:
        named["postback_id"] = op.postback_change.postback_id
    return named


class BatchWriter:
    """The queue, its batches, their futures and retries; ``_apply`` writes a batch.

    ``permanent`` are the errors no retry can cure: the op itself is wrong.
    """

    permanent: tuple[type[Exception], ...] = _PERMANENT
    task_name = "writer"

    def __init__(
        self,
        *,
        max_pending: int,
        gather_seconds: float,
        max_batch: int = MAX_BATCH,
        retry_initial: float = RETRY_INITIAL_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
        on_commit: Callable[[list[WriteOp]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_pending = max_pending
        self._gather_seconds = gather_seconds
        self._max_batch = max_batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._on_commit = on_commit
        self._clock = clock
        # When the oldest op still queued arrived: write-behind's gathering delay counts
        # from it, not from when the writer got round to it.
        self._oldest_at = 0.0
        self._queue: deque[_Item] = deque()
        self._has_work = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Kept: on Python 3.11 every get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The batch being committed (and retried while the store fails).
        self._committing: list[_Item] = []
        self.failing = False
        self.batches_committed = 0
        self.batch_token = uuid.uuid4().hex
        # Told the size and duration of every committed batch (the metrics set it).
        self.commit_observer: Callable[[int, float], None] | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def has_room(self) -> bool:
        return not self._closing and len(self._queue) < self._max_pending

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(
                self._run(), name=self.task_name)  # pragma: no mutate (a debugging label)

    def submit(self, op: WriteOp, *, bounded: bool) -> asyncio.Future[None]:
        """Queue an op; raises StoreBusy at the bound and StoreClosed after close().

        ``bounded=False`` is for callers whose writes are already limited in number (the
        postback dispatcher records at most one attempt per delivery it runs).
        """
        if self._closing:
            raise StoreClosed
        if bounded and len(self._queue) >= self._max_pending:
            raise StoreBusy
        return self._enqueue(op)

    def barrier(self) -> asyncio.Future[None]:
        """A future that completes once everything queued so far has committed.

        It also cuts short the write-behind gathering delay: whoever asks for a barrier
        wants to read what was written.
        """
        if self._closing:
            raise StoreClosed
        self._flush_now.set()
        return self._enqueue(_BARRIER)

    def _enqueue(self, op: WriteOp) -> asyncio.Future[None]:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._queue:
            self._oldest_at = self._clock()
        self._queue.append((op, future))
        self._has_work.set()
        return future

    async def close(self, timeout: float) -> None:
        """Commit everything queued, then stop. Safe to call more than once.

        A store that keeps failing cannot hold up shutdown: past ``timeout`` the writer
        stops, every write it could not store is logged in full (the log is then the only
        record of it) and its future fails with StoreClosed.
        """
        self._closing = True
        self._flush_now.set()
        self._has_work.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            abandoned = [*self._committing, *self._queue]
            self._committing = []
            self._queue.clear()
            ops = [op for op, _ in abandoned if op != _BARRIER]
            log.critical("writes_abandoned_at_shutdown", count=len(ops))
            for op in ops:
                log.critical("write_abandoned", op=msgspec.to_builtins(_without_secrets(op)))
            for _, future in abandoned:
                if not future.done():
                    future.set_exception(StoreClosed())

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            # Write-behind: let ops join this batch until the oldest has waited a flush
            # interval. Ops that queued behind a commit longer than that have waited
            # enough and go at once, so what a crash can lose stays within flush_ms plus
            # the commits in progress, however long commits take under load.
            # Commit mode (no gathering) comes out at wait <= 0. `>=` or `or` here would
            # only call wait_for with a timeout <= 0, which returns at once.
            wait = self._oldest_at + self._gather_seconds - self._clock()
            if wait > 0 and not self._flush_now.is_set():  # pragma: no mutate
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), wait)
            take = min(len(self._queue), self._max_batch)
            if not self._closing and take == len(self._queue):
                self._flush_now.clear()
            batch = [self._queue.popleft() for _ in range(take)]
            self._committing = batch
            await self._commit(batch)
            self._committing = []

    async def _commit(self, batch: list[_Item]) -> None:
        delay = self._retry_initial
        # The same for every attempt of this batch: a store whose commit may land without
        # its answer (a connection lost at COMMIT) records it, to tell a retry the batch
        # is in already.
        self.batch_token = uuid.uuid4().hex
        while True:
            started = time.perf_counter()
            try:
                await self._apply([op for op, _ in batch])
            except self.permanent as exc:
                await self._rollback()
                if len(batch) > 1:
                    # One bad op must not sink the others: retry each in its own transaction.
                    for item in batch:
                        await self._commit([item])
                    return
                op, future = batch[0]
                # A rule's answer (a duplicate, a full cap) is no fault; either way the line
                # names the op, not its rows, which hold lead fields (personal data).
                refused = log.info if isinstance(exc, _ANSWERS) else log.error
                refused("write_refused", error=repr(exc), op=_named(op))
                if not future.done():
                    future.set_exception(exc)
                return
            except Exception as exc:
                await self._rollback()
                self.failing = True
                log.warning("write_failed_retrying", error=repr(exc), ops=len(batch),
                            retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self.failing = False
            self.batches_committed += 1
            if self.commit_observer is not None:
                self.commit_observer(len(batch), time.perf_counter() - started)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if self._on_commit is not None:
                try:
                    self._on_commit([op for op, _ in batch])
                except Exception:  # a listener's bug must not stop the writer
                    log.exception("commit_listener_failed")
            return

    async def _apply(self, ops: list[WriteOp]) -> None:
        """Write ``ops`` in one transaction, or raise with nothing written."""
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError
