"""Duplicate leads: keyed hashes of a lead's field values, and the earlier lead they repeat.

A campaign's ``dedupe`` names lead fields (``email``, ``phone``...). Each value is
normalised, then hashed with HMAC-SHA256 under ``[server] dedupe_secret`` over the
campaign, the field name and the value: the ``lead_keys`` table holds only these hashes,
so a copied database lists no emails, and without the secret a hash cannot be checked
against a guessed value. Values are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from actors.clock import utc_text
from app.config.money_rules import DedupeConfig
from storage.backend import EventStore


def normalised(field: str, value: Any) -> str | None:
    """The form of ``value`` two leads are compared in; None when nothing is left.

    Trimmed and lower-cased (an email's case never tells two people apart); a phone keeps
    only its digits, so ``+1 (555) 010-2000`` is ``15550102000``. Only text and numbers
    are compared.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    text = str(value).strip()
    if field == "phone":
        text = "".join(char for char in text if char.isdigit())
    return text.lower() or None


def digest(secret: str, cid: str, field: str, value: str) -> str:
    """The keyed hash (hex) of a normalised ``value`` of ``field`` on campaign ``cid``."""
    # NUL cannot occur in an id, so the parts cannot run into each other.
    message = "\0".join((cid, field, value)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def lead_digests(dedupe: DedupeConfig, secret: str, cid: str,
                 *fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The hashes of the de-duplicated fields among ``fields``, each once, in order."""
    found: dict[str, None] = {}
    for each in fields:
        for name in dedupe.fields:
            value = normalised(name, each.get(name))
            if value is not None:
                found[digest(secret, cid, name, value)] = None
    return tuple(found)


class Dedupe(msgspec.Struct, frozen=True, kw_only=True):
    """What the campaign's dedupe makes of one request."""

    # The hashes the request's lead fields add to the lead.
    keys: tuple[str, ...] = ()
    # A conversion's lead repeats this earlier lead (its transaction id).
    duplicate_of: str | None = None
    action: Literal["pending", "reject"] = "pending"


NOTHING = Dedupe()


def keys_of(dedupe: DedupeConfig | None, secret: str | None, cid: str,
            lead_fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The hashes a request's lead fields add to its lead (none without dedupe)."""
    if dedupe is None or secret is None:
        return ()
    return lead_digests(dedupe, secret, cid, lead_fields)


async def screen(store: EventStore, dedupe: DedupeConfig | None, secret: str | None, *,
                 cid: str, transaction_id: str, lead_fields: Mapping[str, Any],
                 conversion: bool, now: datetime, settle: bool) -> Dedupe:
    """The keys an event's lead fields add and, for a conversion, the earlier lead of the
    campaign it repeats: the first other lead created within ``days`` before this one
    (this one created now if the event creates it) sharing a hash the lead has stored
    (its fields since its campaign has dedupe) or one of the event's.

    ``settle``: writes are acknowledged before they commit (write-behind), so the query
    waits for them first: a lead clicked a moment ago counts.
    """
    if dedupe is None or secret is None:
        return NOTHING
    keys = lead_digests(dedupe, secret, cid, lead_fields)
    if not conversion:
        return Dedupe(keys=keys)
    if settle:
        await store.flush()
    # The lead's stored hashes join these in the store's query.
    earlier = await store.first_lead_sharing(cid, transaction_id, keys, dedupe.days,
                                             new_at=utc_text(now))
    return Dedupe(keys=keys, duplicate_of=earlier, action=dedupe.action)
