"""`streamrec up`: run the workers as child processes in the foreground.

Children inherit the resolved settings through ``STREAMREC_*`` variables, die with the
supervisor (``PR_SET_PDEATHSIG``), are restarted with backoff if they crash — until one
keeps failing (:mod:`stack.restarts`), which stops the stack loudly — and are stopped
with SIGTERM (then SIGKILL after a grace period) on Ctrl-C or SIGTERM.

Each worker gets a metrics directory of its own (``PROMETHEUS_MULTIPROC_DIR``), emptied
at start, so that its counters survive its restarts and several processes of one worker
(serve's replicas) add up; :meth:`Supervisor.status` tells each process's state and
restarts (served by ``up`` on the supervisor's endpoint, read by ``doctor`` and the
dashboard).
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
from stack.exceptions import GaveUp
from stack.restarts import RestartPolicy, RestartState
from stack.stack import Stack
from stack.stack_watch import StackWatch
from streams.settings import ENV_PREFIX, Settings

__all__ = ["Supervisor", "WorkerStatus", "replica_names", "settings_env"]

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
    #: ``worker`` or ``worker-N`` for the N-th replica.
    name: str
    worker: str
    restarts: RestartState
    proc: subprocess.Popen[bytes] | None = None
    #: starting/running, restarting (in backoff), failed (given up), stopped
    state: str = "stopped"
    last_exit: int | None = None
    since: float = field(default_factory=time.time)
    #: Monotonic times of the restarts (for "restarts in the last minute").
    restart_times: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerStatus:
    """One worker process as the supervisor sees it."""

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


def replica_names(settings: Settings, workers: Iterable[str]) -> list[tuple[str, str]]:
    """``(process name, worker)`` per process: serve runs ``serve_replicas`` of them."""
    out: list[tuple[str, str]] = []
    for worker in workers:
        count = settings.serve_replicas if worker == "serve" else 1
        out += [(worker if n == 1 else f"{worker}-{n}", worker) for n in range(1, count + 1)]
    return out


class Supervisor:
    """Starts, watches and stops one process per worker (and, given the stack, its parts).

    With ``replicas``, serve runs ``serve_replicas`` processes (``serve``, ``serve-2``,
    …) in one consumer group. A worker that exits is restarted after a backoff; one that fails
    ``restart_max_failures`` times in a row, each within ``restart_healthy_after_s`` of
    starting, is not: :meth:`watch` raises :class:`~stack.exceptions.GaveUp`, and `up`
    stops everything with that message and a non-zero exit. A dead embedded broker or
    Postgres is handled by :class:`~stack.stack_watch.StackWatch` under the same rule.
    """

    def __init__(
        self,
        settings: Settings,
        workers: Iterable[str],
        *,
        grace_s: float = 15.0,
        log_dir: str | None = None,
        stack: Stack | None = None,
        policy: RestartPolicy | None = None,
        replicas: bool = False,
    ) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy.from_settings(settings)
        names = replica_names(settings, workers) if replicas else [(w, w) for w in workers]
        self.children = {
            name: _Child(name, worker, RestartState(self.policy)) for name, worker in names
        }
        self.grace_s = grace_s
        self.log_dir = log_dir
        self.stopping = threading.Event()
        self.stack_watch = (
            StackWatch(stack, self.policy, self.stop_all, self.start_all)
            if stack is not None
            else None
        )
        self.metrics_root = settings.home / "run" / "metrics"

    def metrics_dir(self, worker: str) -> Path:
        """The shared metrics directory of worker ``worker``'s processes."""
        return self.metrics_root / worker

    def _spawn(self, child: _Child) -> None:
        cmd = [sys.executable, "-m", "cli.app", "worker", child.worker]
        env = settings_env(self.settings)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir(child.worker))
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
        child.restarts.started()
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

            multiprocess.mark_process_dead(child.proc.pid, str(self.metrics_dir(child.worker)))
        except OSError:  # pragma: no cover - the directory went away
            pass

    def start(self) -> None:
        """Start every worker (with empty metrics directories)."""
        for worker in {c.worker for c in self.children.values()}:
            folder = self.metrics_dir(worker)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
        for child in self.children.values():
            self._spawn(child)

    def status(self) -> list[WorkerStatus]:
        """Every worker process's state, pid and restarts."""
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
                    restarts=child.restarts.restarts,
                    restarts_last_min=sum(1 for t in child.restart_times if now - t < 60),
                    last_exit=child.last_exit,
                    since=child.since,
                )
            )
        return out

    def pids(self) -> dict[str, int]:
        """Process name (``serve``, ``serve-2``, …) → pid of the running process."""
        return {n: c.proc.pid for n, c in self.children.items() if c.proc and c.proc.poll() is None}

    def restarts(self) -> dict[str, int]:
        """Worker name → restarts since the supervisor started."""
        return {n: c.restarts.restarts for n, c in self.children.items()}

    def watch(self, until: threading.Event | None = None, poll_s: float = 0.2) -> None:
        """Restart crashed workers (and dead stack parts) until ``until`` or :attr:`stopping`.

        Raises:
            GaveUp: a worker or a stack part keeps failing; nothing is restarted any more
                (the caller stops the rest).
        """
        until = until or self.stopping
        while not until.is_set() and not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children.values():
                self._tend(child, now)
            if self.stack_watch is not None:
                self.stack_watch.check()
            until.wait(poll_s)

    def _tend(self, child: _Child, now: float) -> None:
        state = child.restarts
        if state.due_at is not None:
            if now >= state.due_at and not self.stopping.is_set():
                self._spawn(child)
            return
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        self._exited(child)
        uptime = state.uptime(now)
        if not state.failed(now):
            child.state, child.since = "failed", time.time()
            raise GaveUp(
                f"worker {child.name} failed {state.failures} times in a row, each within "
                f"{self.policy.healthy_after_s:.0f}s of starting (last exit code {code}, "
                f"after {uptime:.1f}s); not restarting it — stopping the stack. Its log says "
                f"why{f' ({self.log_dir}/{child.name}.log)' if self.log_dir else ' (above)'}."
            )
        assert state.due_at is not None
        child.restart_times = [t for t in child.restart_times if now - t < 60] + [now]
        child.state, child.since = "restarting", time.time()
        log.warning(
            "worker %s exited with %s after %.1fs (failure %d of %d in a row); restarting in %.1fs",
            child.name,
            code,
            uptime,
            state.failures,
            self.policy.max_failures,
            state.due_at - now,
        )

    def stop_all(self) -> None:
        """Stop every worker for a moment (the broker is being replaced); see :meth:`start_all`."""
        self._terminate(list(self.children.values()))
        for child in self.children.values():
            if child.proc is not None:
                self._exited(child)
            child.proc = None  # not an exit to restart: start_all does
            child.state, child.since = "restarting", time.time()

    def start_all(self) -> None:
        """Start every worker stopped by :meth:`stop_all` (not counted as failures)."""
        if self.stopping.is_set():
            return
        for child in self.children.values():
            child.restarts.restarts += 1
            self._spawn(child)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every worker, SIGKILL what outlives the grace period; exit codes."""
        self.stopping.set()
        return self._terminate(list(self.children.values()))

    def _terminate(self, children: list[_Child]) -> dict[str, int | None]:
        for child in children:
            child.restarts.due_at = None
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        codes: dict[str, int | None] = {}
        for child in children:
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
