"""`streamrec up`: run the workers as child processes in the foreground.

Children inherit the resolved settings through ``STREAMREC_*`` variables, die with the
supervisor (``PR_SET_PDEATHSIG``), are restarted with backoff if they crash, and are
stopped with SIGTERM (then SIGKILL after a grace period) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from stack.embedded import die_with_parent
from streams.settings import ENV_PREFIX, Settings

__all__ = ["Supervisor", "settings_env"]

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

    def _spawn(self, child: _Child) -> None:
        cmd = [sys.executable, "-m", "cli.app", "worker", child.name]
        stdout = None
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            stdout = open(os.path.join(self.log_dir, f"{child.name}.log"), "ab")  # noqa: SIM115
        child.proc = subprocess.Popen(
            cmd,
            env=settings_env(self.settings),
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        if stdout:
            stdout.close()
        log.info("started worker %s (pid %d)", child.name, child.proc.pid)

    def start(self) -> None:
        """Start every worker."""
        for child in self.children.values():
            self._spawn(child)

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
                    continue
                log.warning("worker %s exited with %s; restarting", child.name, code)
                child.restarts.append(now)
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
        return codes
