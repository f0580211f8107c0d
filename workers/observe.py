"""What a running worker tells operators: health, metrics from its stats, progress lines.

:class:`Observer` is started by :func:`workers.runtime.run_worker` before anything
else, so that a worker that is still loading its model — or failing its preflight —
already answers ``/health/live`` and ``/health/ready`` (503, with the reason). Once the
worker runs, a task on the worker's own event loop, once a second:

* beats the liveness heartbeat (a loop stuck in a blocking call stops beating);
* sets the readiness checks: started (model loaded, handle published), partitions
  assigned, Postgres reachable (a fresh connection every few seconds); for serve, a
  ``deadlines`` check that never fails but says how many requests were shed as
  ``EXPIRED`` in the last minute (``doctor`` and ``/health`` show it);
* copies the worker's stats objects into metrics (:class:`workers.metrics.StatsExporter`);
* every ``progress_interval_s`` logs one progress line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from streams.exceptions import PortInUse
from streams.health import Health
from streams.metrics import multiprocess_dir
from streams.ops_http import OpsServer, worker_routes
from streams.settings import Settings
from workers.bootstrap import Context
from workers.metrics import StatsExporter

__all__ = ["Observer", "progress_line"]

log = logging.getLogger(__name__)

DB_CHECK_S = 5.0


def _loop_of(handle: object) -> Any:
    return getattr(handle, "loop", None)


def _domain_summary(handle: object) -> str:
    """The worker-specific half of a progress line."""
    parts: list[str] = []
    if (updater := getattr(handle, "updater", None)) is not None:
        s = updater.stats
        parts.append(f"applied {s.applied}, duplicates {s.duplicates}")
    if (pipeline := getattr(handle, "pipeline", None)) is not None:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(pipeline.stats.statuses.items()))
        parts.append(f"items {statuses or 'none yet'}")
    if (joiner := getattr(handle, "joiner", None)) is not None:
        parts.append(
            f"examples {joiner.emitted}, expired answers skipped {joiner.expired}, "
            f"open partitions {len(joiner.partitions)}"
        )
    if (writer := getattr(handle, "writer", None)) is not None:
        parts.append(f"archived {writer.stats.written}, files {writer.stats.files}")
    if (rec := getattr(handle, "recommender", None)) is not None:
        gate = rec.llm.gate
        if gate is not None:
            parts.append(f"breaker {gate.breaker.state}, tokens/min {gate.tokens_last_minute}")
        else:
            parts.append("LLM off")
    if (shedder := getattr(handle, "shedder", None)) is not None:
        parts.append(f"expired {shedder.stats.expired}")
    return "; ".join(parts)


def progress_line(handle: object, previous: tuple[float, int] | None) -> tuple[str, int]:
    """One line: consumed (+delta, rate), handled, dead letters, lag, commits, retries."""
    loop = _loop_of(handle)
    if loop is None:
        return "starting", 0
    s = loop.stats
    rate = ""
    if previous is not None:
        at, before = previous
        elapsed = max(1e-9, time.monotonic() - at)
        rate = f" (+{s.consumed - before}, {(s.consumed - before) / elapsed:.1f}/s)"
    line = (
        f"consumed {s.consumed}{rate}, handled {s.handled}, dead letters {s.dead_lettered}, "
        f"lag {sum(loop.lags.values())}, partitions {len(loop.assigned)}, "
        f"commits {s.commits}, retries {s.retries}"
    )
    domain = _domain_summary(handle)
    return (f"{line} | {domain}" if domain else line), s.consumed


class Observer:
    """Health endpoint + readiness checks + stats export + progress lines of one worker."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.health = Health(name, stall_s=settings.health_stall_s)
        self.health.share_in(multiprocess_dir())
        self.exporter = StatsExporter(name)
        self.server: OpsServer | None = None
        self._progress: tuple[float, int] | None = None
        self._db_at = -1e9
        #: (when, requests shed so far) over the last minute, from the observer's start.
        self._shed: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])

    def start_endpoints(self) -> None:
        """Serve ``/metrics`` and ``/health/*`` (unless ``metrics_port`` is 0).

        A taken port (a second process of this worker started by hand, outside `up`,
        which shares one port between its processes) costs this process its endpoints,
        with a warning, never its work.
        """
        port = self.settings.ops_port(self.name)
        if port is None:
            return
        try:
            self.server = OpsServer(
                self.settings.metrics_host, port, worker_routes(self.health), name=self.name
            ).start(reuse_port=multiprocess_dir() is not None)
        except PortInUse as exc:
            log.warning("%s; this process runs without metrics and health endpoints", exc)

    def stop_endpoints(self) -> None:
        """Close the endpoint."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _handle(self, ctx: Context) -> object | None:
        for handle in ctx.handles.all():
            if _loop_of(handle) is not None and _loop_of(handle).worker == self.name:
                return handle
        return None

    async def tick(self, ctx: Context) -> None:
        """One observation: heartbeat, checks, metrics, maybe a progress line."""
        self.health.beat()
        handle = self._handle(ctx)
        if handle is None:
            self.health.set("started", False, "starting (loading the model, joining the group)")
            return
        self.health.set("started", True, "running")
        loop = _loop_of(handle)
        owned = sorted(loop.assigned)
        if owned:
            topics = sorted({t for t, _ in owned})
            self.health.set("partitions", True, f"{len(owned)} partition(s) of {', '.join(topics)}")
        else:
            self.health.set("partitions", False, "no partitions assigned (yet)")
        if ctx.uses_database and time.monotonic() - self._db_at >= DB_CHECK_S:
            self._db_at = time.monotonic()
            problem = await ctx.ping_database()
            self.health.set("database", problem is None, problem or "Postgres answers")
        if (shedder := getattr(handle, "shedder", None)) is not None:
            self.health.set("deadlines", True, self.shedding_detail(shedder))
        self.exporter.export(handle)
        every = self.settings.progress_interval_s
        if every > 0 and (self._progress is None or time.monotonic() - self._progress[0] >= every):
            line, consumed = progress_line(handle, self._progress)
            if self._progress is not None:  # the first tick only sets the baseline
                log.info("%s progress: %s", self.name, line)
            self._progress = (time.monotonic(), consumed)

    def shedding_detail(self, shedder: Any) -> str:
        """How many requests serve shed as EXPIRED in the last minute (and since start)."""
        if not shedder.enabled:
            return "shedding off (serve_shed_expired=false): late requests are served in full"
        now, total = time.monotonic(), shedder.stats.expired
        self._shed.append((now, total))
        while now - self._shed[0][0] > 60.0:
            self._shed.popleft()
        recent = total - self._shed[0][1]
        if not total:
            return "no request shed: none was past its deadline when picked up"
        return f"{recent} request(s) shed as EXPIRED in the last minute, {total} since start"

    async def watch(self, ctx: Context, stop: asyncio.Event) -> None:
        """Tick about once a second until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.tick(ctx)
            except Exception:  # observing must never stop the worker
                log.exception("%s: observer tick failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
