"""A pixel told no: the GIF still comes back, with the status and headers the JSON would have.

A tracker that only sees the image's status code must still learn to back off (503 with
Retry-After) and must never cache the answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from app.observe.logs import merge_request_fields
from storage.errors import StoreBusy, StoreUnavailable
from storage.records import WriteOp
from tests.conftest import CID, Harness, make_config, running
from tests.test_pixels import is_one_pixel_gif


def pixel_params(transaction_id: str) -> dict[str, str]:
    return {"cid": CID, "event_id": "quote_viewed", "transaction_id": transaction_id,
            "format": "gif"}


@pytest.mark.parametrize(("failure", "status", "retry_after", "outcome"), [
    (StoreBusy, 503, "1", "busy"),
    (StoreUnavailable, 503, "5", "store_unavailable"),
])
async def test_a_pixel_the_store_refused_says_when_to_come_back(
    db_path: Path, failure: type[Exception], status: int, retry_after: str, outcome: str
) -> None:
    async with running(make_config(db_path)) as api:
        transaction_id = await api.click()
        store = api.services.store
        real_submit = store.submit

        def refusing(op: WriteOp, *, bounded: bool = True) -> Any:
            raise failure

        store.submit = refusing  # type: ignore[method-assign]
        try:
            with structlog.testing.capture_logs(processors=[merge_request_fields]) as logs:
                response = await api.client.get("/api/event/trigger",
                                                params=pixel_params(transaction_id))
        finally:
            store.submit = real_submit  # type: ignore[method-assign]
        assert response.status_code == status
        assert response.headers["content-type"] == "image/gif"
        assert response.headers["retry-after"] == retry_after
        assert response.headers["cache-control"] == "no-store"
        assert is_one_pixel_gif(response.content)
        [line] = [entry for entry in logs if entry["event"] == "request"]
        assert (line["status"], line["outcome"]) == (status, outcome)


async def test_a_refused_pixel_logs_why(api: Harness) -> None:
    with structlog.testing.capture_logs(processors=[merge_request_fields]) as logs:
        response = await api.client.get("/api/event/trigger", params=pixel_params("txn_no"))
    assert response.status_code == 400
    assert response.headers["cache-control"] == "no-store"
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["outcome"] == "invalid_transaction_id"


async def test_a_json_answer_to_a_get_says_it_fired(api: Harness) -> None:
    transaction_id = await api.click()
    params = pixel_params(transaction_id)
    del params["format"]
    response = await api.client.get("/api/event/trigger", params=params)
    assert response.json()["message"] == "Event triggered successfully"
