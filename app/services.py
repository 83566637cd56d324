"""The resources a request handler works with, built once per app by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from actors.clock import Clock
from actors.registry import ActorRegistry
from app.catalog.apply import CatalogFollower
from app.config.reload import Reloader
from app.config.schema import Config
from app.conversions.desk import ConversionDesk
from app.events.catalog import Catalog
from app.events.idempotency import IdempotencyKeys
from app.observe.metrics import Metrics
from app.postbacks.dispatcher import Dispatcher
from app.postbacks.plan import Planner
from app.reports.gate import ReportGate
from app.reports.processes import ReportProcesses
from storage.backend import EventStore


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    catalog: Catalog
    planner: Planner
    store: EventStore
    registry: ActorRegistry
    dispatcher: Dispatcher
    clock: Clock
    conversions: ConversionDesk
    keys: IdempotencyKeys
    metrics: Metrics
    reloader: Reloader
    report_gate: ReportGate
    report_processes: ReportProcesses
    # With [server] catalog = "database": what keeps this process on the newest version.
    follower: CatalogFollower | None = None
    # The catalog version of ``config`` (0: the config file's own catalog).
    catalog_version: int = 0


class Current:
    """The Services in force; a config reload replaces the whole object at once.

    The lifespan state is copied into each request's scope when the app starts, so the
    swap happens on this holder, which every copy shares.
    """

    __slots__ = ("services",)

    def __init__(self, services: Services) -> None:
        self.services = services


def services(request: Request) -> Services:
    """The Services a request works with; read once per request, so it never sees a mix
    of two configs."""
    # The lifespan state straight from the scope: request.state would build a State
    # object around it for every request.
    current: Current = request.scope["state"]["current"]
    return current.services
