"""create_app: builds the application from its configuration and injected resources."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from actors.actor import Runtime
from actors.clock import Clock, SystemClock
from actors.messages import FireEvent
from actors.registry import ActorRegistry
from app.catalog.apply import CatalogFollower
from app.config.reload import ConfigFile, Reloader
from app.config.schema import Config, ConfigError
from app.conversions.desk import ConversionDesk
from app.edge import errors
from app.edge.admission import AdmissionMiddleware, InFlight
from app.edge.body_reader import BodyReader
from app.edge.cors import CorsRules, CurrentCORS
from app.edge.envelope import error_response
from app.edge.errors import ApiError
from app.edge.fast_path import EventFastPath
from app.edge.middleware import RequestLogMiddleware
from app.events.catalog import Catalog
from app.events.idempotency import IdempotencyKeys
from app.events.senders import open_to_anyone
from app.observe.logs import annotate
from app.observe.metrics import Metrics
from app.postbacks.dispatcher import Dispatcher
from app.postbacks.plan import Planner
from app.reports.breakdowns import Breakdowns
from app.reports.gate import ReportGate
from app.reports.processes import ReportProcesses
from app.routes import LANDMARKS, docs, operate, routes
from app.services import Current, Services
from storage.backend import EventStore, Unsupported, is_postgres_url
from storage.errors import ConversionConflict, StoreBusy, StoreClosed, StoreUnavailable
from storage.postgres.bounded import CONNECTION_ERRORS
from storage.postgres.store import PostgresStore
from storage.records import PostbackRow
from storage.sqlite.store import Store

log = structlog.get_logger("app")


def build_store(config: Config) -> EventStore:
    """The store the configured durability asks for."""
    server = config.server
    if is_postgres_url(server.db):
        # Commit only (the config refuses write-behind): the database decides each answer.
        # A postback stays leased to the process sending it for longer than an attempt
        # and its record can take; past that the process is taken for dead.
        lease = max(5.0, 2 * config.delivery.timeout_seconds + server.write_timeout_seconds)
        return PostgresStore(server.db, max_pending=server.max_pending_writes,
                             write_timeout=server.write_timeout_seconds, lease_seconds=lease)
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


def base_url(host: str, port: int) -> str:
    """Where this machine reaches the server: a wildcard address through loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    store: EventStore | None = None,
    demo: bool = False,
    config_file: ConfigFile | None = None,
    metrics_registry: CollectorRegistry | None = None,
    reload_on_sighup: bool = False,
) -> Starlette:
    """The ASGI app. Its lifespan opens the store and, on shutdown, flushes and closes it.

    ``demo`` serves the example landing page that goes with the built-in demo config.
    ``config_file`` is what a reload reads again (SIGHUP too, with ``reload_on_sighup``).
    """
    clock = clock or SystemClock()
    the_store = store or build_store(config)
    server = config.server
    metrics = Metrics(config, metrics_registry)
    planner = _CurrentPlanner(Planner(config))
    cors = CorsRules(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await the_store.open()
        breakdowns = Breakdowns(the_store)
        await breakdowns.use(config.reports.breakdowns)
        the_store.writer.commit_observer = metrics.observe_commit
        the_store.on_commit(metrics.on_commit)
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
        metrics.bind(_LiveValues(the_store, registry))

        def apply(new: Config, catalog_version: int | None = None) -> None:
            # No await in here: no request runs between the first assignment and the last.
            version = (current.services.catalog_version if catalog_version is None
                       else catalog_version)
            metrics.catalog_version.set(version)
            new_planner = Planner(new)
            planner.current = new_planner
            dispatcher.use_settings(new.delivery)
            metrics.use_config(new)
            cors.use(new)
            processes.resize(new.server.max_concurrent_reports)
            breakdowns.follow(new.reports.breakdowns)
            current.services = dataclasses.replace(
                current.services, config=new, catalog=Catalog(new), planner=new_planner,
                catalog_version=version)

        processes = ReportProcesses(server.max_concurrent_reports)
        follower = (CatalogFollower(the_store, clock, lambda: current.services.config, apply)
                    if server.catalog == "database" else None)
        reloader = Reloader(config_file, lambda: current.services.config, apply,
                            catalog=None if follower is None else follower.overlay)
        current = Current(Services(
            config=config, catalog=Catalog(config), planner=planner.current,
            store=the_store, registry=registry, dispatcher=dispatcher, clock=clock,
            metrics=metrics, reloader=reloader, report_gate=ReportGate(),
            report_processes=processes, follower=follower,
            # Status changes plan their postbacks with the config in force, like actors.
            conversions=ConversionDesk(the_store, lambda: planner.current, clock,
                                       on_changed=metrics.observe_conversion_changes,
                                       caps=lambda: current.services.catalog.caps),
            keys=IdempotencyKeys(the_store, clock, hours=server.idempotency_hours)))
        if follower is not None:
            await follower.start()
        loop = asyncio.get_running_loop()
        if reload_on_sighup:
            loop.add_signal_handler(signal.SIGHUP, _reload_logging_errors, reloader)
        log.info("store_opened", db=the_store.location, durability=server.durability)
        base = base_url(server.host, server.port)
        log.info("serving", url=base, **{name: base + path for name, path in LANDMARKS.items()})
        for cid in open_to_anyone(config):
            log.warning("campaign_open_to_anyone", cid=cid)
        try:
            # "services" is the state as it was at start-up (tests read the store from it).
            yield {"current": current, "services": current.services, "breakdowns": breakdowns}
        finally:
            if reload_on_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            # Requests are done by now; the dispatcher may still record attempts, then
            # the store commits everything queued.
            processes.close()
            if follower is not None:
                await follower.close()
            await registry.close()
            await dispatcher.close()
            await breakdowns.close()
            await the_store.close()
            log.info("store_closed", db=the_store.location)

    table = [*routes(demo=demo), *operate.routes(), *docs.routes(demo=demo)]
    # One bound on requests in flight, whichever layer admits them.
    in_flight = InFlight(server.max_in_flight)
    exception_handlers: dict[Any, Any] = {
        ApiError: _api_error,
        HTTPException: _http_error,
        StoreBusy: _busy,
        StoreClosed: _busy,
        StoreUnavailable: _store_unavailable,
        # Still deciding against other processes' changes after several tries.
        ConversionConflict: _store_unavailable,
        sqlite3.OperationalError: _store_error,
        Unsupported: _unsupported,
        # A PostgreSQL gone or restarting, on a path that did not say so itself.
        **dict.fromkeys(CONNECTION_ERRORS, _store_error),
    }
    return _Service(
        # Server-to-server event posts end there, with the same log line, body bound and
        # admission as the middleware below gives every other request.
        Middleware(EventFastPath, routes=table, exception_handlers=exception_handlers,
                   slots=in_flight, metrics=metrics, body_timeout=server.body_timeout_seconds),
        routes=table,
        middleware=[
            Middleware(RequestLogMiddleware, metrics=metrics),
            # Bodies first, so that a slow one never holds an in-flight slot.
            Middleware(BodyReader, timeout=server.body_timeout_seconds),
            Middleware(AdmissionMiddleware, slots=in_flight),
            Middleware(CurrentCORS, rules=cors),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )


class _Service(Starlette):
    """Starlette with one layer in front of its error middleware.

    Starlette puts ServerErrorMiddleware first, and it wraps ``send`` for every request;
    the front layer (the event fast path) answers its own crashes, so its requests skip
    it: a coroutine and two wrapped sends fewer per event (about 1 us).
    """

    def __init__(self, front: Middleware, **options: Any) -> None:
        self._front = front
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        layer, args, kwargs = self._front
        app: ASGIApp = layer(super().build_middleware_stack(), *args, **kwargs)
        return app


class _CurrentPlanner:
    """The planner actors call: always the one of the config in force."""

    def __init__(self, planner: Planner) -> None:
        self.current = planner

    def __call__(self, event: FireEvent, lead_fields: Mapping[str, Any], conversion_id: str,
                 fired_at: str) -> tuple[PostbackRow, ...]:
        return self.current(event, lead_fields, conversion_id, fired_at)


class _LiveValues:
    """What the metrics read at scrape time."""

    def __init__(self, store: EventStore, registry: ActorRegistry) -> None:
        self._store = store
        self._registry = registry

    def queue_depth(self) -> int:
        return self._store.writer.pending

    def store_writable(self) -> bool:
        return not self._store.writer.failing

    def actors_live(self) -> int:
        return len(self._registry)

    def actor_evictions(self) -> int:
        return self._registry.evictions

    def cold_loads(self) -> int:
        return self._store.cold_loads


def _reload_logging_errors(reloader: Reloader) -> None:
    try:
        reloader.reload()
    except ConfigError as exc:
        log.error("config_reload_refused", error=str(exc))


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


async def _unsupported(request: Request, exc: Exception) -> Response:
    return _answer(ApiError(501, str(exc), "unsupported"))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    return _answer(errors.store_unavailable())


async def _store_error(request: Request, exc: Exception) -> Response:
    # A read that failed (a full disk, an I/O error): the store, not the request, is wrong.
    log.error("store_error", error=repr(exc))
    return _answer(errors.store_unavailable())
