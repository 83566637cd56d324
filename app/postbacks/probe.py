"""A test request to a postback endpoint: a sample conversion rendered through its template,
signed and sent once as a delivery would be, and never recorded as one.

For an operator checking a buyer's URL or secret before (or after) real postbacks flow:
the answer shows exactly what was sent and what came back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import httpx
import msgspec

from actors.clock import utc_text
from actors.messages import FireEvent
from app.config.endpoints import Endpoint
from app.config.schema import Config, DeliveryConfig
from app.postbacks.macros import macro_values, render_body, render_url
from app.postbacks.signing import signature_headers, webhook_headers

# What a delivery's client sends (app/postbacks/dispatcher.py); a test pins them equal.
USER_AGENT = "event-postback"
# How much of the answer is shown: enough for an error page's message.
ANSWER_SHOWN_BYTES = 2048
# The pid of a buyer postback's sample: the one source every config has.
SAMPLE_PID = "organic"
_JSON_BODY = {"Content-Type": "application/json"}


class SentRequest(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    url: str
    # Every header sent: the signature headers are shown, the secret never is.
    headers: dict[str, str]
    body: str | None


class ReceivedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    headers: dict[str, str]
    # The first ANSWER_SHOWN_BYTES bytes, as text.
    body: str


class EndpointTestData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a test request sent, and the endpoint's answer or why there was none."""

    request: SentRequest
    response: ReceivedAnswer | None = None
    # The transport's error (refused, timed out, bad URL...) when no answer came.
    error: str | None = None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Sample:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None


def sample_event(endpoint: Endpoint, config: Config, test_id: str) -> FireEvent:
    """The conversion a test request reports: the entry's campaign (a source's: the first
    campaign) and its first conversion event, ids marked as a test."""
    cid = endpoint.cid
    if cid is None:
        cid = config.campaigns[0].cid if config.campaigns else ""
    campaign = next((c for c in config.campaigns if c.cid == cid), None)
    events = [] if campaign is None else campaign.events
    event_id = next((e.event_id for e in events if e.conversion),
                    events[0].event_id if events else "")
    return FireEvent(transaction_id=test_id, cid=cid, event_id=event_id,
                     pid=endpoint.pid or SAMPLE_PID, conversion=True, once=True,
                     revenue=Decimal("1.00"), payout=Decimal("0.50"))


def sample(endpoint: Endpoint, config: Config, now: datetime, test_id: str) -> Sample:
    """The request a delivery of the sample conversion would make, signed at ``now``."""
    values = macro_values(sample_event(endpoint, config, test_id), {}, test_id,
                          utc_text(now), status="approved")
    # In the form the HTTP client sends it, as a delivery signs it (app/postbacks/plan.py).
    url = str(httpx.URL(render_url(endpoint.url, values)))
    body = render_body(values) if endpoint.method == "POST" else None
    headers = dict(_JSON_BODY) if body is not None else {}
    if endpoint.secret:
        signed = body.encode() if body is not None else url.encode()
        headers |= signature_headers(endpoint.secret, int(now.timestamp()), signed)
    if endpoint.signing_secrets:
        headers |= webhook_headers(endpoint.signing_secrets, test_id, int(now.timestamp()),
                                   body.encode() if body is not None else b"")
    return Sample(endpoint.method, url, headers, body)


def sample_id() -> str:
    """A transaction and conversion id no real one can be: a receiver can tell it apart."""
    return f"test-{uuid.uuid4()}"


async def probe(endpoint: Endpoint, config: Config, *, client: httpx.AsyncClient,
                now: datetime, timer: Callable[[], float],
                ids: Callable[[], str] = sample_id) -> EndpointTestData:
    """Render the sample conversion through ``endpoint`` and send it once."""
    return await send(client, sample(endpoint, config, now, ids()),
                      timeout=config.delivery.timeout_seconds, timer=timer)


def client_for(settings: DeliveryConfig) -> httpx.AsyncClient:
    """A client set up as the dispatcher's: no redirects followed, the delivery timeout."""
    return httpx.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False,
                             headers={"User-Agent": USER_AGENT})


async def send(client: httpx.AsyncClient, request: Sample, *, timeout: float,
               timer: Callable[[], float]) -> EndpointTestData:
    """Send ``request`` once; the answer, or the transport error, and how long it took."""
    began = timer()
    answer: ReceivedAnswer | None = None
    error: str | None = None
    try:
        built = client.build_request(request.method, request.url, headers=request.headers,
                                     content=None if request.body is None
                                     else request.body.encode())
    except httpx.InvalidURL as exc:
        return _result(request, None, None, f"InvalidURL: {exc}", 0.0)
    try:
        # As a delivery: the whole request bounded, a slow drip included.
        async with asyncio.timeout(timeout):
            response = await client.send(built, stream=True)
            try:
                answer = ReceivedAnswer(status=response.status_code,
                                        headers=_shown(response.headers),
                                        body=await _head(response, ANSWER_SHOWN_BYTES))
            finally:
                await response.aclose()
    except (httpx.TimeoutException, TimeoutError) as exc:
        error = f"timeout: {type(exc).__name__}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    latency_ms = round((timer() - began) * 1000, 3)
    return _result(request, built, answer, error, latency_ms)


def _result(request: Sample, built: httpx.Request | None, answer: ReceivedAnswer | None,
            error: str | None, latency_ms: float) -> EndpointTestData:
    headers = request.headers if built is None else _shown(built.headers)
    return EndpointTestData(
        request=SentRequest(method=request.method, url=request.url, headers=headers,
                            body=request.body),
        response=answer, error=error, latency_ms=latency_ms)


def _shown(headers: httpx.Headers) -> dict[str, str]:
    """Headers as sent or received, names in their own case, a repeated one joined."""
    shown: dict[str, str] = {}
    for raw_name, raw_value in headers.raw:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        shown[name] = f"{shown[name]}, {value}" if name in shown else value
    return shown


async def _head(response: httpx.Response, limit: int) -> str:
    """The first ``limit`` bytes of the answer, as text; the rest is never read."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return kept.decode(errors="replace")
