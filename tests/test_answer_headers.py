"""Envelope answers carry exactly the headers Starlette's Response would give them."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from app.edge.envelope import JsonAnswer

BODY = b'{"status":200,"type":"success","message":"Event triggered successfully"}'


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 408, 409, 413, 429, 500, 503])
@pytest.mark.parametrize("headers", [
    None, {}, {"Cache-Control": "no-store"}, {"Retry-After": "1"},
    {"WWW-Authenticate": "Bearer"}, {"Connection": "close"},
    {"Cache-Control": "no-store", "Retry-After": "5"},
])
def test_an_envelope_answer_has_the_headers_and_body_of_a_starlette_response(
        status: int, headers: dict[str, str] | None) -> None:
    mine = JsonAnswer(BODY, status, headers)
    theirs = Response(BODY, status_code=status, headers=headers, media_type="application/json")
    assert mine.raw_headers == theirs.raw_headers
    assert (mine.status_code, mine.body, mine.background) == (
        theirs.status_code, theirs.body, theirs.background)
