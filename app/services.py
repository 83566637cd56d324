"""The resources a request handler works with, built once per app by its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from actors.clock import Clock
from actors.registry import ActorRegistry
from app.catalog import Catalog
from app.config import Config
from app.conversions.desk import ConversionDesk
from app.idempotency import IdempotencyKeys
from app.postbacks.dispatcher import Dispatcher
from app.postbacks.plan import Planner
from storage.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    catalog: Catalog
    planner: Planner
    store: Store
    registry: ActorRegistry
    dispatcher: Dispatcher
    clock: Clock
    conversions: ConversionDesk
    keys: IdempotencyKeys


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found
