"""What the service records about who sent a request."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from app.observe.logs import annotate

_USER_AGENT_LIMIT = 512
# Where a request's headers are kept as a dict, built once per request.
HEADERS = "event_postback.headers"


def header(request: Request, name: bytes) -> str | None:
    """A request header by its lower-case name, from a dict built once per request.

    Starlette's Headers scans the list and raises KeyError for every header that is
    absent (Origin, on every server-to-server call); the hot path asks for four.
    """
    scope = request.scope
    found = scope.get(HEADERS)
    if found is None:
        found = scope[HEADERS] = dict(scope["headers"])
    value = found.get(name)
    return None if value is None else value.decode("latin-1")


def client_ip(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


def user_agent(request: Request) -> str | None:
    agent = header(request, b"user-agent")
    return agent[:_USER_AGENT_LIMIT] if agent else None


def bind_ids(raw: dict[str, Any]) -> None:
    """Put the ids a request names on its log line, even if it then fails a check."""
    ids = {
        name: value[:255]
        for name in ("cid", "event_id", "transaction_id", "pid")
        if isinstance(value := raw.get(name), str) and value
    }
    if ids:
        annotate(**ids)
