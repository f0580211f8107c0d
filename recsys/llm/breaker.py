"""A small circuit breaker for an LLM endpoint.

When the endpoint is down, every call would burn its full timeout and retries; after
``failures`` consecutive transport failures the breaker opens and callers skip the LLM
(and log ``breaker_open``) for ``reset_s``, then let one trial call through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CircuitBreaker"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure breaker (closed → open → half-open → closed)."""

    def __init__(
        self, failures: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> State:
        """Where the breaker is now."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def release_trial(self) -> None:
        """A half-open trial that was allowed but not used (no call went out): free it."""
        self._trial_out = False

    def record(self, transport_ok: bool) -> None:
        """Report a call's outcome (a well-formed but invalid answer counts as ok)."""
        self._trial_out = False
        if transport_ok:
            self._consecutive = 0
            self._opened_at = None
            return
        self._consecutive += 1
        if self._opened_at is not None or self._consecutive >= self.failures:
            self._opened_at = self._clock()
