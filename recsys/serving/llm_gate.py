"""Whether serving may call the LLM for this request right now, and what calls cost.

Three things can say no, checked in this order (the breaker last, because letting a
half-open breaker's trial call through uses it up):

* ``deadline`` — less than ``min_s`` of the request's deadline is left;
* ``over_budget`` — the tokens or dollars spent in the last minute (sliding window)
  reached ``tokens_per_min`` / ``usd_per_min``;
* ``breaker_open`` — the endpoint failed too often lately (:class:`CircuitBreaker`).

:meth:`LlmGate.record` adds an outcome's spend to the window and reports it to the
breaker: only transport failures (timeouts, HTTP errors, connection) count against the
endpoint; a well-formed but invalid answer (hallucinated ids, malformed JSON) does not.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from recsys.llm.breaker import CircuitBreaker
from recsys.llm.result import is_transport_failure

__all__ = ["BREAKER_OPEN", "DEADLINE", "OVER_BUDGET", "LlmGate", "Spend"]

BREAKER_OPEN = "breaker_open"
OVER_BUDGET = "over_budget"
DEADLINE = "deadline"
WINDOW_S = 60.0


class Spend(Protocol):
    """What :meth:`LlmGate.record` reads from an outcome (every serving outcome has it)."""

    @property
    def called(self) -> bool: ...
    @property
    def tokens_in(self) -> int: ...
    @property
    def tokens_out(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def llm_reason(self) -> str | None: ...


class LlmGate:
    """Breaker + per-minute token/cost budget + deadline check, in one place."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        tokens_per_min: int | None,
        usd_per_min: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breaker = breaker
        self.tokens_per_min = tokens_per_min
        self.usd_per_min = usd_per_min
        self._clock = clock
        self._window: deque[tuple[float, int, float]] = deque()
        self._tokens = 0
        self._usd = 0.0

    def _expire(self) -> None:
        cutoff = self._clock() - WINDOW_S
        while self._window and self._window[0][0] <= cutoff:
            _, tokens, usd = self._window.popleft()
            self._tokens -= tokens
            self._usd -= usd
        if not self._window:
            self._tokens, self._usd = 0, 0.0

    @property
    def tokens_last_minute(self) -> int:
        """Tokens (prompt + completion) spent in the last 60 s."""
        self._expire()
        return self._tokens

    @property
    def usd_last_minute(self) -> float:
        """Dollars spent in the last 60 s."""
        self._expire()
        return self._usd

    def over_budget(self) -> bool:
        """True when the last minute's spend reached a configured cap."""
        self._expire()
        if self.tokens_per_min is not None and self._tokens >= self.tokens_per_min:
            return True
        return self.usd_per_min is not None and self._usd >= self.usd_per_min

    def allow(self, remaining_s: float, min_s: float = 0.05) -> tuple[bool, str | None]:
        """(may call, reason if not): ``deadline``, ``over_budget`` or ``breaker_open``.

        A True answer from a half-open breaker is its single trial: report the outcome
        with :meth:`record` (also when the call was not made, e.g. a cache hit).
        """
        if remaining_s < min_s:
            return False, DEADLINE
        if self.over_budget():
            return False, OVER_BUDGET
        if not self.breaker.allow():
            return False, BREAKER_OPEN
        return True, None

    def record(self, outcome: Spend) -> None:
        """Count an outcome's spend and tell the breaker how the endpoint did."""
        if not outcome.called:
            self.breaker.release_trial()
            return
        tokens = int(outcome.tokens_in) + int(outcome.tokens_out)
        usd = float(outcome.cost_usd)
        if tokens or usd:
            self._window.append((self._clock(), tokens, usd))
            self._tokens += tokens
            self._usd += usd
        self.breaker.record(not is_transport_failure(outcome.llm_reason))
