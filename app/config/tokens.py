"""API tokens with roles (``[[tokens]]``): who may call which route.

The config keeps a token's SHA-256, never the token: a token is a long random string (16
to 255 printable characters, as ``admin_token``), so a plain hash is enough to make the
file useless to whoever reads it, and it is checked in constant time per entry.
``event-postback hash-token TOKEN`` prints the line to put in the file.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

if TYPE_CHECKING:
    from app.config.schema import Config

Role = Literal["admin", "operator", "viewer", "partner"]
HASH_PREFIX = "sha256:"
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_TOKEN = re.compile(r"[\x21-\x7e]{16,255}")
Name = Annotated[str, Meta(min_length=1, max_length=255)]


class TokenConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Shown in the request log of every call made with it: the audit trail.
    name: Name
    # "sha256:<hex>" of the token (event-postback hash-token).
    token: str
    role: Role
    # A partner's source: it sees that pid's numbers only.
    pid: Name | None = None


def hash_token(token: str) -> str:
    """The form a token is kept in the config."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a token, or None (the rule ``admin_token`` follows)."""
    if not _TOKEN.fullmatch(token):
        return "must be 16 to 255 printable ASCII characters, no spaces"
    return None


def tokens_problem(config: Config, pids: set[str]) -> tuple[str, str] | None:
    """The first ``[[tokens]]`` entry that breaks a rule, or None."""
    names: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for i, entry in enumerate(config.tokens):
        place = f"tokens[{i}]"
        if entry.name in names:
            return (f"{place}.name",
                    f"duplicate name {entry.name!r} (also tokens[{names[entry.name]}])")
        names[entry.name] = i
        if not _HASH.fullmatch(entry.token):
            return (f"{place}.token", "must be the token's hash, sha256:<64 hex digits> "
                                      "(event-postback hash-token TOKEN prints it)")
        if entry.token in hashes:
            return f"{place}.token", f"the same token as tokens[{hashes[entry.token]}]"
        hashes[entry.token] = i
        if entry.role == "partner" and entry.pid is None:
            return f"{place}.pid", "a partner token names the source it sees"
        if entry.role != "partner" and entry.pid is not None:
            return f"{place}.pid", "only a partner token is limited to one source"
        if entry.pid is not None and entry.pid not in pids:
            return f"{place}.pid", f"{entry.pid!r} is not a configured source"
    return None
