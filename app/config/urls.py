"""The URL templates of a config: which macros each may name, and where."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from app.events.lead_fields import EVENT_LEAD_FIELDS

_LANDING_MACROS = frozenset({"transaction_id", "cid", "pid"})

# Macros every postback URL may use, whatever the lead carries.
EVENT_MACROS = ("cid", "pid", "event_id", "transaction_id", "conversion_id", "revenue",
                "payout", "conversion", "fired_at", "status", "reason")


def known_macros(lead_fields: list[str]) -> frozenset[str]:
    """Every macro a postback URL may name, with the config's extra ``lead_fields``."""
    return frozenset((*EVENT_MACROS, *EVENT_LEAD_FIELDS, *lead_fields))


def postback_url_problem(url: str, macros: frozenset[str]) -> str | None:
    """Why a postback URL template cannot be used, or None.

    Macros may only appear after the host, so no value can send a postback elsewhere.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http(s) URL"
    if "{" in parts.netloc:
        return "macros may not appear in the host"
    names = _unknown(url, macros)
    return f"unknown macro {names} (declare extra lead fields in lead_fields)" if names else None


def landing_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http(s) URL"
    names = _unknown(url, _LANDING_MACROS)
    return f"unknown macro {names} (known: {{transaction_id}}, {{cid}}, {{pid}})" if names else None


def _unknown(url: str, known: frozenset[str]) -> str:
    """The macros ``url`` names that are not ``known``, as {a}, {b}; empty if none."""
    unknown = set(re.findall(r"\{(\w*)\}", url)) - known
    return ", ".join(sorted("{" + name + "}" for name in unknown))
