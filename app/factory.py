"""create_app: builds the application from its configuration and injected resources."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from actors.actor import Runtime
from actors.clock import Clock, SystemClock
from actors.registry import ActorRegistry
from app import errors
from app.admission import AdmissionMiddleware
from app.body_reader import BodyReader
from app.catalog import Catalog
from app.config import Config
from app.conversions.desk import ConversionDesk
from app.cors import cors_middleware
from app.envelope import error_response
from app.errors import ApiError
from app.idempotency import IdempotencyKeys
from app.logs import annotate
from app.middleware import RequestLogMiddleware
from app.postbacks.dispatcher import Dispatcher
from app.postbacks.plan import Planner
from app.routes import routes
from app.services import Services
from storage.store import Store
from storage.writer import StoreBusy, StoreClosed, StoreUnavailable

log = structlog.get_logger("app")


def build_store(config: Config) -> Store:
    """The store the configured durability asks for."""
    server = config.server
    if server.durability == "commit":
        # Answers wait for the commit, so commits should survive power loss too; group
        # commit spreads each fsync over every request waiting on it.
        return Store(server.db, synchronous="FULL", max_pending=server.max_pending_writes,
                     write_timeout=server.write_timeout_seconds)
    return Store(
        server.db,
        synchronous="NORMAL",
        max_pending=server.max_pending_writes,
        gather_seconds=server.flush_ms / 1000,
        write_timeout=server.write_timeout_seconds,
    )


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    demo: bool = False,
) -> Starlette:
    """The ASGI app. Its lifespan opens the store and, on shutdown, flushes and closes it.

    ``demo`` serves the example landing page that goes with the built-in demo config.
    """
    clock = clock or SystemClock()
    the_store = store or build_store(config)
    server = config.server

    planner = Planner(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await the_store.open()
        registry = ActorRegistry(
            Runtime(
                store=the_store,
                clock=clock,
                lock_seconds=server.lock_seconds,
                wait_for_commit=server.durability == "commit",
                plan_postbacks=planner,
                write_timeout=server.write_timeout_seconds,
            ),
            max_actors=server.max_actors,
        )
        dispatcher = Dispatcher(the_store, clock, config.delivery)
        dispatcher.start()
        log.info("store_opened", db=str(the_store.path), durability=server.durability)
        try:
            yield {"services": Services(config=config, catalog=Catalog(config),
                                        planner=planner, store=the_store, registry=registry,
                                        dispatcher=dispatcher, clock=clock,
                                        conversions=ConversionDesk(the_store, planner, clock),
                                        keys=IdempotencyKeys(
                                            the_store, clock,
                                            hours=server.idempotency_hours))}
        finally:
            # Requests are done by now; the dispatcher may still record attempts, then
            # the store commits everything queued.
            await registry.close()
            await dispatcher.close()
            await the_store.close()
            log.info("store_closed", db=str(the_store.path))

    return Starlette(
        routes=routes(demo=demo),
        middleware=[
            Middleware(RequestLogMiddleware),
            # Bodies first, so that a slow one never holds an in-flight slot.
            Middleware(BodyReader, timeout=server.body_timeout_seconds),
            Middleware(AdmissionMiddleware, limit=server.max_in_flight),
            cors_middleware(config),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            StoreBusy: _busy,
            StoreClosed: _busy,
            StoreUnavailable: _store_unavailable,
            sqlite3.OperationalError: _store_error,
        },
        lifespan=lifespan,
    )


def _answer(error: ApiError) -> Response:
    annotate(outcome=error.outcome)
    return error_response(error)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _answer(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    outcome = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _answer(ApiError(exc.status_code, exc.detail, outcome,
                            headers=dict(exc.headers) if exc.headers else None))


async def _busy(request: Request, exc: Exception) -> Response:
    return _answer(errors.busy())


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    return _answer(errors.store_unavailable())


async def _store_error(request: Request, exc: Exception) -> Response:
    # A read that failed (a full disk, an I/O error): the store, not the request, is wrong.
    log.error("store_error", error=repr(exc))
    return _answer(errors.store_unavailable())
