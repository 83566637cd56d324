"""Prometheus metrics: one registry per app, label values bounded by the configuration.

Counters that follow requests are fed by the request log middleware (it already knows each
request's route, status, outcome and ids); money and postback attempts are counted from
the batches the store commits, so they count what was stored. Values that exist anyway
(queue depth, live actors, postbacks by status) are read when Prometheus scrapes, as is
the process-wide count of log lines dropped (``app.observe.logs.dropped_lines``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from itertools import accumulate
from typing import Any, Protocol, get_args
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.config.reload import digest
from app.config.schema import ORGANIC, Config
from app.events.caps import CapUse
from app.observe.logs import dropped_lines
from storage.endpoints import EndpointView
from storage.records import (
    HOLD_REASONS,
    ConversionCounts,
    ConversionStatus,
    ConversionView,
    PostbackStatus,
    WriteOp,
)

_go_float: Callable[[float], str] = floatToGoString  # untyped upstream

# A request takes well under a millisecond when nothing waits; commits and slow clients
# take up to the write and body timeouts.
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
_DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Label values for an id the configuration does not know, and for one the request lacks.
OTHER = "other"
NONE = "none"
UNMATCHED = "unmatched"
_ATTEMPT_OUTCOMES: Mapping[PostbackStatus, str] = {
    "delivered": "delivered", "pending": "retry", "failed": "failed"}
POSTBACK_STATUSES: tuple[PostbackStatus, ...] = ("pending", "delivered", "failed", "paused")


class LabelValues:
    """The ids a label may take: those of the configuration, nothing a request invents."""

    def __init__(self, config: Config) -> None:
        self.cids = frozenset(campaign.cid for campaign in config.campaigns)
        self.events = frozenset((campaign.cid, event.event_id)
                                for campaign in config.campaigns for event in campaign.events)
        self.pids = frozenset({ORGANIC, *(source.pid for source in config.sources)})
        urls = [postback.url for campaign in config.campaigns
                for postback in campaign.postbacks]
        urls += [source.postback_url for source in config.sources if source.postback_url]
        self.hosts = frozenset(host_of(url) for url in urls)

    def cid(self, value: object) -> str:
        if not isinstance(value, str) or not value:
            return NONE
        return value if value in self.cids else OTHER

    def event_id(self, cid: object, value: object) -> str:
        if not isinstance(value, str) or not value:
            return NONE
        return value if (cid, value) in self.events else OTHER

    def pid(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.pids else OTHER

    def host(self, url: str) -> str:
        host = host_of(url)
        return host if host in self.hosts else OTHER


def host_of(url: str) -> str:
    """The host a postback goes to, normalised the way the planner renders its URL."""
    return urlsplit(str(httpx.URL(url))).netloc.lower()


class LiveSources(Protocol):
    """What the scrape-time collector reads: the store's writer and the actor registry."""

    def queue_depth(self) -> int: ...
    def store_writable(self) -> bool: ...
    def actors_live(self) -> int: ...
    def actor_evictions(self) -> int: ...
    def cold_loads(self) -> int: ...


