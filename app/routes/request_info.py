"""What the service records about who sent a request."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from app.logs import annotate

_USER_AGENT_LIMIT = 512


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
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
