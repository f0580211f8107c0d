"""What an LLM call returns: the result type, running totals, and the failure reasons.

A structured call never raises for an LLM problem; it returns an :class:`LlmResult`
whose ``reason`` is one of the constants below or ``http_<status>``, so every use case
can fall back and log the exact cause without try/except around each call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from recsys.llm.exceptions import LlmCallError

__all__ = [
    "CONNECTION",
    "DEADLINE",
    "EMPTY",
    "INVALID_JSON",
    "REFUSED",
    "SCHEMA_VIOLATION",
    "TIMEOUT",
    "TRUNCATED",
    "LlmResult",
    "LlmStats",
    "is_retryable",
    "is_transport_failure",
]

# ---- failure reasons (also ``http_<status>`` for any HTTP error status) ----------------
TIMEOUT = "timeout"  # one attempt exceeded its timeout
DEADLINE = "deadline"  # the caller's deadline left no time for (another) attempt
CONNECTION = "connection"  # could not connect / connection dropped
INVALID_JSON = "invalid_json"  # the answer is not a JSON object
SCHEMA_VIOLATION = "schema_violation"  # JSON, but not what the schema/model allows
EMPTY = "empty_response"  # no choice or no content
REFUSED = "refused"  # the model refused (``message.refusal``)
TRUNCATED = "truncated"  # finish_reason == "length": the answer was cut off


def is_retryable(reason: str) -> bool:
    """Reasons worth another attempt with backoff: timeouts, connection errors, 429, 5xx."""
    if reason in (TIMEOUT, CONNECTION, "http_429"):
        return True
    return reason.startswith("http_5")


def is_transport_failure(reason: str | None) -> bool:
    """True for failures of the endpoint (timeouts, HTTP errors, connection), as opposed
    to a well-formed answer that is invalid. Circuit breakers count only these."""
    if reason is None:
        return False
    return reason in (TIMEOUT, CONNECTION, DEADLINE) or reason.startswith("http_")


T = TypeVar("T")


@dataclass(frozen=True)
class LlmResult(Generic[T]):
    """Outcome of one structured call (all attempts), successful or not."""

    ok: bool
    value: T | None
    model: str
    reason: str | None = None
    detail: str = ""
    content: str | None = None
    validation_errors: tuple[str, ...] = ()
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    attempts: int = 0
    cost_usd: float = 0.0
    #: The messages as sent (JSON; untrusted text already redacted and quoted), for
    #: ``rec.llm-log``; None when the client keeps prompts out of the log.
    prompt: str | None = None

    @property
    def validated(self) -> bool | None:
        """True: the answer validated; False: an answer came but was invalid; None: no answer."""
        if self.ok:
            return True
        if self.reason in (INVALID_JSON, SCHEMA_VIOLATION, TRUNCATED, EMPTY, REFUSED):
            return False
        return None

    @property
    def data(self) -> T | None:
        """Alias of ``value`` (the name serving's ``LlmReply`` uses)."""
        return self.value

    @property
    def error(self) -> str | None:
        """Alias of ``reason``."""
        return self.reason

    def unwrap(self) -> T:
        """The validated value, or :class:`LlmCallError` with the reason."""
        if not self.ok or self.value is None:
            raise LlmCallError(self.reason or "unknown", self.detail)
        return self.value


@dataclass
class LlmStats:
    """Running totals of one client (shown by the demo, useful in benchmarks)."""

    calls: int = 0
    ok: int = 0
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
