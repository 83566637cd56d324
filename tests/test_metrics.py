"""GET /metrics: Prometheus text whose values match what the test sent, labels bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.config.schema import Config, parse_config, with_server_overrides
from app.observe.metrics import Metrics
from tests.conftest import (
    ADMIN_TOKEN,
    BACKENDS,
    CID,
    PID,
    Harness,
    make_config,
    running,
    running_on,
)
from tests.receiver import Answer, Receiver

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UNKNOWN_CID = "cmp_never_configured_xyz"


def metrics_config(receiver: Receiver, db: Path, public: str = "") -> Config:
    text = f"""
[server]
admin_token = "{ADMIN_TOKEN}"
{public}

[[sources]]
pid = "{PID}"
payout = {{ type = "percent", value = 50 }}
postback_url = "{receiver.url}/source?tid={{transaction_id}}"

[[campaigns]]
cid = "{CID}"

[[campaigns.events]]
event_id = "quote_viewed"

[[campaigns.events]]
event_id = "sale_completed"
conversion = true

[[campaigns.postbacks]]
url = "{receiver.url}/buyer?tid={{transaction_id}}"
"""
    return with_server_overrides(parse_config(text, origin="metrics test"), "test",
                                 db=str(db))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Harness) -> tuple[str, Samples]:
    response = await api.client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    """Which store the test runs on, for ``running_on``."""
    return request


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
async def test_metrics_count_the_requests_events_money_and_postbacks_sent(
    receiver: Receiver, db_path: Path, backend: pytest.FixtureRequest
) -> None:
    receiver.script("/source", *[Answer(status=404)] * 3)  # a 4xx fails at once
    async with running_on(backend, metrics_config(receiver, db_path)) as api:
        transaction_ids = [await api.click(pid=PID) for _ in range(3)]
        for transaction_id, revenue in zip(transaction_ids, ["45", "10", "5.5"], strict=True):
            response = await api.fire(transaction_id, "sale_completed", pid=PID,
                                      revenue=revenue)
            assert response.status_code == 200, response.text
        assert (await api.fire(transaction_ids[0], "quote_viewed")).status_code == 200
        api.clock.advance(5)
        duplicate = await api.fire(transaction_ids[0], "sale_completed", revenue="1")
        assert duplicate.status_code == 400
        unknown = await api.client.post("/api/event/trigger", json={
            "cid": UNKNOWN_CID, "event_id": "made_up", "transaction_id": transaction_ids[1]})
        assert unknown.status_code == 400
        assert (await api.client.get("/no/such/path/abc123")).status_code == 404
        await api.services.dispatcher.drain()
        await api.services.store.flush()

        text, samples = await scrape(api)

    events = "event_postback_events_total"
    assert value(samples, events, cid=CID, event_id="sale_completed", outcome="converted") == 3
    assert value(samples, events, cid=CID, event_id="quote_viewed", outcome="fired") == 1
    assert value(samples, events, cid=CID, event_id="sale_completed", outcome="duplicate") == 1
    assert value(samples, events, cid="other", event_id="other", outcome="invalid_cid") == 1
    assert value(samples, "event_postback_conversions_revenue_total", cid=CID) == 60.5
    assert value(samples, "event_postback_payout_total", pid=PID) == 30.25

    requests = "event_postback_requests_total"
    assert value(samples, requests, route="/api/click", status="200",
                 outcome="lead_created") == 3
    assert value(samples, requests, route="/api/event/trigger", status="200",
                 outcome="converted") == 3
    assert value(samples, requests, route="unmatched", status="404", outcome="not_found") == 1
    assert value(samples, "event_postback_request_duration_seconds_count",
                 route="/api/click") == 3

    host = urlsplit(receiver.url).netloc
    attempts = "event_postback_postback_attempts_total"
    assert value(samples, attempts, host=host, outcome="delivered") == 3
    assert value(samples, attempts, host=host, outcome="failed") == 3
    assert value(samples, "event_postback_postback_latency_seconds_count", host=host) == 6
    assert value(samples, "event_postback_postbacks", status="delivered") == 3
    assert value(samples, "event_postback_postbacks", status="failed") == 3
    assert value(samples, "event_postback_postbacks", status="pending") == 0

    batches = value(samples, "event_postback_commit_batch_size_count")
    assert batches > 0
    assert value(samples, "event_postback_commit_duration_seconds_count") == batches
    # Every write of the run is in some batch: 3 leads, 5 events, 6 postback attempts.
    assert value(samples, "event_postback_commit_batch_size_sum") >= 3 + 5 + 6
    assert value(samples, "event_postback_write_queue_depth") == 0
    assert value(samples, "event_postback_store_writable") == 1
    assert value(samples, "event_postback_actors_live") == 3
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0

    # Label values come from the config, never from what a request sent.
    assert UNKNOWN_CID not in text
    assert "made_up" not in text
    assert "/no/such/path" not in text


async def test_evictions_and_cold_loads_are_counted(db_path: Path) -> None:
    async with running(make_config(db_path, max_actors=1)) as api:
        first = await api.click()
        await api.click()  # evicts the first
        assert (await api.fire(first)).status_code == 200  # read back, evicting the second
        _, samples = await scrape(api)
    assert value(samples, "event_postback_actor_evictions_total") == 2
    assert value(samples, "event_postback_cold_loads_total") == 1


async def test_metrics_need_the_admin_token(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        assert (await api.client.get("/metrics")).status_code == 401
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["message"] == "Unauthorized"


async def test_metrics_public_serves_them_without_the_token(
    receiver: Receiver, db_path: Path
) -> None:
    config = metrics_config(receiver, db_path, public="metrics_public = true")
    async with running(config) as api:
        response = await api.client.get("/metrics")
        assert response.status_code == 200
        assert "event_postback_store_writable 1.0" in response.text


async def test_each_app_counts_in_a_registry_of_its_own(tmp_path: Path) -> None:
    for name in ("a.db", "b.db"):
        async with running(make_config(tmp_path / name)) as api:
            await api.click()
            _, samples = await scrape(api)
        assert value(samples, "event_postback_requests_total", route="/api/click",
                     status="200", outcome="lead_created") == 1


async def test_scrape_sees_postbacks_still_pending(receiver: Receiver, db_path: Path) -> None:
    receiver.script("/buyer", Answer(status=500))
    receiver.script("/source", Answer(status=500))
    async with running(metrics_config(receiver, db_path)) as api:
        transaction_id = await api.click(pid=PID)
        await api.fire(transaction_id, "sale_completed", pid=PID, revenue="20")
        await api.services.dispatcher.drain()
        _, samples = await scrape(api)
    assert value(samples, "event_postback_postbacks", status="pending") == 2
    assert value(samples, "event_postback_postback_attempts_total",
                 host=urlsplit(receiver.url).netloc, outcome="retry") == 2


def test_request_durations_fall_in_the_le_buckets_prometheus_expects() -> None:
    metrics = Metrics(parse_config("", origin="t"))
    for seconds in (0.0001, 0.00010001, 0.003, 100.0):
        metrics.observe_request("/healthz", 200, {"outcome": "ok"}, seconds)
    text = generate_latest(metrics.registry).decode()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    bucket = "event_postback_request_duration_seconds_bucket"
    assert value(samples, bucket, route="/healthz", le="0.0001") == 1  # le: at the bound
    assert value(samples, bucket, route="/healthz", le="0.00025") == 2
    assert value(samples, bucket, route="/healthz", le="0.005") == 3
    assert value(samples, bucket, route="/healthz", le="+Inf") == 4
    assert value(samples, "event_postback_request_duration_seconds_sum",
                 route="/healthz") == pytest.approx(100.00320001)
    assert value(samples, "event_postback_requests_total", route="/healthz", status="200",
                 outcome="ok") == 4
