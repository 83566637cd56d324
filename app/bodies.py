"""Reading request bodies: JSON under any content type, or an urlencoded form.

Browsers' ``navigator.sendBeacon`` posts JSON as text/plain and ``curl -d`` labels JSON as a
form, so a body that opens like JSON is read as JSON whatever its label; otherwise the
form content type means a form and anything else must be JSON.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import ClientDisconnect, Request

from app import errors
from app.request_info import header

MAX_BODY_BYTES = 16 * 1024

# Non-integer JSON numbers become Decimal straight from their text: 45.10 stays 45.10.
_json_object = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_JSON_OPENERS = (b"{", b"[", b'"')


async def read_fields(request: Request) -> dict[str, Any]:
    """The body as a field dict; 413 past ``MAX_BODY_BYTES``, 400 when not an object/form."""
    body = await _read_limited(request, MAX_BODY_BYTES)
    content_type = header(request, b"content-type") or ""
    is_form = (content_type.split(";", 1)[0].strip().lower()
               == "application/x-www-form-urlencoded")
    if is_form and body.lstrip()[:1] not in _JSON_OPENERS:
        return form_fields(body)
    try:
        return _json_object.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise errors.invalid_json() from None


def form_fields(body: bytes | str) -> dict[str, Any]:
    """An urlencoded form or query string; when a name repeats, the last value wins."""
    try:
        text = body.decode() if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise errors.invalid_json() from None
    return dict(parse_qsl(text, keep_blank_values=True))


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.body_too_large(limit)
    # Straight from the ASGI messages: a small body usually comes in one.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
