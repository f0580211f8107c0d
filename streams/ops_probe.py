"""Asking the running workers (and the supervisor of ``up``) how they are.

``doctor`` and the dashboard read the same endpoints Prometheus and an orchestrator
would: each worker's ``/health`` on ``metrics_host:metrics_port+i`` and the supervisor's
``/workers``. A worker whose endpoint does not answer is *down*; one the supervisor
gave up on or keeps restarting is *crash-looping*, whatever its endpoint said a
moment ago.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from streams.settings import Settings

__all__ = ["WorkerProbe", "fetch", "probe_supervisor", "probe_workers", "worker_url"]


def fetch(url: str, timeout_s: float = 1.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET.

    Raises:
        OSError: no answer (refused, unreachable, timed out).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def worker_url(settings: Settings, component: str) -> str | None:
    """Base URL of a worker's (or ``supervisor``'s) endpoint; None when endpoints are off."""
    port = settings.ops_port(component)
    return None if port is None else f"http://{_local(settings.metrics_host)}:{port}"


@dataclass(frozen=True)
class WorkerProbe:
    """What one worker's endpoint and the supervisor say about it."""

    name: str
    url: str | None
    reachable: bool
    live: bool = False
    ready: bool = False
    pid: int | None = None
    detail: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    supervisor: dict[str, Any] | None = None

    @property
    def restarts(self) -> int | None:
        """Restarts the supervisor did (None without a supervisor)."""
        return None if self.supervisor is None else int(self.supervisor.get("restarts", 0))

    @property
    def state(self) -> str:
        """ready, not ready, down, crash-looping, failed or off (endpoints turned off)."""
        sup = self.supervisor or {}
        if sup.get("state") == "failed":
            return "failed"
        if sup.get("crash_looping"):
            return "crash-looping"
        if self.url is None:
            return "off"
        if not self.reachable or not self.live:
            return "down"
        return "ready" if self.ready else "not ready"

    @property
    def healthy(self) -> bool:
        """Ready, and not restarting over and over."""
        return self.state == "ready"


def probe_supervisor(settings: Settings, timeout_s: float = 1.0) -> dict[str, dict[str, Any]]:
    """Worker name → the supervisor's view, or ``{}`` when no ``up`` answers."""
    url = worker_url(settings, "supervisor")
    if url is None:
        return {}
    try:
        status, body = fetch(url + "/workers", timeout_s)
        if status != 200:
            return {}
        return {w["name"]: w for w in json.loads(body)["workers"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def probe_workers(
    settings: Settings, names: tuple[str, ...] | list[str] | None = None, timeout_s: float = 1.0
) -> list[WorkerProbe]:
    """Probe each worker's ``/health`` (and the supervisor, when ``up`` runs)."""
    sup = probe_supervisor(settings, timeout_s)
    out = []
    for name in names if names is not None else settings.workers:
        url = worker_url(settings, name)
        if url is None:
            out.append(WorkerProbe(name, None, False, supervisor=sup.get(name)))
            continue
        try:
            _, body = fetch(url + "/health", timeout_s)
            snap = json.loads(body)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            out.append(
                WorkerProbe(
                    name,
                    url,
                    False,
                    detail=f"no answer at {url}: {reason}",
                    supervisor=sup.get(name),
                )
            )
            continue
        checks = snap.get("checks", {})
        failing = [f"{n}: {c.get('detail', '')}" for n, c in checks.items() if not c.get("ok")]
        if not snap.get("live"):
            failing.insert(0, f"event loop stalled {snap.get('loop_stalled_s')}s")
        out.append(
            WorkerProbe(
                name,
                url,
                True,
                live=bool(snap.get("live")),
                ready=bool(snap.get("ready")),
                pid=snap.get("pid"),
                detail="; ".join(failing)
                or "; ".join(f"{n}: {c.get('detail', '')}" for n, c in checks.items()),
                checks=checks,
                supervisor=sup.get(name),
            )
        )
    return out
