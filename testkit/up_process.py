"""`streamrec up` as a user runs it: a background process whose output is read line by line
(the supervision tests and ``benchmarks/chaos.py``)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from stack.embedded import die_with_parent

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "UpProcess", "clean_env"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``STREAMREC_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(extra)
    return env


class UpProcess:
    """`streamrec up` in the background, its output (stdout and stderr) read line by line."""

    def __init__(self, home: Path, port: int, *args: str, **env: str) -> None:
        """Start ``up`` on ``home`` and broker ``port``; no metrics endpoints (their fixed
        ports would collide with other runs on the machine) unless ``env`` names one."""
        env.setdefault("STREAMREC_SESSION_TIMEOUT_MS", "3000")
        env.setdefault("STREAMREC_METRICS_PORT", "0")
        extra = () if "--no-dashboard" in args else ("--no-dashboard",)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "up", "--broker-port", str(port), *args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=clean_env(STREAMREC_HOME=str(home), **env),
            # stops the whole stack if the test or benchmark that started it dies
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """The first line from now on that contains ``text``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"`up` never printed {text!r}; output:\n{''.join(self.seen)}")

    def drain(self, timeout: float = 5) -> str:
        """Everything printed until the process exits (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        return "".join(self.seen)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill(self) -> None:
        """SIGKILL what is left (after a failed test)."""
        for child in self.descendants() if self.proc.poll() is None else []:
            child.kill()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
