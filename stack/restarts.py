"""When to restart a supervised process, and when to stop trying.

The rule counts *consecutive failures without a healthy run*, as supervisord's
``startsecs``/``startretries`` do: a process that ran at least ``healthy_after_s`` before
it failed starts a new count; one that keeps failing sooner is given up on after
``max_failures`` failures in a row, however long each cycle takes (a window of "restarts
per minute" never fills when start-up plus backoff outlasts the window). Waits between
restarts double from 0.5 s up to ``backoff_max_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.settings import Settings

__all__ = ["RestartPolicy", "RestartState"]


@dataclass(frozen=True)
class RestartPolicy:
    """How many quick failures in a row are tolerated, and how long to wait between them."""

    max_failures: int = 5
    healthy_after_s: float = 60.0
    backoff_max_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            max_failures=settings.restart_max_failures,
            healthy_after_s=settings.restart_healthy_after_s,
            backoff_max_s=settings.restart_backoff_max_s,
        )

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the restart that follows failure number ``failures``."""
        return float(min(self.backoff_max_s, 0.5 * 2 ** max(0, failures - 1)))


@dataclass
class RestartState:
    """The failure count of one supervised process."""

    policy: RestartPolicy
    #: When the current run started (monotonic seconds).
    started_at: float = field(default_factory=time.monotonic)
    #: Failures in a row, each before ``healthy_after_s`` of running.
    failures: int = 0
    #: Every restart since the supervisor started (failures and deliberate ones).
    restarts: int = 0
    #: When the pending restart is due (None: none pending).
    due_at: float | None = None

    def started(self, now: float | None = None) -> None:
        """A new run began."""
        self.started_at = time.monotonic() if now is None else now
        self.due_at = None

    def failed(self, now: float | None = None) -> bool:
        """Record a failure; schedule the restart. False when it is time to give up."""
        now = time.monotonic() if now is None else now
        if now - self.started_at >= self.policy.healthy_after_s:
            self.failures = 0
        self.failures += 1
        if self.failures >= self.policy.max_failures:
            self.due_at = None
            return False
        self.due_at = now + self.policy.backoff(self.failures)
        self.restarts += 1
        return True

    def uptime(self, now: float | None = None) -> float:
        """Seconds the current run has lasted."""
        return (time.monotonic() if now is None else now) - self.started_at