class Metrics:
    """Every metric of one app, created once, in a registry of its own."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._tally = _RequestTally()
        r.register(self._tally)
        self.revenue = Counter("event_postback_conversions_revenue",
                               "Revenue of approved conversions, as they are approved (the "
                               "store keeps exact decimals).", ["cid"], registry=r)
        self.payout = Counter("event_postback_payout",
                              "Payouts owed for approved conversions, as they are approved "
                              "(the store keeps exact decimals).", ["pid"], registry=r)
        # Counters only grow: a reversal is counted here, and net = approved - reversed.
        self.reversed_revenue = Counter(
            "event_postback_reversed_revenue", "Revenue of conversions reversed after "
            "their approval.", ["cid"], registry=r)
        self.reversed_payout = Counter(
            "event_postback_reversed_payout", "Payouts clawed back by reversals.", ["pid"],
            registry=r)
        self.commit_batch_size = Histogram(
            "event_postback_commit_batch_size", "Writes per committed transaction.",
            buckets=_BATCH_BUCKETS, registry=r)
        self.commit_duration = Histogram(
            "event_postback_commit_duration_seconds", "Time to commit one batch.",
            buckets=_FAST_BUCKETS, registry=r)
        self.attempts = Counter("event_postback_postback_attempts",
                                "Postback delivery attempts, by outcome.",
                                ["host", "outcome"], registry=r)
        self.attempt_latency = Histogram(
            "event_postback_postback_latency_seconds", "Time a postback attempt took.",
            ["host"], buckets=_DELIVERY_BUCKETS, registry=r)
        # Which config is in force: equal in every worker and node serving the same one.
        self._config_info = Info("event_postback_config", "The config in force.",
                                 registry=r)
        self.catalog_version = Gauge(
            "event_postback_catalog_version", "The catalog version this process serves "
            "(0: the config file's campaigns and sources).", registry=r)
        self.use_config(config)
        ProcessCollector(registry=r)
        r.register(_LogCollector())
        self._live = _LiveCollector()
        r.register(self._live)
        # Children by label values: labels() takes a lock and builds a key on every call.
        self._children: dict[tuple[Any, ...], Any] = {}

    def use_config(self, config: Config) -> None:
        """Bound labels by a new configuration (one assignment, so a reload is atomic)."""
        self.labels = LabelValues(config)
        self.config_sha256 = digest(config)
        self._config_info.info({"sha256": self.config_sha256})

    def bind(self, live: LiveSources) -> None:
        self._live.live = live

    def set_postbacks(self, counts: Mapping[PostbackStatus, int]) -> None:
        """Postbacks by status, read from the store just before a scrape."""
        self._live.postbacks = dict(counts)

    def observe_request(self, route: str | None, status: int, fields: Mapping[str, Any],
                        seconds: float) -> None:
        route = route or UNMATCHED
        outcome = fields.get("outcome") or NONE
        tally = self._tally
        answer = (route, status, outcome)
        tally.requests[answer] = tally.requests.get(answer, 0) + 1
        durations = tally.durations.get(route)
        if durations is None:
            durations = tally.durations[route] = [0] * (len(_FAST_BUCKETS) + 1) + [0.0]
        durations[bisect_left(_FAST_BUCKETS, seconds)] += 1
        durations[-1] += seconds
        if route.startswith("/api/event/"):
            labels = self.labels
            cid = fields.get("cid")
            event = (labels.cid(cid), labels.event_id(cid, fields.get("event_id")), outcome)
            tally.events[event] = tally.events.get(event, 0) + 1

    def observe_commit(self, size: int, seconds: float) -> None:
        self.commit_batch_size.observe(size)
        self.commit_duration.observe(seconds)

    def on_commit(self, ops: list[WriteOp]) -> None:
        """Count the money and the postback attempts of a committed batch."""
        labels = self.labels
        for op in ops:
            event = op.event
            # A pending conversion counts once it is approved (observe_conversion_changes).
            if event is not None and event.conversion and event.status == "approved":
                if event.revenue is not None:
                    self._child(self.revenue, labels.cid(event.cid)).inc(
                        float(Decimal(event.revenue)))
                if event.payout is not None:
                    self._child(self.payout, labels.pid(event.pid)).inc(
                        float(Decimal(event.payout)))
            attempt, change = op.attempt, op.postback_change
            if attempt is not None and change is not None:
                host = labels.host(attempt.url)
                self._child(self.attempts, host, _ATTEMPT_OUTCOMES[change.status]).inc()
                self._child(self.attempt_latency, host).observe(attempt.latency_ms / 1000)

    def observe_conversion_changes(
        self, changes: Iterable[tuple[ConversionView, ConversionStatus]]
    ) -> None:
        """Money of committed status changes: approvals add, reversals claw back."""
        labels = self.labels
        for view, status in changes:
            revenue, payout = self.revenue, self.payout
            if status == "reversed":
                revenue, payout = self.reversed_revenue, self.reversed_payout
            elif status != "approved":
                continue
            if view.revenue is not None:
                self._child(revenue, labels.cid(view.cid)).inc(float(view.revenue))
            if view.payout is not None:
                self._child(payout, labels.pid(view.pid)).inc(float(view.payout))

    def set_conversions(self, counts: ConversionCounts) -> None:
        """Conversions by status, and pending ones by hold reason, read from the store
        just before a scrape."""
        by_status: dict[ConversionStatus, int] = {}
        held: dict[str, int] = {}
        for (status, reason), count in counts.items():
            by_status[status] = by_status.get(status, 0) + count
            if status == "pending":
                # A reason this version does not know still counts, under "other".
                label = reason if reason in HOLD_REASONS else OTHER
                held[label] = held.get(label, 0) + count
        self._live.conversions = by_status
        self._live.held = held

    def set_endpoints(self, views: Iterable[EndpointView]) -> None:
        """Each endpoint's state, read just before a scrape."""
        self._live.endpoints = [(view.name, view.state == "paused",
                                 view.consecutive_failures) for view in views]

    def set_caps(self, uses: Iterable[CapUse]) -> None:
        """Each cap's use and limit in its current period, read just before a scrape."""
        self._live.caps = [(use.cid, use.key, float(use.used), float(use.limit))
                           for use in uses]

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values) if values else metric
        return child


