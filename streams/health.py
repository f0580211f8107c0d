"""Liveness and readiness of one worker process (or of every process of one worker).

*Live* means the process's event loop still turns: a heartbeat is beaten about once a
second, and a loop stuck for ``stall_s`` (a blocking call on the loop, a deadlock) is
not live — restart it. *Ready* means live and every readiness check passed: the worker
has started (its model loaded, its handle published), owns partitions, and reaches
Postgres when it uses it. Each check carries a one-line detail that ``doctor`` and the
dashboard print.

When several processes of one worker share a metrics directory
(``PROMETHEUS_MULTIPROC_DIR``), each writes its snapshot there and :func:`group_health`
answers for all of them: live when every live process is, ready when all are.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Check", "Health", "group_health"]


@dataclass(frozen=True)
class Check:
    """One readiness condition and what it found."""

    ok: bool
    detail: str


class Health:
    """The health of this process, updated by its worker, read by the HTTP endpoint."""

    def __init__(self, component: str, *, stall_s: float = 30.0) -> None:
        self.component = component
        self.stall_s = stall_s
        self.pid = os.getpid()
        self.started_at = time.time()
        self._beat = time.monotonic()
        self._checks: dict[str, Check] = {"started": Check(False, "starting")}
        self._lock = threading.Lock()
        self._share: Path | None = None

    def share_in(self, directory: str | None) -> None:
        """Write snapshots into ``directory`` (shared by the worker's processes)."""
        self._share = Path(directory) if directory else None

    def beat(self) -> None:
        """The event loop turned (call about once a second from the loop)."""
        self._beat = time.monotonic()
        self._write()

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        """Record readiness check ``name`` (the shared snapshot is rewritten only when the
        check changed: the heartbeat rewrites it every second anyway)."""
        check = Check(ok, detail)
        with self._lock:
            changed = self._checks.get(name) != check
            self._checks[name] = check
        if changed:
            self._write()

    def snapshot(self) -> dict[str, Any]:
        """Everything the endpoints serve, as JSON-ready data."""
        stalled = time.monotonic() - self._beat
        live = stalled < self.stall_s
        with self._lock:
            checks = dict(self._checks)
        ready = live and all(c.ok for c in checks.values())
        return {
            "component": self.component,
            "pid": self.pid,
            "live": live,
            "ready": ready,
            "loop_stalled_s": round(stalled, 3),
            "uptime_s": round(time.time() - self.started_at, 1),
            "checks": {n: {"ok": c.ok, "detail": c.detail} for n, c in checks.items()},
            "at": time.time(),
        }

    def _write(self) -> None:
        if self._share is None:
            return
        path = self._share / f"health_{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.snapshot()))
            tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_health(own: Health, directory: str | None) -> dict[str, Any]:
    """``own``'s snapshot, or the merged snapshot of every live process in ``directory``."""
    mine = own.snapshot()
    if not directory:
        return mine
    processes = []
    for path in sorted(Path(directory).glob("health_*.json")):
        try:
            pid = int(path.stem.split("_", 1)[1])
        except ValueError:
            continue
        if pid == own.pid or not _alive(pid):
            continue
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # a process that stopped writing is as stalled as its last beat says
        snap["live"] = snap.get("live", False) and time.time() - snap.get("at", 0) < own.stall_s
        snap["ready"] = snap.get("ready", False) and snap["live"]
        processes.append(snap)
    if not processes:
        return mine
    processes.insert(0, mine)
    return {
        "component": own.component,
        "pid": own.pid,
        "live": all(p["live"] for p in processes),
        "ready": all(p["ready"] for p in processes),
        "checks": mine["checks"],
        "uptime_s": mine["uptime_s"],
        "loop_stalled_s": mine["loop_stalled_s"],
        "processes": processes,
    }
