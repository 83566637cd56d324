"""The one JSON envelope every answer uses, success or error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from app.edge.errors import INTERNAL_ERROR, ApiError


class _Success(msgspec.Struct, omit_defaults=True):
    status: int
    type: str
    message: str
    data: Any
    # Optional fields that were invalid and left out of an event that still fired.
    invalidFields: dict[str, str] | None = None  # the API's own spelling


class _Error(msgspec.Struct, omit_defaults=True):
    status: int
    type: str
    message: str
    missingFields: list[str] | None = None  # the API's own spelling
    invalidFields: dict[str, str] | None = None
    # A machine-readable reason, on the answers that have one (e.g. "invalid_token").
    code: str | None = None


class JsonAnswer(Response):
    """An envelope answer: the headers Starlette's Response gives it, in the same order
    (those given, then content-length, then content-type), built directly.

    Response's generic header logic (which headers are given, charset, bodiless statuses)
    never applies to an envelope: it has a body, no status without one, and no caller
    gives it a length or a type. Built directly, an answer takes 1.1 us instead of 3.0.
    """

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        raw = [] if not headers else [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()]
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


# The error shape, as the OpenAPI document names it.
ErrorEnvelope = _Error
_encoder = msgspec.json.Encoder()


def error_body(
    status: int,
    message: str,
    *,
    missing: list[str] | None = None,
    invalid: dict[str, str] | None = None,
    code: str | None = None,
) -> bytes:
    return _encoder.encode(
        _Error(status=status, type="error", message=message, missingFields=missing,
               invalidFields=invalid, code=code)
    )


def error_response(error: ApiError) -> Response:
    return JsonAnswer(
        error_body(error.status, error.message, missing=error.missing, invalid=error.invalid,
                   code=error.code),
        error.status,
        error.headers,
    )


def internal_error_body() -> bytes:
    return error_body(500, INTERNAL_ERROR)


def success_body(status: int, message: str, data: Any,
                 *, invalid: dict[str, str] | None = None) -> bytes:
    return _encoder.encode(_Success(status=status, type="success", message=message, data=data,
                                    invalidFields=invalid or None))


def success_response(
    status: int, message: str, data: Any, *, headers: dict[str, str] | None = None,
    invalid: dict[str, str] | None = None,
) -> Response:
    return JsonAnswer(success_body(status, message, data, invalid=invalid), status, headers)
