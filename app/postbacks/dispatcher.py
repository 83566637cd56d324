"""The dispatcher: sends due postbacks, records every attempt, schedules retries.

Postbacks live in SQLite, not in memory: the dispatcher only holds the ones it is sending
(at most ``concurrency``, at most ``per_host`` to one host, so a slow buyer cannot take
every slot). Each attempt is written through the store's single writer together with the
postback's new state. A delivery interrupted by a crash left no attempt behind, so the
postback is sent again after the restart: delivery is at least once, and ``conversion_id``
lets a receiver drop a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import structlog

from actors.clock import Clock, utc_text
from app.config.schema import DeliveryConfig
from app.postbacks import pacing
from app.postbacks.retry import GONE, Outcome, asked_wait, outcome_of_status, retry_delay
from app.postbacks.signing import signature_headers, webhook_headers
from storage.backend import EventStore
from storage.endpoints import EndpointOutcome
from storage.errors import StoreClosed, StoreUnavailable
from storage.records import (
    AttemptRow,
    DuePostback,
    HostLoad,
    PostbackChange,
    PostbackStatus,
    WriteOp,
)

log = structlog.get_logger("app.postbacks")

RESPONSE_KEPT_BYTES = 1024
# Looked for due postbacks at least this often, besides the wake-up after each commit.
POLL_SECONDS = 1.0
# What the deliveries still out at shutdown are given before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 5.0
_HEADERS = {"User-Agent": "event-postback"}
_JSON_BODY = {"Content-Type": "application/json"}
_RETRY_AFTER = "retry-after"  # httpx's headers ignore case
_PERMANENT_ERRORS = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, its CA bundle read once per process rather than once
    per client (a few tens of milliseconds each)."""
    return httpx.create_ssl_context()