class _RequestTally(Collector):
    """The per-request metrics, kept in plain dicts and turned into families at scrape time.

    prometheus-client's Counter and Histogram take a lock on every update; these run once
    per request on the event loop's thread, which is also where scrapes run, so plain
    dicts are safe and several times cheaper.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int, str], int] = {}
        self.events: dict[tuple[str, str, str], int] = {}
        # Per route: a count per bucket of _FAST_BUCKETS, one past the last, then the sum.
        self.durations: dict[str, list[Any]] = {}

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily("event_postback_requests", "HTTP requests answered.",
                                       labels=["route", "status", "outcome"])
        for (route, status, outcome), count in self.requests.items():
            requests.add_metric([route, str(status), outcome], count)
        yield requests
        durations = HistogramMetricFamily("event_postback_request_duration_seconds",
                                          "Time to answer a request.", labels=["route"])
        bounds = [_go_float(bound) for bound in (*_FAST_BUCKETS, float("inf"))]
        for route, counts in self.durations.items():
            cumulative = list(accumulate(counts[:-1]))
            durations.add_metric([route], list(zip(bounds, cumulative, strict=True)),
                                 sum_value=counts[-1])
        yield durations
        events = CounterMetricFamily("event_postback_events", "Events received, by outcome.",
                                     labels=["cid", "event_id", "outcome"])
        for labels, count in self.events.items():
            events.add_metric(list(labels), count)
        yield events


class _LogCollector(Collector):
    """Log lines dropped by this process: the logging module counts them, for every app."""

    def collect(self) -> Iterable[Metric]:
        dropped = CounterMetricFamily(
            "event_postback_log_lines_dropped", "Log lines this process could not write "
            "(a full disk, a closed pipe); the service went on without them.")
        dropped.add_metric([], dropped_lines())
        yield dropped


class _LiveCollector(Collector):
    """Values read when Prometheus scrapes, not kept up to date on every request."""

    def __init__(self) -> None:
        self.live: LiveSources | None = None
        self.postbacks: dict[PostbackStatus, int] = {}
        self.conversions: dict[ConversionStatus, int] = {}
        self.held: dict[str, int] = {}
        # (cid, cap key, used, limit) per configured cap.
        self.caps: list[tuple[str, str, float, float]] = []
        # (name, paused, consecutive failures) per endpoint.
        self.endpoints: list[tuple[str, bool, int]] = []

    def collect(self) -> Iterable[Metric]:
        live = self.live
        if live is None:
            return
        yield _gauge("event_postback_write_queue_depth", "Writes queued, not yet committed.",
                     live.queue_depth())
        yield _gauge("event_postback_store_writable", "1 while the store commits writes.",
                     int(live.store_writable()))
        yield _gauge("event_postback_actors_live", "Transactions held in memory.",
                     live.actors_live())
        evictions = CounterMetricFamily("event_postback_actor_evictions",
                                        "Transactions dropped from memory to make room.")
        evictions.add_metric([], live.actor_evictions())
        yield evictions
        loads = CounterMetricFamily("event_postback_cold_loads",
                                    "Transactions read back from the store.")
        loads.add_metric([], live.cold_loads())
        yield loads
        postbacks = GaugeMetricFamily("event_postback_postbacks", "Postbacks by status.",
                                      labels=["status"])
        for status in POSTBACK_STATUSES:
            postbacks.add_metric([status], self.postbacks.get(status, 0))
        yield postbacks
        conversions = GaugeMetricFamily("event_postback_conversions",
                                        "Conversions by status (pending ones wait for "
                                        "approval).", labels=["status"])
        for status in get_args(ConversionStatus):
            conversions.add_metric([status], self.conversions.get(status, 0))
        yield conversions
        held = GaugeMetricFamily("event_postback_pending_conversions",
                                 "Pending conversions by why they are held (a hold reason "
                                 "code).", labels=["reason"])
        for reason in (*HOLD_REASONS, OTHER):
            held.add_metric([reason], self.held.get(reason, 0))
        yield held
        used = GaugeMetricFamily("event_postback_cap_used", "What each cap has counted in "
                                 "its current period (conversions, or money).",
                                 labels=["cid", "cap"])
        limit = GaugeMetricFamily("event_postback_cap_limit", "Each cap's limit.",
                                  labels=["cid", "cap"])
        for cid, key, count, bound in self.caps:
            used.add_metric([cid, key], count)
            limit.add_metric([cid, key], bound)
        yield used
        yield limit
        paused = GaugeMetricFamily("event_postback_endpoint_paused",
                                   "1 while a postback endpoint is paused (its postbacks "
                                   "wait for POST /api/endpoints/{name}/resume).",
                                   labels=["endpoint"])
        failing = GaugeMetricFamily("event_postback_endpoint_consecutive_failures",
                                    "Failed attempts in a row of each postback endpoint.",
                                    labels=["endpoint"])
        for name, is_paused, failures in self.endpoints:
            paused.add_metric([name], int(is_paused))
            failing.add_metric([name], failures)
        yield paused
        yield failing


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
