"""The dashboard's memory of the workers' metrics: scraped like Prometheus would.

Every ``dashboard_scrape_s`` a background thread reads each worker's ``/metrics`` and
``/health`` (and the supervisor's view of restarts), and keeps the samples for
``dashboard_history_s``. Rates and latency percentiles over time are computed from
consecutive snapshots exactly as ``rate()`` and ``histogram_quantile()`` do, so the
plots agree with a Prometheus + Grafana setup looking at the same endpoints.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from streams.ops_probe import WorkerProbe, fetch, probe_workers, worker_url
from streams.settings import Settings

__all__ = ["Sample", "Scraper", "Snapshot", "quantile"]

log = logging.getLogger(__name__)

#: ``(metric sample name, sorted label pairs)``.
Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Sample:
    """One sample of a snapshot."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Snapshot:
    """All samples of one worker at one time."""

    at: float
    values: dict[Key, float] = field(default_factory=dict)

    def select(self, name: str, **match: str) -> list[Sample]:
        """Samples named ``name`` whose labels include ``match``."""
        out = []
        for (n, labels), value in self.values.items():
            if n != name:
                continue
            d = dict(labels)
            if all(d.get(k) == v for k, v in match.items()):
                out.append(Sample(n, d, value))
        return out

    def total(self, name: str, **match: str) -> float:
        """Sum of the matching samples."""
        return sum(s.value for s in self.select(name, **match))


def parse(text: str, at: float) -> Snapshot:
    """A snapshot of a text exposition."""
    snap = Snapshot(at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            snap.values[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return snap


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile``: ``buckets`` are (upper bound, cumulative count)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width > 0 else 1.0)
        lower, below = bound, count
    return lower


class Scraper:
    """Keeps every worker's recent snapshots and health."""

    def __init__(
        self,
        settings: Settings,
        *,
        supervisor_status: Callable[[], list[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.every_s = settings.dashboard_scrape_s
        keep = max(2, int(settings.dashboard_history_s / self.every_s))
        self.history: dict[str, deque[Snapshot]] = {w: deque(maxlen=keep) for w in settings.workers}
        self.health: dict[str, WorkerProbe] = {}
        self.supervisor_status = supervisor_status
        self.scrapes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Scraper:
        """Scrape now, then every ``every_s`` in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="dashboard-scrape", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop scraping."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrape_once()
            except Exception:  # the dashboard must outlive any one bad scrape
                log.exception("scrape failed")
            self._stop.wait(self.every_s)

    def scrape_once(self) -> None:
        """Read every worker's metrics and health once."""
        now = time.time()
        probes = {p.name: p for p in probe_workers(self.settings, self.settings.workers)}
        for name in self.settings.workers:
            url = worker_url(self.settings, name)
            if url is None:
                continue
            try:
                status, body = fetch(url + "/metrics", 2.0)
            except OSError:
                continue
            if status != 200:
                continue
            snap = parse(body.decode("utf-8", "replace"), now)
            with self._lock:
                self.history[name].append(snap)
        with self._lock:
            self.health = probes
            self.scrapes += 1

    # ---- queries ----------------------------------------------------------------------
    def latest(self, worker: str) -> Snapshot | None:
        """The newest snapshot of ``worker``."""
        with self._lock:
            h = self.history.get(worker)
            return h[-1] if h else None

    def snapshots(self, worker: str) -> list[Snapshot]:
        """Every kept snapshot of ``worker``, oldest first."""
        with self._lock:
            return list(self.history.get(worker, ()))

    def rate(
        self, source: str, name: str, *, by: str | None = None, **match: str
    ) -> dict[str, list[tuple[float, float]]]:
        """Per second increase of counter ``name`` of worker ``source`` between snapshots
        (summed per ``by`` label, or into ``all``)."""
        snaps = self.snapshots(source)
        out: dict[str, list[tuple[float, float]]] = {}
        for a, b in itertools.pairwise(snaps):
            dt = b.at - a.at
            if dt <= 0:
                continue
            groups: dict[str, float] = {}
            before: dict[str, float] = {}
            for s in a.select(name, **match):
                before[_group(s, by)] = before.get(_group(s, by), 0.0) + s.value
            for s in b.select(name, **match):
                groups[_group(s, by)] = groups.get(_group(s, by), 0.0) + s.value
            for group, value in groups.items():
                delta = value - before.get(group, 0.0)
                out.setdefault(group, []).append((b.at, max(0.0, delta) / dt))
        return out

    def quantiles(
        self, source: str, name: str, q: float, *, by: str, window: int = 3, **match: str
    ) -> dict[str, list[tuple[float, float]]]:
        """``histogram_quantile(q, rate(name_bucket[window scrapes]))`` per ``by`` label."""
        snaps = self.snapshots(source)
        out: dict[str, list[tuple[float, float]]] = {}
        for i in range(window, len(snaps)):
            a, b = snaps[i - window], snaps[i]
            per: dict[str, dict[float, float]] = {}
            for s in b.select(f"{name}_bucket", **match):
                le = float(s.labels["le"])
                group = s.labels.get(by, "")
                per.setdefault(group, {})[le] = per.get(group, {}).get(le, 0.0) + s.value
            for s in a.select(f"{name}_bucket", **match):
                le = float(s.labels["le"])
                group = s.labels.get(by, "")
                if group in per and le in per[group]:
                    per[group][le] -= s.value
            for group, buckets in per.items():
                value = quantile(q, list(buckets.items()))
                if value is not None:
                    out.setdefault(group, []).append((b.at, value))
        return out


def _group(sample: Sample, by: str | None) -> str:
    return sample.labels.get(by, "") if by else "all"


def totals(snap: Snapshot | None, name: str, by: str, **match: str) -> dict[str, float]:
    """Latest value of ``name`` summed per ``by`` label (empty without a snapshot)."""
    if snap is None:
        return {}
    out: dict[str, float] = {}
    for s in snap.select(name, **match):
        out[s.labels.get(by, "")] = out.get(s.labels.get(by, ""), 0.0) + s.value
    return out


def names(samples: Iterable[Sample]) -> list[str]:
    """Distinct sample names (for debugging pages)."""
    return sorted({s.name for s in samples})
