"""`streamrec up` as a user runs it, on the session broker and a module database, with
the simulated LLM, for the observability and dashboard tests."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stack.embedded import free_port, port_is_free
from stack.supervisor import settings_env
from streams.ops_probe import fetch, probe_workers, worker_url
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port_range(n: int) -> int:
    """A base port with ``n`` free ports from it."""
    for _ in range(200):
        base = random.randint(20_000, 60_000)
        if all(port_is_free("127.0.0.1", base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def scrape(settings: Settings, worker: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a worker's /metrics."""
    url = worker_url(settings, worker)
    assert url is not None
    status, body = fetch(url + "/metrics", 5.0)
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@dataclass
class Up:
    """A running `up` and the settings its workers use."""

    proc: subprocess.Popen[str]
    settings: Settings
    log: Path

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.settings.dashboard_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_up(tmp: Path, broker: str, database: str, **overrides: object) -> Up:
    """Start `streamrec up` with external broker and database; return once it prints."""
    base: dict[str, object] = {
        "home": tmp / "home",
        "bootstrap_servers": broker,
        "database_url": database,
        "topic_prefix": f"o{uuid.uuid4().hex[:8]}.",
        "user_partitions": 2,
        "catalog_partitions": 1,
        "log_partitions": 1,
        "session_timeout_ms": 3000,
        "batch_fetch_wait_ms": 20,
        "background_fetch_wait_ms": 20,
        "fetch_wait_ms": 5,
        "metrics_port": free_port_range(6),
        "dashboard_port": free_port(),
        "dashboard_scrape_s": 1.0,
        "progress_interval_s": 5.0,
    }
    base.update(overrides)
    settings = Settings(**base)  # type: ignore[arg-type]
    env = settings_env(settings)
    log = tmp / "up.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.app", "up", "--broker", broker, "--database", database],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Up(proc, settings, log)


def wait_ready(up: Up, workers: tuple[str, ...], timeout_s: float = 240.0) -> None:
    """Until every worker answers ready (fails with `up`'s output otherwise)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if up.proc.poll() is not None:
            raise AssertionError(f"`up` exited early:\n{up.output()[-4000:]}")
        probes = probe_workers(up.settings, workers)
        if all(p.ready for p in probes):
            return
        time.sleep(0.5)
    states = {p.name: (p.state, p.detail) for p in probe_workers(up.settings, workers)}
    raise AssertionError(f"workers not ready: {json.dumps(states)}\n{up.output()[-4000:]}")


def stop_up(up: Up) -> None:
    """SIGTERM `up` and wait for it (its workers die with it)."""
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        try:
            up.proc.wait(90)
        except subprocess.TimeoutExpired:
            up.proc.kill()
            up.proc.wait(10)
