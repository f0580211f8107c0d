"""CPU seconds and RSS per minute of every process a soak runs, by role (psutil).

Roles: ``up`` (the supervisor, with the dashboard in it), ``broker`` (its embedded Tansu),
each worker by name (the processes of one worker summed), ``postgres`` (the postmaster and
every backend), ``load`` (this process: the request client and the event producer),
``bare`` and ``bare_broker`` (the yardstick's process and its broker). A process that
starts within a minute counts all its CPU in that minute; one that ends within a minute
loses its last seconds (restarts are rare and show as a worker's RSS dip).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

__all__ = ["BatchStats", "ProcessMeter", "thread_cpu_s"]


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class ProcessMeter:
    """Samples the soak's processes at minute boundaries."""

    def __init__(self, up_pid: int, *, pg_data: Path, extra: dict[str, Any]) -> None:
        self.up_pid = up_pid
        self.pg_data = str(pg_data)
        self.extra = {k: v for k, v in extra.items() if v is not None}
        self._last: dict[int, float] = {}
        self._at = time.time()

    def _role(self, proc: psutil.Process, default: str) -> str:
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            return default
        text = " ".join(cmd)
        if "tansu" in text:
            return "broker" if default == "up" else f"{default}_broker"
        if "worker" in cmd:
            i = cmd.index("worker")
            if i + 1 < len(cmd):
                return cmd[i + 1]
        return default

    def processes(self) -> list[tuple[str, psutil.Process]]:
        """``(role, process)`` of everything measured right now."""
        out: list[tuple[str, psutil.Process]] = [("load", psutil.Process(os.getpid()))]
        roots: list[tuple[str, int]] = [("up", self.up_pid)]
        roots += [(name, popen.pid) for name, popen in self.extra.items()]
        for role, pid in roots:
            try:
                root = psutil.Process(pid)
            except psutil.Error:
                continue
            out.append((role, root))
            for child in root.children(recursive=True):
                out.append((self._role(child, role), child))
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if cmd and cmd[0].endswith("postgres") and self.pg_data in cmd:
                out.append(("postgres", proc))
                out += [("postgres", c) for c in proc.children(recursive=True)]
        return out

    def sample(self) -> tuple[dict[str, float], dict[str, float]]:
        """CPU seconds since the last sample and RSS now, per role."""
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        seen: dict[int, float] = {}
        for role, proc in self.processes():
            try:
                now = _cpu(proc)
                mem = proc.memory_info().rss / 1e6
                started = proc.create_time()
            except psutil.Error:
                continue
            before = self._last.get(proc.pid, 0.0 if started >= self._at else now)
            seen[proc.pid] = now
            cpu[role] = round(cpu.get(role, 0.0) + now - before, 2)
            rss[role] = round(rss.get(role, 0.0) + mem, 1)
        self._last, self._at = seen, time.time()
        return cpu, rss

    def per_minute(self, start_at: float, minutes: list[Any]) -> None:
        """Fill ``cpu_s``/``rss_mb`` of each minute at its end (baseline at ``start_at``)."""
        time.sleep(max(0.0, start_at - time.time()))
        self.sample()
        for i, minute in enumerate(minutes):
            time.sleep(max(0.0, start_at + 60 * (i + 1) - time.time()))
            minute.cpu_s, minute.rss_mb = self.sample()


def thread_cpu_s(top: int = 8) -> dict[str, float]:
    """CPU seconds of this process's threads, summed by thread name (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        out[name] = round(out.get(name, 0.0) + seconds, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


class BatchStats:
    """Messages per produced batch, from librdkafka's statistics of one producer."""

    def __init__(self, interval_ms: int = 10_000) -> None:
        self.interval_ms = interval_ms
        self._lock = threading.Lock()
        self._batches = 0.0
        self._messages = 0.0

    def config(self) -> dict[str, Any]:
        """Producer configuration that reports here."""
        return {"statistics.interval.ms": self.interval_ms, "stats_cb": self.on_stats}

    def on_stats(self, text: str) -> None:
        for topic in json.loads(text).get("topics", {}).values():
            window = topic.get("batchcnt", {})
            with self._lock:
                self._batches += window.get("cnt", 0)
                self._messages += window.get("sum", 0)

    def messages_per_batch(self) -> float | None:
        """Average over every reported window (None before the first report)."""
        with self._lock:
            return round(self._messages / self._batches, 2) if self._batches else None
