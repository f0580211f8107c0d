"""What the LLM did: involvement, hallucinations, cost and latency.

* LLM-involvement rate = share of responses with ``llm_used`` (an LLM changed their
  ranking or wording).
* Hallucination rate = share of LLM calls (``called``; RERANK and EXPLAIN — the steps
  that return item ids or claims about items) whose output named at least one id that
  was not a candidate (``hallucinated_ids`` non-empty).
* Cost per request = the request's LLM-log ``cost_usd`` summed (0 without LLM use).
* Latency = the response's ``latency_ms`` (end to end in the serving worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from recsys.records import LlmInvolvement, LlmUseCase, RecResponse

__all__ = [
    "cost_by_request",
    "hallucination_rate",
    "latency_summary",
    "llm_involvement_rate",
    "percentile",
]

JUDGED_USE_CASES = frozenset({LlmUseCase.RERANK, LlmUseCase.EXPLAIN})


def llm_involvement_rate(responses: Sequence[RecResponse]) -> float | None:
    """Share of responses an LLM shaped (None for no responses)."""
    if not responses:
        return None
    return sum(1 for r in responses if r.llm_used) / len(responses)


def hallucination_rate(records: Iterable[LlmInvolvement]) -> float | None:
    """Share of RERANK/EXPLAIN calls that returned a non-candidate id (None if no call)."""
    calls = [r for r in records if r.called and r.use_case in JUDGED_USE_CASES]
    if not calls:
        return None
    return sum(1 for r in calls if r.hallucinated_ids) / len(calls)


def cost_by_request(records: Iterable[LlmInvolvement]) -> dict[str, float]:
    """Total LLM cost per request id."""
    out: dict[str, float] = {}
    for r in records:
        out[r.request_id] = out.get(r.request_id, 0.0) + r.cost_usd
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100), linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(responses: Sequence[RecResponse]) -> dict[str, float | None]:
    """Mean, p50 and p95 of ``latency_ms``."""
    values = [r.latency_ms for r in responses]
    return {
        "latency_ms_mean": sum(values) / len(values) if values else None,
        "latency_ms_p50": percentile(values, 50),
        "latency_ms_p95": percentile(values, 95),
    }
