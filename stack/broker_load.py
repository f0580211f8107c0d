"""How close a running embedded broker is to its measured limit (read by `doctor`).

Tansu 0.6 keeps every record batch in memory and never deletes one, and each fetch that
finds data in a partition lists every batch stored there: under a constant load its CPU
grows minute after minute until it starves its clients. ``benchmarks/soak_bare.py``
measured where that ends (``docs/benchmarks.md``): the minute the p99 of a bare
request/reply echo passed 100 ms, and the broker's CPU then.

The broker's CPU share is what degrades its clients, and it is cheap to measure without
asking the broker anything (a fetch or an offsets query would itself walk the batches):
`up` writes the broker's pid and start time into ``<home>/run/``, and :func:`broker_load`
samples the process's CPU for a moment. Under a steady load the share grows about
linearly with the batches stored, so ``uptime * (limit share / share now - 1)`` is a rough
time left at the current load — a projection, reported as one.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from streams.settings import Settings

__all__ = [
    "LIMIT_CPU_SHARE",
    "WARN_FRACTION",
    "BrokerLoad",
    "broker_load",
    "remove_run_file",
    "run_file",
    "write_run_file",
]

#: Share of one core past which a bare echo's p99 is well above 100 ms. Issue 11's bare
#: run (200 events/s + 10 req/s, Tansu 0.6 memory storage): at 0.3 of a core the echo
#: p99 was 96 ms, at 1.3 it was 869 ms; the 2-core machine could not isolate the
#: crossing more finely (docs/benchmarks.md, soak) — a rough limit, reported as one.
LIMIT_CPU_SHARE = 0.75
#: `doctor` warns from this fraction of the limit on.
WARN_FRACTION = 0.6


def run_file(run_dir: Path, port: int) -> Path:
    """Where the broker on ``port`` leaves its pid and start time."""
    return run_dir / f"broker-{port}.json"


def write_run_file(run_dir: Path, port: int, pid: int) -> None:
    """Note a started broker (for `doctor` in another process)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_file(run_dir, port)
    path.write_text(json.dumps({"pid": pid, "port": port, "started_at": time.time()}))


def remove_run_file(run_dir: Path, port: int) -> None:
    """Forget a stopped broker."""
    with contextlib.suppress(FileNotFoundError):
        run_file(run_dir, port).unlink()


@dataclass(frozen=True)
class BrokerLoad:
    """The embedded broker's CPU share now, its uptime, memory and what that means."""

    pid: int
    uptime_s: float
    cpu_share: float
    rss_mb: float

    @property
    def near_limit(self) -> bool:
        """At or past :data:`WARN_FRACTION` of the measured limit's CPU share."""
        return self.cpu_share >= WARN_FRACTION * LIMIT_CPU_SHARE

    @property
    def minutes_left(self) -> float | None:
        """Linear projection to the limit at the current load (None when idle or past it)."""
        if self.cpu_share <= 0.01 or self.cpu_share >= LIMIT_CPU_SHARE:
            return None
        return self.uptime_s / 60 * (LIMIT_CPU_SHARE / self.cpu_share - 1)

    def describe(self) -> str:
        """One line for `doctor`."""
        line = (
            f"Tansu pid {self.pid}, up {self.uptime_s / 60:.0f} min, "
            f"{self.cpu_share:.0%} of a core now, {self.rss_mb:.0f} MB; it never deletes a "
            f"record batch and each fetch lists them all, so it slows down under a steady "
            f"load (measured limit: {LIMIT_CPU_SHARE:.0%} of a core, docs/benchmarks.md)"
        )
        left = self.minutes_left
        if self.cpu_share >= LIMIT_CPU_SHARE:
            line += ": past it"
        elif self.near_limit and left is not None:
            line += f": about {left:.0f} min left at this load"
        if self.near_limit:
            line += (
                " — restart `streamrec up` (topics start empty; Postgres and the archive "
                "stay) or use Apache Kafka (docker-compose.yml)"
            )
        return line


def broker_load(settings: Settings, sample_s: float = 2.0) -> BrokerLoad | None:
    """The running embedded broker's load, or None (external broker, or none running)."""
    if not settings.embedded_broker:
        return None
    path = run_file(settings.home / "run", settings.broker_port)
    try:
        info = json.loads(path.read_text())
        proc = psutil.Process(int(info["pid"]))
        if "tansu" not in " ".join(proc.cmdline()):
            return None  # a stale file, and the pid was reused
        before = proc.cpu_times()
        time.sleep(sample_s)
        after = proc.cpu_times()
        rss = proc.memory_info().rss
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    used = (after.user + after.system) - (before.user + before.system)
    return BrokerLoad(
        pid=proc.pid,
        uptime_s=max(0.0, time.time() - float(info["started_at"])),
        cpu_share=round(used / sample_s, 3),
        rss_mb=rss / 1e6,
    )
