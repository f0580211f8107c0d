"""The supervisor's endpoint: every worker's state and restarts, as JSON and as metrics.

``streamrec up`` serves it on ``metrics_port + 5``; ``doctor`` and the dashboard read
``/workers``, Prometheus scrapes ``/metrics`` (``streamrec_worker_up``,
``streamrec_worker_restarts_total``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stack.supervisor import Supervisor
from streams.metrics import CONTENT_TYPE_LATEST
from streams.ops_http import Response, Route, json_response

__all__ = ["supervisor_routes"]


class _SupervisorCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "streamrec_worker_up", "1 while the worker's process runs.", labels=["worker"]
        )
        looping = GaugeMetricFamily(
            "streamrec_worker_crash_looping",
            "1 when the worker was given up on or restarted repeatedly in the last minute.",
            labels=["worker"],
        )
        restarts = CounterMetricFamily(
            "streamrec_worker_restarts",
            "Times the supervisor restarted the worker after it exited.",
            labels=["worker"],
        )
        for s in self.supervisor.status():
            up.add_metric([s.name], 1.0 if s.pid is not None else 0.0)
            looping.add_metric([s.name], 1.0 if s.crash_looping else 0.0)
            restarts.add_metric([s.name], float(s.restarts))
        yield up
        yield looping
        yield restarts


def supervisor_routes(supervisor: Supervisor) -> dict[str, Route]:
    """``/workers`` (JSON) and ``/metrics`` of a running supervisor."""
    registry = CollectorRegistry()
    registry.register(_SupervisorCollector(supervisor))

    def workers() -> Response:
        return json_response(
            {
                "workers": [
                    asdict(s) | {"crash_looping": s.crash_looping} for s in supervisor.status()
                ]
            }
        )

    return {
        "/workers": workers,
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        "/health/live": lambda: json_response({"live": True}),
    }
