"""Deadline-based load shedding: answer a request that is already too late, cheaply.

A :class:`~recsys.records.RecRequest` says when it was made (``requested_at``, the
requester's clock) and how long its requester waits (``deadline_ms``). After a
saturation, or a serve process that was down for a while, requests queue up in
``rec.requests``; answering each at full cost when nobody waits for it any more only
delays the requests behind it that someone still waits for. So, when serving is about to
begin, :meth:`Shedder.lateness_s` compares the request's age by the worker's wall clock
with its deadline; past the deadline by more than ``grace_s``, the worker computes
nothing and publishes :func:`expired_response` instead — an explicit ``EXPIRED`` answer
(status field on ``rec.responses``) that clients, the feedback join and evaluation tell
apart from an empty list of recommendations.

The grace covers clock skew between requester and worker (``requested_at`` is the
requester's clock): a requester whose clock runs ahead makes requests look younger
(never shed early), one whose clock runs behind makes them look older, by up to the
skew. Keep the grace above the skew of the hosts' clocks.

A request whose deadline passes *while* it is served is still answered (``OK``): the LLM
stages already stop at the deadline (``llm_gate``), the rest takes milliseconds, and the
work is done by then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recsys.records import RecRequest, RecResponse, ResponseStatus, Route, WarmthBucket, utcnow

__all__ = ["Shedder", "SheddingStats", "expired_response", "late_by_s"]


@dataclass
class SheddingStats:
    """Running totals of one serve process (metrics, progress lines, tests)."""

    #: Requests answered ``EXPIRED``.
    expired: int = 0
    #: Sum of how late they were when picked up (seconds past the deadline), for a mean.
    late_s_total: float = 0.0
    #: Largest lateness seen (seconds past the deadline).
    late_s_max: float = 0.0


@dataclass
class Shedder:
    """Decides whether a request is too late to serve; counts the ones it sheds.

    Attributes:
        enabled: False serves every request, however late (the behaviour before shedding).
        grace_s: how far past its deadline a request may be and still be served.
    """

    enabled: bool = True
    grace_s: float = 0.1
    stats: SheddingStats = field(default_factory=SheddingStats)

    def __post_init__(self) -> None:
        if self.grace_s < 0:
            raise ValueError("grace_s must be >= 0")

    def lateness_s(self, request: RecRequest, now: datetime | None = None) -> float | None:
        """Seconds past its deadline if ``request`` is to be shed now, else None.

        ``now`` is the worker's wall clock (timezone-aware; default: now).
        """
        if not self.enabled:
            return None
        late = _late_by(request, now or utcnow())  # exact (microseconds), no float rounding
        return late.total_seconds() if late > timedelta(seconds=self.grace_s) else None

    def shed(self, late_s: float) -> None:
        """Count one request answered ``EXPIRED``, ``late_s`` past its deadline."""
        self.stats.expired += 1
        self.stats.late_s_total += late_s
        self.stats.late_s_max = max(self.stats.late_s_max, late_s)


def late_by_s(request: RecRequest, now: datetime) -> float:
    """Seconds by which ``request``'s deadline has passed at ``now`` (negative: not yet)."""
    return _late_by(request, now).total_seconds()


def _late_by(request: RecRequest, now: datetime) -> timedelta:
    return now - request.requested_at - timedelta(milliseconds=request.deadline_ms)


def expired_response(request: RecRequest, *, late_s: float, latency_ms: float) -> RecResponse:
    """The cheap answer to a shed request: no items, no LLM, no policy decision.

    ``route`` and ``warmth_bucket`` are required by the schema and hold placeholders
    (``POPULARITY``, ``COLD``: nothing was looked up); ``propensity`` is 0 — no action
    of the logging policy was taken — so an off-policy reader that forgets to check the
    status still skips it. ``short_reason`` says how late the request was, in words.
    """
    return RecResponse(
        request_id=request.request_id,
        user_id=request.user_id,
        items=[],
        route=Route.POPULARITY,
        warmth_bucket=WarmthBucket.COLD,
        propensity=0.0,
        llm_used=False,
        latency_ms=max(0.0, latency_ms),
        status=ResponseStatus.EXPIRED,
        short_reason=(
            f"expired: its deadline of {request.deadline_ms} ms had passed "
            f"{late_s * 1000:.0f} ms before serving began; nothing was computed"
        ),
    )