class Dispatcher:
    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        settings: DeliveryConfig,
        *,
        client: httpx.AsyncClient | None = None,
        jitter: Callable[[], float] = random.random,
        timer: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_seconds: float = POLL_SECONDS,
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._client = client
        self._owns_client = client is None
        self._jitter = jitter
        self._timer = timer  # seconds, for the latency; only differences mean anything
        self._sleep = sleep  # the wait for a host's send slot
        self._poll_seconds = poll_seconds
        # The store did not answer the last pass (see _run).
        self._store_down = False
        self._grace = shutdown_grace_seconds
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._host_load: Counter[str] = Counter()
        # Hosts whose send rate is used up, until when (per_host_per_second).
        self._paced: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        # One pass at a time between reading what is due and starting it: on PostgreSQL a
        # read claims, so a drain looking beside another pass would find nothing to wait for.
        self._starting = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def use_settings(self, settings: DeliveryConfig) -> None:
        """Deliver with new settings from the next attempt on (the pool keeps its size)."""
        self._settings = settings

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def delivering(self, postback_id: int) -> bool:
        """Whether this process is sending ``postback_id`` now."""
        return postback_id in self._in_flight

    def start(self) -> None:
        if self._client is None:
            # The lines not mutated only size the pool (the dispatcher itself keeps to
            # `concurrency` deliveries), repeat the timeout every request passes, or name
            # httpx's own default TLS context.
            self._client = httpx.AsyncClient(
                timeout=self._settings.timeout_seconds,  # pragma: no mutate
                limits=httpx.Limits(  # pragma: no mutate
                    max_connections=self._settings.concurrency,  # pragma: no mutate
                    max_keepalive_connections=self._settings.concurrency),  # pragma: no mutate
                # A redirect is a failed postback with its 3xx on record: a followed one
                # would carry the lead fields and the signature to a host nobody configured.
                follow_redirects=False,
                verify=_tls(),  # pragma: no mutate
                headers=_HEADERS,
            )
        self._store.on_commit(self._on_commit)
        # A task's name shows only in debugging dumps.
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="postbacks",  # pragma: no mutate
        )

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> None:
        """Send everything due now and wait until those attempts are recorded."""
        while True:
            await self._start_due()
            running = list(self._in_flight.values())
            if not running:
                return
            # A delivery raises nothing but CancelledError, when close() cancels it past
            # the grace (_attempt records every failure); drain() is for tests and tools.
            await asyncio.gather(*running, return_exceptions=True)  # pragma: no mutate

    async def close(self) -> None:
        """Stop taking postbacks; give the ones being sent a moment, then cancel them.

        A cancelled delivery records nothing, so it is sent again after the restart.
        """
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = list(self._in_flight.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self._grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _on_commit(self, ops: list[WriteOp]) -> None:
        if any(op.postbacks for op in ops):
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._start_due()
                wait = await self._seconds_to_next_due()
            except StoreUnavailable:
                # An outage the store already answers 503 for: one line as it starts and
                # one as it ends, not a traceback every poll.
                if not self._store_down:
                    self._store_down = True
                    log.warning("postback_dispatch_waiting_for_store")
                wait = self._poll_seconds
            except Exception:
                log.exception("postback_dispatch_failed")
                wait = self._poll_seconds
            else:
                if self._store_down:
                    self._store_down = False
                    log.info("postback_dispatch_resumed")
            # Nothing to wait for (wait 0) times out at once: the next pass starts.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait, self._poll_seconds))

    def _hosts(self) -> HostLoad:
        """What each host has in flight; a host whose send rate is used up for now
        counts as full, so no read leases a postback for it."""
        per_host, in_flight = self._settings.per_host, dict(self._host_load)
        if self._paced:
            now = self._clock.now()
            self._paced = {host: until for host, until in self._paced.items() if until > now}
            in_flight |= dict.fromkeys(self._paced, per_host)
        return HostLoad(per_host=per_host, in_flight=in_flight)

    async def _start_due(self) -> None:
        async with self._starting:
            await self._start_due_now()

    async def _start_due_now(self) -> None:
        free = self._settings.concurrency - len(self._in_flight)
        if free <= 0 or self._closing:
            return
        # Only what can start now: on PostgreSQL every row read is leased to this
        # process, and one held back for a full host would wait out its lease.
        due = await self._store.due_postbacks(
            utc_text(self._clock.now()), limit=free, skip_ids=list(self._in_flight),
            hosts=self._hosts())
        for postback in due:
            self._host_load[postback.host] += 1
            self._in_flight[postback.id] = asyncio.get_running_loop().create_task(
                self._deliver(postback), context=contextvars.Context())

    async def _seconds_to_next_due(self) -> float:
        # `>` would only ask the database once more with every slot taken.
        if len(self._in_flight) >= self._settings.concurrency:  # pragma: no mutate
            return self._poll_seconds  # a finished delivery wakes us
        due_at = await self._store.next_postback_due_at(list(self._in_flight),
                                                         self._hosts().full())
        if due_at is None:
            return self._poll_seconds
        moment = datetime.fromisoformat(due_at)  # reads the trailing Z since Python 3.11
        return max(0.0, (moment - self._clock.now()).total_seconds())

    async def _deliver(self, postback: DuePostback) -> None:
        try:
            if await self._slot_now(postback):
                await self._attempt(postback)
        finally:
            del self._in_flight[postback.id]
            self._host_load[postback.host] -= 1
            if not self._host_load[postback.host]:
                del self._host_load[postback.host]
            self._wake.set()

    async def _slot_now(self, postback: DuePostback) -> bool:
        rate = self._settings.per_host_per_second
        if rate is None:
            return True
        return await pacing.slot_now(postback, self._store, self._clock.now(), 1 / rate,
                                     sleep=self._sleep, paced=self._paced)

    async def _attempt(self, postback: DuePostback) -> None:
        assert self._client is not None
        attempt = postback.attempts + 1
        started = self._clock.now()
        began = self._timer()
        body = postback.body.encode() if postback.body is not None else None
        headers = _JSON_BODY if body is not None else {}
        if postback.secret:
            signed = body if body is not None else postback.url.encode()
            headers = headers | signature_headers(postback.secret, int(started.timestamp()),
                                                  signed)
        if postback.signing_secrets:
            # The postback's id, the same on every retry, lets a receiver drop a repeat.
            headers = headers | webhook_headers(postback.signing_secrets.split(),
                                                str(postback.id), int(started.timestamp()),
                                                body if body is not None else b"")

        status_code: int | None = None
        error: str | None = None
        answer: str | None = None
        retry_after: str | None = None  # pragma: no mutate ("" also reads as none sent)
        try:
            # httpx times each phase; this bounds the whole request, a slow drip included
            # (and starts first, so it ends an attempt before any one phase's timeout can).
            async with asyncio.timeout(self._settings.timeout_seconds):
                async with self._client.stream(
                        postback.method, postback.url, content=body, headers=headers,
                        timeout=self._settings.timeout_seconds,  # pragma: no mutate
                ) as response:
                    status_code = response.status_code
                    retry_after = response.headers.get(_RETRY_AFTER)
                    answer = await _read_head(response, RESPONSE_KEPT_BYTES)
            outcome = outcome_of_status(status_code)
        except (httpx.TimeoutException, TimeoutError) as exc:
            error, outcome = f"timeout: {type(exc).__name__}", "retry"
        except _PERMANENT_ERRORS as exc:
            error, outcome = f"{type(exc).__name__}: {exc}", "failed"
        except httpx.TransportError as exc:
            error, outcome = f"{type(exc).__name__}: {exc}", "retry"
        except Exception as exc:
            log.exception("postback_attempt_crashed", postback_id=postback.id)
            error, outcome = f"{type(exc).__name__}: {exc}", "retry"
        latency_ms = round((self._timer() - began) * 1000, 3)

        gone = status_code == GONE and self._settings.pause_after > 0
        status, next_at = self._next_state(outcome, attempt, postback.max_attempts,
                                           status_code, retry_after, gone=gone)
        now = utc_text(self._clock.now())
        op = WriteOp(
            endpoint_outcome=self._endpoint_outcome(postback, status, status_code, error,
                                                    retry_after, gone=gone),
            attempt=AttemptRow(postback_id=postback.id, attempt=attempt,
                               started_at=utc_text(started), url=postback.url,
                               status_code=status_code, error=error, latency_ms=latency_ms,
                               response=answer),
            postback_change=PostbackChange(postback_id=postback.id, status=status,
                                           attempts=attempt, max_attempts=postback.max_attempts,
                                           next_attempt_at=utc_text(next_at),
                                           last_status_code=status_code, last_error=error,
                                           updated_at=now, lease=postback.lease),
        )
        # The path, never the query string: that is where a postback's lead fields go.
        # A dead letter (no attempt left) is a warning: someone has to look at it.
        level = log.warning if status == "failed" else log.info
        level("postback_attempt", postback_id=postback.id, host=postback.host,
              path=_path_of(postback.url), status=status_code, error=error,
              attempt=attempt, latency_ms=latency_ms, outcome=status)
        try:
            await self._store.submit(op, bounded=False)
        except StoreClosed:
            log.warning("postback_attempt_not_recorded", postback_id=postback.id)

    def _endpoint_outcome(self, postback: DuePostback, status: PostbackStatus,
                          status_code: int | None, error: str | None,
                          retry_after: str | None, *, gone: bool) -> EndpointOutcome:
        settings, now = self._settings, self._clock.now()
        asked = asked_wait(status_code, retry_after, now=now, cap=settings.max_retry_seconds)
        return EndpointOutcome(
            endpoint=postback.endpoint, at=utc_text(now), delivered=status == "delivered",
            status_code=status_code, error=error, pause_after=settings.pause_after,
            pause_since=utc_text(now - timedelta(hours=settings.pause_min_hours)),
            gone=gone,
            not_before=None if asked is None else utc_text(now + timedelta(seconds=asked)))

    def _next_state(
        self, outcome: Outcome, attempt: int, max_attempts: int, status_code: int | None,
        retry_after: str | None, *, gone: bool,
    ) -> tuple[PostbackStatus, datetime]:
        now = self._clock.now()
        if outcome == "delivered":
            return "delivered", now
        if gone:
            # Waits with its endpoint, which the same write pauses, for an operator.
            return "paused", now
        if outcome == "failed" or attempt >= max_attempts:
            return "failed", now
        settings = self._settings
        delay = retry_delay(attempt, status_code=status_code, retry_after=retry_after, now=now,
                            first=settings.first_retry_seconds,
                            cap=settings.max_retry_seconds, jitter=self._jitter())
        return "pending", now + timedelta(seconds=delay)


def _path_of(url: str) -> str:
    """The URL's path; empty for a URL too broken to split (httpx refused it already)."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


async def _read_head(response: httpx.Response, limit: int) -> str:
    """The first ``limit`` bytes of the answer, as text; the rest is never read."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return kept.decode(errors="replace")  # UTF-8
