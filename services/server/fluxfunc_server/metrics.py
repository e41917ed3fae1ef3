"""Prometheus metrics of one Server process (``GET /metrics``).

What a Server can honestly report:

- HTTP requests by route, method and status, and their latency (the error middleware
  counts every request it renders);
- for the whole deployment, read from Redis at scrape time: tasks by func and final status
  and their run-time histogram (every task, whichever its origin: the workers count them in
  the script that completes the task, see :mod:`fluxfunc_common.taskstats`), tasks by origin
  and final status, subscription messages by connector
  (:mod:`fluxfunc_common.subscriptionstats`), and the queue figures: stream length, pending,
  lag, consumers, delayed, dead letters and tasks completed in the last full minute;
- how far behind its schedule each live Beat is (``lagMs`` of its heartbeat).

HTTP counters are per process; sum them over the Server replicas in PromQL. Task and queue
figures are the same on every replica (take ``max``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fluxfunc_common.subscriptionstats import Counts as SubscriptionCounts
from fluxfunc_common.taskstats import TaskStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUEUE_GAUGES: dict[str, tuple[str, str]] = {
    "length": ("fluxfunc_queue_length", "Entries in the queue stream (XLEN)"),
    "pending": ("fluxfunc_queue_pending", "Entries delivered to a worker and not yet acknowledged"),
    "lag": ("fluxfunc_queue_lag", "Entries not yet delivered to any worker"),
    "consumers": ("fluxfunc_queue_consumers", "Worker consumers registered on the queue"),
    "delayed": ("fluxfunc_queue_delayed", "Tasks waiting for their ETA / retry backoff"),
    "dead": ("fluxfunc_queue_dead_letters", "Dead letters that came from the queue"),
    "oldestPendingAgeMs": ("fluxfunc_queue_oldest_pending_seconds",
                           "Age of the oldest pending entry in seconds"),
    "throughputLastMinute": ("fluxfunc_queue_completed_last_minute",
                             "Tasks completed during the last full minute"),
}


def _gauge_value(field: str, value: Any) -> float | None:
    """A queue row's field (``fluxfunc_common.queuestats.queue_stats``) as a gauge value."""
    if value is None:
        return None
    if field == "consumers":
        return float(len(value))
    if field == "oldestPendingAgeMs":
        return float(value) / 1000
    return float(value)


class QueueCollector(Collector):
    """Yields the deployment-wide snapshot taken just before the scrape (``set_queues``,
    ``set_tasks``)."""

    def __init__(self) -> None:
        self.snapshot: Sequence[Mapping[str, Any]] = ()  # queuestats.queue_stats rows
        self.dead_total: int | None = None
        self.tasks: TaskStats | None = None
        self.subscriptions: SubscriptionCounts | None = None
        self.beat_lags: Mapping[str, float] | None = None  # Beat instance → lag, seconds

    def collect(self) -> Iterator[Metric]:
        yield from self._tasks()
        yield from self._subscriptions()
        yield from self._queues()
        yield from self._beats()

    def _tasks(self) -> Iterator[Metric]:
        if self.tasks is None:
            return
        counts = CounterMetricFamily("fluxfunc_tasks", "Tasks that ended, by func and final status",
                                     labels=["func", "status"])
        for (func, status), n in sorted(self.tasks.counts.items()):
            counts.add_metric([func, status], float(n))
        yield counts
        durations = HistogramMetricFamily("fluxfunc_task_duration_seconds",
                                          "Run time of tasks that ran, by func", labels=["func"])
        for func, hist in sorted(self.tasks.durations.items()):
            durations.add_metric([func], hist.cumulative(), hist.total)
        yield durations
        origins = CounterMetricFamily("fluxfunc_tasks_by_origin",
                                      "Tasks that ended, by origin (syncAPI, asyncAPI, direct, cronJob, "
                                      "child, subscription, apiAuth) and final status",
                                      labels=["origin", "status"])
        for (origin, status), n in sorted(self.tasks.origins.items()):
            origins.add_metric([origin, status], float(n))
        yield origins

    def _subscriptions(self) -> Iterator[Metric]:
        if self.subscriptions is None:
            return
        family = CounterMetricFamily("fluxfunc_subscription_messages",
                                     "Subscription messages by connector: enqueued as tasks, or "
                                     "dropped (no such func)", labels=["connector", "outcome"])
        for (connector, outcome), n in sorted(self.subscriptions.items()):
            family.add_metric([connector, outcome], float(n))
        yield family

    def _queues(self) -> Iterator[Metric]:
        for field, (name, doc) in _QUEUE_GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            for q in self.snapshot:
                value = _gauge_value(field, q.get(field))
                if value is not None:
                    family.add_metric([str(q["queue"])], value)
            yield family
        if self.dead_total is not None:
            yield GaugeMetricFamily("fluxfunc_dead_letters", "Entries in the dead-letter stream",
                                    value=float(self.dead_total))

    def _beats(self) -> Iterator[Metric]:
        if self.beat_lags is None:
            return
        family = GaugeMetricFamily("fluxfunc_beat_lag_seconds",
                                   "How late a live Beat takes its due cron jobs (its heartbeat's "
                                   "lagMs; 0 = on schedule)", labels=["instance"])
        for instance, lag in sorted(self.beat_lags.items()):
            family.add_metric([instance], lag)
        yield family


def beat_lags(services: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Beat instance → lag in seconds, from the live heartbeats (``heartbeat.list_services``)."""
    return {str(s.get("instance", "")): float(s.get("lagMs") or 0) / 1000
            for s in services if s.get("role") == "beat"}


class Metrics:
    """The registry of one Server process; ``app.py`` makes one and puts it on the context."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "fluxfunc_http_requests", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.http_latency = Histogram(
            "fluxfunc_http_request_duration_seconds", "HTTP request latency by route",
            ["route"], registry=self.registry)
        self.queues = QueueCollector()
        self.registry.register(self.queues)
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request (called by the error middleware for every request)."""
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:  # labels() takes a lock and builds keys: do it once per series
            children = (self.http_requests.labels(route, method, str(status)),
                        self.http_latency.labels(route))
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_queues(self, rows: Sequence[Mapping[str, Any]], dead_letters: int) -> None:
        """Keep the queue figures (``queuestats.queue_stats`` rows, the dead-letter total) for
        the scrape that follows."""
        self.queues.snapshot = rows
        self.queues.dead_total = dead_letters

    def set_subscriptions(self, counts: SubscriptionCounts) -> None:
        """Keep the subscription message counts (``subscriptionstats.read``) for the scrape
        that follows."""
        self.queues.subscriptions = counts

    def set_tasks(self, stats: TaskStats) -> None:
        """Keep the task figures (``taskstats.read_task_stats``) for the scrape that follows."""
        self.queues.tasks = stats

    def set_beats(self, services: Iterable[Mapping[str, Any]]) -> None:
        """Keep the Beats' lag (the live heartbeats, ``heartbeat.list_services``) for the
        scrape that follows."""
        self.queues.beat_lags = beat_lags(services)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
