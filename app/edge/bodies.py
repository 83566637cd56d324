"""Reading request bodies: JSON under any content type, or an urlencoded form.

Browsers' ``navigator.sendBeacon`` posts JSON as text/plain and ``curl -d`` labels JSON as a
form, so a body that opens like JSON is read as JSON whatever its label; otherwise the
form content type means a form and anything else must be JSON.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request

from app.edge import errors
from app.edge.body_reader import BODY
from app.edge.request_info import header
from storage.money import decimal_from_text

# Non-integer JSON numbers become Decimal straight from their text: 45.10 stays 45.10, and
# an exponent of any length is read (Decimal's own reading fails past 18 digits).
_json_object = msgspec.json.Decoder(dict[str, Any], float_hook=decimal_from_text)
_JSON_OPENERS = (b"{", b"[", b'"')


async def read_fields(request: Request) -> dict[str, Any]:
    """The body as a field dict; 400 when it is not a JSON object or a form.

    Its size and the time it took to arrive were bounded by ``app.edge.body_reader``.
    """
    # Without the reader's copy (an app not behind it), the same bytes from receive.
    body = request.scope.get(BODY)  # pragma: no mutate
    if body is None:
        body = await request.body()
    return fields_from_body(body, header(request, b"content-type"))


def fields_from_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A body read as a field dict; raises the API's 400 when it is neither kind."""
    is_form = content_type is not None and (
        content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded")
    if is_form and body.lstrip()[:1] not in _JSON_OPENERS:
        return form_fields(body)
    try:
        return _json_object.decode(body)
    # Invalid UTF-8 inside a string and nesting past the decoder's depth are malformed
    # JSON too, though msgspec reports them with other exceptions.
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        raise errors.invalid_json() from None


def form_fields(body: bytes | str) -> dict[str, Any]:
    """An urlencoded form or query string; when a name repeats, the last value wins."""
    try:
        text = body.decode() if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise errors.invalid_json() from None
    return dict(parse_qsl(text, keep_blank_values=True))
