"""`streamrec up`: run the workers as child processes in the foreground.

Children inherit the resolved settings through ``STREAMREC_*`` variables, die with the
supervisor (``PR_SET_PDEATHSIG``), are restarted with backoff if they crash, and are
stopped with SIGTERM (then SIGKILL after a grace period) on Ctrl-C or SIGTERM.

Each worker gets a metrics directory of its own (``PROMETHEUS_MULTIPROC_DIR``), emptied
at start, so that its counters survive its restarts and several processes of one worker
add up; :meth:`Supervisor.status` tells each worker's state and restarts (served by
``up`` on the supervisor's endpoint, read by ``doctor`` and the dashboard).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stack.embedded import die_with_parent
from streams.settings import ENV_PREFIX, Settings

__all__ = ["Supervisor", "WorkerStatus", "settings_env"]

#: Restarts within a minute from which a worker counts as crash-looping.
CRASH_LOOP_RESTARTS = 2

log = logging.getLogger(__name__)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process that reproduces ``settings`` exactly."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            text = value.get_secret_value()
        elif isinstance(value, tuple):
            text = ",".join(map(str, value))
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    #: starting/running, restarting (in backoff), failed (given up), stopped
    state: str = "stopped"
    total_restarts: int = 0
    last_exit: int | None = None
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as the supervisor sees it."""

    name: str
    state: str
    pid: int | None
    restarts: int
    restarts_last_min: int
    last_exit: int | None
    since: float

    @property
    def crash_looping(self) -> bool:
        """Given up on, or restarted again and again within the last minute."""
        return self.state == "failed" or self.restarts_last_min >= CRASH_LOOP_RESTARTS


class Supervisor:
    """Starts, watches and stops one process per worker."""

    def __init__(
        self,
        settings: Settings,
        workers: Iterable[str],
        *,
        grace_s: float = 15.0,
        max_restarts_per_min: int = 5,
        log_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.children = {name: _Child(name) for name in workers}
        self.grace_s = grace_s
        self.max_restarts = max_restarts_per_min
        self.log_dir = log_dir
        self.stopping = threading.Event()
        self.metrics_root = settings.home / "run" / "metrics"

    def metrics_dir(self, name: str) -> Path:
        """The shared metrics directory of worker ``name``'s processes."""
        return self.metrics_root / name

    def _spawn(self, child: _Child) -> None:
        cmd = [sys.executable, "-m", "cli.app", "worker", child.name]
        env = settings_env(self.settings)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir(child.name))
        stdout = None
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            stdout = open(os.path.join(self.log_dir, f"{child.name}.log"), "ab")  # noqa: SIM115
        child.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        if stdout:
            stdout.close()
        child.state, child.since = "running", time.time()
        log.info("started worker %s (pid %d)", child.name, child.proc.pid)

    def _exited(self, child: _Child) -> None:
        """Bookkeeping for a worker process that ended: its live gauges go."""
        assert child.proc is not None
        child.last_exit = child.proc.returncode
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(child.proc.pid, str(self.metrics_dir(child.name)))
        except OSError:  # pragma: no cover - the directory went away
            pass

    def start(self) -> None:
        """Start every worker (with empty metrics directories)."""
        for child in self.children.values():
            folder = self.metrics_dir(child.name)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            self._spawn(child)

    def status(self) -> list[WorkerStatus]:
        """Every worker's state, pid and restarts."""
        now = time.monotonic()
        out = []
        for child in self.children.values():
            alive = child.proc is not None and child.proc.poll() is None
            state = child.state
            if state == "running" and not alive:
                state = "restarting"  # exited; the watch loop has not seen it yet
            out.append(
                WorkerStatus(
                    name=child.name,
                    state=state,
                    pid=child.proc.pid if alive and child.proc is not None else None,
                    restarts=child.total_restarts,
                    restarts_last_min=sum(1 for t in child.restarts if now - t < 60),
                    last_exit=child.last_exit,
                    since=child.since,
                )
            )
        return out

    def pids(self) -> dict[str, int]:
        """Worker name → pid of the running process."""
        return {n: c.proc.pid for n, c in self.children.items() if c.proc and c.proc.poll() is None}

    def watch(self, until: threading.Event | None = None, poll_s: float = 0.5) -> None:
        """Restart crashed workers until ``until`` (or :attr:`stopping`) is set."""
        until = until or self.stopping
        while not until.is_set() and not self.stopping.is_set():
            for child in self.children.values():
                if child.proc is None or child.proc.poll() is None:
                    continue
                code = child.proc.returncode
                self._exited(child)
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60]
                if len(child.restarts) >= self.max_restarts:
                    log.error(
                        "worker %s keeps failing (exit %s, %d restarts in a minute); "
                        "not restarting",
                        child.name,
                        code,
                        len(child.restarts),
                    )
                    child.proc = None
                    child.state, child.since = "failed", time.time()
                    continue
                log.warning("worker %s exited with %s; restarting", child.name, code)
                child.restarts.append(now)
                child.total_restarts += 1
                child.state, child.since = "restarting", time.time()
                time.sleep(min(5.0, 0.5 * 2 ** len(child.restarts)))
                self._spawn(child)
            until.wait(poll_s)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every worker, SIGKILL what outlives the grace period; exit codes."""
        self.stopping.set()
        for child in self.children.values():
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        codes: dict[str, int | None] = {}
        for child in self.children.values():
            if child.proc is None:
                codes[child.name] = None
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop in %.0fs; killing it", child.name, self.grace_s)
                child.proc.kill()
                child.proc.wait(5)
            codes[child.name] = child.proc.returncode
            child.state, child.since = "stopped", time.time()
        return codes
