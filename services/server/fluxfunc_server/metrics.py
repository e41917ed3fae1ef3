"""Prometheus metrics of one Server process (``GET /metrics``).

What a Server can honestly report:

- HTTP requests by route, method and status, and their latency (the error middleware
  counts every request it renders);
- tasks by func and final status, and their duration, **as seen by this process**: the
  outcomes of the sync and direct calls it waited for (``observe_task``). Async and cron
  tasks finish in workers and never pass through a Server;
- queue figures for the whole deployment, read from Redis at scrape time: stream length,
  pending, lag, consumers, delayed, dead letters and tasks completed in the last full minute.

Counters are per process; sum them over the Server replicas in PromQL. Queue gauges are the
same on every replica (take ``max``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
    """A queue row's field (``fluxfunc_common.inspect.queue_stats``) as a gauge value."""
    if value is None:
        return None
    if field == "consumers":
        return float(len(value))
    if field == "oldestPendingAgeMs":
        return float(value) / 1000
    return float(value)


class QueueCollector(Collector):
    """Yields the queue snapshot taken just before the scrape (see :meth:`Metrics.refresh`)."""

    def __init__(self) -> None:
        self.snapshot: list[dict[str, Any]] = []
        self.dead_total: int | None = None

    def collect(self) -> Iterator[Metric]:
        for field, (name, doc) in _QUEUE_GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            for q in self.snapshot:
                value = _gauge_value(field, q.get(field))
                if value is not None:
                    family.add_metric([q["queue"]], value)
            yield family
        if self.dead_total is not None:
            yield GaugeMetricFamily("fluxfunc_dead_letters", "Entries in the dead-letter stream",
                                    value=float(self.dead_total))


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
        self.tasks = Counter(
            "fluxfunc_tasks", "Final task statuses observed by this Server (sync/direct calls)",
            ["func", "status"], registry=self.registry)
        self.task_duration = Histogram(
            "fluxfunc_task_duration_seconds", "Run time of tasks observed by this Server",
            ["func"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
        self.queues = QueueCollector()
        self.registry.register(self.queues)
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._task_children: dict[tuple[str, str], tuple[Any, Any]] = {}

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

    def observe_task(self, func_id: str, status: str, seconds: float | None = None) -> None:
        """Count one finished task this Server saw the end of."""
        key = (func_id, status)
        children = self._task_children.get(key)
        if children is None:
            children = (self.tasks.labels(func_id, status), self.task_duration.labels(func_id))
            self._task_children[key] = children
        children[0].inc()
        if seconds is not None and seconds >= 0:
            children[1].observe(seconds)

    def set_queues(self, stats: dict[str, Any]) -> None:
        """Keep the queue figures (``handlers.ops.queue_stats``) for the scrape that follows."""
        self.queues.snapshot = stats["queues"]
        self.queues.dead_total = stats["deadLetters"]

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
