"""``event-postback endpoints`` and ``postbacks recover``: postback endpoints from the
command line, as GET /api/endpoints and its actions see them.

``list``, ``resume`` and ``postbacks recover`` work on the database itself: an SQLite file
no server is serving (a served one is locked to its server: use the API there) or a
PostgreSQL database, served or not, whose nodes send what is re-queued within a second.
``test`` needs only the configuration: it stores nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from actors.clock import Clock, SystemClock, utc_text
from app.config.endpoints import endpoints_of
from app.config.schema import Config
from app.edge.errors import ApiError
from app.factory import build_store
from app.postbacks.probe import EndpointTestData, client_for, probe
from app.postbacks.retry import outcome_of_status
from app.routes.endpoints import endpoint_views, key_of, moment
from app.serve import exits
from app.serve.exits import check_database, claim
from storage.backend import EventStore
from storage.endpoints import EndpointView, Requeue
from storage.records import WriteOp

T = TypeVar("T")
# The postback statuses shown as columns, in a postback's life order.
_STATUSES = ("pending", "paused", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class _Desk:
    config: Config
    store: EventStore
    clock: Clock


def list_endpoints(config: Config) -> int:
    """Print each endpoint's health, one row each."""
    views = _on_store(config, ": use GET /api/endpoints while it is served", endpoint_views)
    sys.stdout.write(_table(views))
    return exits.OK


def resume_endpoint(config: Config, name: str) -> int:
    """Make a paused endpoint active again, its paused postbacks due now."""
    async def resume(desk: _Desk) -> int:
        return await _requeue(desk, Requeue(action="resume", endpoint=await key_of(desk, name),
                                            now=utc_text(desk.clock.now()), token="cli"))
    try:
        count = _on_store(config, f": use POST /api/endpoints/{name}/resume while it is "
                                  "served", resume)
    except ApiError as refused:
        sys.stderr.write(f"{name}: {refused.message.lower()}\n")
        return exits.USAGE
    sys.stdout.write(f"{name}: resumed, {_postbacks(count)} due now\n")
    return exits.OK


def recover_postbacks(config: Config, start_text: str, end_text: str,
                      name: str | None) -> int:
    """Make the dead letters created in [start, end) due now (of one endpoint, if named)."""
    try:
        start, end = moment(start_text, "from"), moment(end_text, "to")
    except ApiError as refused:
        for flag, problem in (refused.invalid or {}).items():
            sys.stderr.write(f"--{flag}: {problem}\n")
        return exits.USAGE
    if start >= end:
        sys.stderr.write("--to: must be later than --from\n")
        return exits.USAGE

    async def recover(desk: _Desk) -> int:
        key = None if name is None else await key_of(desk, name)
        return await _requeue(desk, Requeue(action="recover", endpoint=key, created_from=start,
                                            created_to=end, now=utc_text(desk.clock.now()),
                                            token="cli"))
    try:
        count = _on_store(config, ": use POST /api/postbacks/recover while it is served",
                          recover)
    except ApiError as refused:
        sys.stderr.write(f"{name}: {refused.message.lower()}\n")
        return exits.USAGE
    sys.stdout.write(f"{_postbacks(count)} due now\n")
    return exits.OK


def probe_endpoint(config: Config, name: str) -> int:
    """Send the endpoint a sample conversion once; print what was sent and the answer.

    0 for an answer a delivery counts as delivered, 1 for any other or none.
    """
    endpoint = endpoints_of(config).get(name)
    if endpoint is None:
        sys.stderr.write(f"{name}: endpoint not found\n")
        return exits.USAGE

    async def send() -> EndpointTestData:
        async with client_for(config.delivery) as client:
            return await probe(endpoint, config, client=client, now=SystemClock().now(),
                               timer=time.perf_counter)
    result = asyncio.run(send())
    sys.stdout.write(_exchange(result))
    if result.response is None:
        sys.stderr.write(f"{name}: {result.error}\n")
        return exits.FAILED
    return exits.OK if outcome_of_status(result.response.status) == "delivered" else exits.FAILED


def _on_store(config: Config, when_served: str, work: Callable[[_Desk], Awaitable[T]]) -> T:
    check_database(config.server.db, existing=True)

    async def run() -> T:
        store = build_store(config)
        # Before anything else: a served file is refused, not waited on.
        claim(store, when_served=when_served)
        await store.open()
        try:
            return await work(_Desk(config, store, SystemClock()))
        finally:
            await store.close()
    return asyncio.run(run())


async def _requeue(desk: _Desk, order: Requeue) -> int:
    await desk.store.commit(WriteOp(requeue=order))
    return order.counted[0]


def _postbacks(count: int) -> str:
    return f"{count} postback{'' if count == 1 else 's'}"


def _table(views: list[EndpointView]) -> str:
    """Aligned columns: the name, its state and failures, postbacks by status, the rate."""
    lines = [["name", "state", "failures", "last_status", *_STATUSES, "success_24h"]]
    lines += [[view.name, view.state, str(view.consecutive_failures),
               "" if view.last_status_code is None else str(view.last_status_code),
               *(str(view.postbacks.get(status, 0)) for status in _STATUSES),
               view.success_rate_24h or ""] for view in views]
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                  for column, (cell, width) in enumerate(zip(line, widths, strict=True)))
        .rstrip()
        for line in lines) + "\n"


def _exchange(result: EndpointTestData) -> str:
    """The request and the answer as HTTP shows them: a first line, headers, the body."""
    sent = result.request
    text = f"{sent.method} {sent.url}\n" + _headers(sent.headers)
    if sent.body is not None:
        text += f"\n{sent.body}\n"
    answer = result.response
    if answer is not None:
        text += f"\n{answer.status} in {result.latency_ms} ms\n" + _headers(answer.headers)
        if answer.body:
            text += f"\n{answer.body}\n"
    return text


def _headers(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in headers.items())
