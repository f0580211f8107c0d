"""The workers' own Prometheus metrics: serving, LLM involvement, enrichment, users,
feedback and the archive.

Instrumented in two places only: every served request and every ``rec.llm-log``
record pass through :func:`observe_served` / :func:`observe_llm` where the serve and
enrich workers emit them; everything else is read from the domain's stats objects
(``UsersStats``, ``PipelineStats``, ``WriterStats``, the feedback joiner, the LLM gate
and breaker) by :class:`StatsExporter`, which the worker's observer runs every second.
The generic consumer-loop metrics are in :mod:`streams.metrics`.

Label values are bounded: routes, warmth buckets and use cases are enums; decision and
fallback reasons are the fixed codes of :mod:`recsys.serving` and :mod:`recsys.llm`
(a value that is not a short lower-case code is counted as ``other``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from recsys.records import LlmInvolvement, RecResponse
from streams.metrics import SECONDS_BUCKETS

__all__ = [
    "StatsExporter",
    "WorkerMetrics",
    "observe_expired",
    "observe_llm",
    "observe_served",
    "worker_metrics",
]

#: Stages of a served request, in order (from :attr:`recsys.serving.Served.timings`).
STAGES = ("user", "candidates", "ranked", "total")
_STAGE_NAMES = {"user": "user_state", "candidates": "candidates", "ranked": "rank"}
#: Lateness of shed requests: from just past the grace to a backlog left by an outage.
LATE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
#: Reason codes a label may carry (decisions, fallbacks); others become ``other``.
REASONS = frozenset(
    {
        "called",
        "cache_hit",
        "disabled",
        "llm_off",
        "no_endpoint",
        "not_eligible",
        "too_few_candidates",
        "duplicate_candidates",
        "deadline",
        "over_budget",
        "breaker_open",
        "timeout",
        "connection",
        "http_429",
        "http_4xx",
        "http_500",
        "http_5xx",
        "invalid_json",
        "schema_violation",
        "hallucinated_ids",
        "duplicate_ids",
        "empty_ranking",
        "truncated",
        "empty",
        "refused",
        "injection",
        "invalid",
        "unknown",
        "not_called",
    }
)


_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _reason(value: str | None) -> str:
    """A label-safe reason: the known codes, any other short code of our own, else other."""
    if not value:
        return "none"
    if value in REASONS or _CODE.fullmatch(value):
        return value
    return "other"


@dataclass(frozen=True)
class WorkerMetrics:
    """Counters, histograms and gauges of the workers' domains."""

    requests: Counter
    llm_used_requests: Counter
    injection_requests: Counter
    request_seconds: Histogram
    stage_seconds: Histogram
    expired_requests: Counter
    expired_late_seconds: Histogram
    llm_decisions: Counter
    llm_fallbacks: Counter
    llm_tokens: Counter
    llm_cost: Counter
    llm_seconds: Histogram
    llm_cache_hits: Counter
    llm_hallucinated_ids: Counter
    llm_hallucinating: Counter
    llm_injection: Counter
    breaker_state: Gauge
    budget_tokens: Gauge
    budget_usd: Gauge
    rerank_cache_entries: Gauge
    enrich_items: Counter
    enrich_stale: Counter
    users_events: Counter
    feedback_examples: Counter
    feedback_sweeps: Counter
    archive_records: Counter
    archive_files: Counter


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """The process's domain metrics (registered once, on first use)."""
    return WorkerMetrics(
        requests=Counter(
            "streamrec_serve_requests",
            "Requests answered, by route taken and the user's warmth bucket.",
            ["route", "warmth"],
        ),
        llm_used_requests=Counter(
            "streamrec_serve_llm_used_requests",
            "Answered requests whose items an LLM touched (rerank or wording).",
            ["route"],
        ),
        injection_requests=Counter(
            "streamrec_serve_injection_flagged_requests",
            "Answered requests where untrusted text (query, history, items) was flagged.",
            ["route"],
        ),
        request_seconds=Histogram(
            "streamrec_serve_request_seconds",
            "Time from taking a request to its response being ready, by route.",
            ["route"],
            buckets=SECONDS_BUCKETS,
        ),
        stage_seconds=Histogram(
            "streamrec_serve_stage_seconds",
            "Time spent in each stage of a request (user_state, candidates, rank — the "
            "LLM rerank included —, explain), by route.",
            ["route", "stage"],
            buckets=SECONDS_BUCKETS,
        ),
        expired_requests=Counter(
            "streamrec_serve_expired_requests",
            "Requests answered EXPIRED without computing anything: their deadline (plus "
            "serve_deadline_grace_ms) had passed when serving would have begun (shed load).",
        ),
        expired_late_seconds=Histogram(
            "streamrec_serve_expired_late_seconds",
            "How far past its deadline each shed request was when the worker picked it up.",
            buckets=LATE_BUCKETS,
        ),
        llm_decisions=Counter(
            "streamrec_llm_decisions",
            "One per LLM use or decision not to use one: called, cache_hit, or the reason.",
            ["worker", "use_case", "decision"],
        ),
        llm_fallbacks=Counter(
            "streamrec_llm_fallbacks",
            "Calls whose answer was not used, by reason (timeout, invalid_json, "
            "hallucinated_ids…).",
            ["worker", "use_case", "reason"],
        ),
        llm_tokens=Counter(
            "streamrec_llm_tokens",
            "Tokens sent and received.",
            ["worker", "use_case", "direction"],
        ),
        llm_cost=Counter(
            "streamrec_llm_cost_usd", "What the calls cost, in US dollars.", ["worker", "use_case"]
        ),
        llm_seconds=Histogram(
            "streamrec_llm_call_seconds",
            "Duration of LLM calls, retries included.",
            ["worker", "use_case"],
            buckets=SECONDS_BUCKETS,
        ),
        llm_cache_hits=Counter(
            "streamrec_llm_cache_hits",
            "Uses answered from the response cache (no call made).",
            ["worker", "use_case"],
        ),
        llm_hallucinated_ids=Counter(
            "streamrec_llm_hallucinated_ids",
            "Item ids an LLM answered that were not among the candidates.",
            ["worker", "use_case"],
        ),
        llm_hallucinating=Counter(
            "streamrec_llm_hallucinating_answers",
            "Answers that named at least one id not among the candidates.",
            ["worker", "use_case"],
        ),
        llm_injection=Counter(
            "streamrec_llm_injection_flagged",
            "LLM decisions whose input text was flagged as instruction-like.",
            ["worker", "use_case"],
        ),
        breaker_state=Gauge(
            "streamrec_llm_breaker_state",
            "Processes whose circuit breaker is in this state (closed, half_open, open): "
            "1 per process of the worker (serve runs serve_replicas of them).",
            ["worker", "state"],
            multiprocess_mode="livesum",
        ),
        budget_tokens=Gauge(
            "streamrec_llm_budget_remaining_tokens",
            "Tokens left in the current minute's budget.",
            ["worker"],
            multiprocess_mode="livemin",
        ),
        budget_usd=Gauge(
            "streamrec_llm_budget_remaining_usd",
            "Dollars left in the current minute's budget (absent without a cost cap).",
            ["worker"],
            multiprocess_mode="livemin",
        ),
        rerank_cache_entries=Gauge(
            "streamrec_llm_rerank_cache_entries",
            "Entries in the rerank response cache.",
            ["worker"],
            multiprocess_mode="livesum",
        ),
        enrich_items=Counter(
            "streamrec_enrich_items",
            "Item versions written to pgvector (or deleted), by enrichment status "
            "(ENRICHED, CACHED = enrichment cache hit, LLM_OFF, LLM_FAILED, UNCHANGED, "
            "DELETED).",
            ["status"],
        ),
        enrich_stale=Counter(
            "streamrec_enrich_stale_changes",
            "Catalog changes ignored because a newer version was already stored or in the batch.",
        ),
        users_events=Counter(
            "streamrec_users_events",
            "User events by what happened to them: applied, duplicate (event id seen), "
            "redelivered (position already stored).",
            ["result"],
        ),
        feedback_examples=Counter(
            "streamrec_feedback_examples",
            "Feedback examples emitted (impressions joined with their outcome).",
        ),
        feedback_sweeps=Counter(
            "streamrec_feedback_sweeps",
            "Times the feedback worker looked for attribution windows to close.",
        ),
        archive_records=Counter(
            "streamrec_archive_records",
            "Records archived (written) or skipped as already archived (redelivered).",
            ["result"],
        ),
        archive_files=Counter(
            "streamrec_archive_files", "Archive files finalized (synced and renamed into place)."
        ),
    )


def observe_llm(worker: str, record: LlmInvolvement) -> None:
    """Count one ``rec.llm-log`` record (serve and enrich emit every one through here)."""
    m = worker_metrics()
    use = str(record.use_case.value).lower()
    m.llm_decisions.labels(worker, use, _reason(record.decision)).inc()
    if record.called and not record.used:
        m.llm_fallbacks.labels(worker, use, _reason(record.fallback_reason)).inc()
    if record.tokens_in:
        m.llm_tokens.labels(worker, use, "prompt").inc(record.tokens_in)
    if record.tokens_out:
        m.llm_tokens.labels(worker, use, "completion").inc(record.tokens_out)
    if record.cost_usd:
        m.llm_cost.labels(worker, use).inc(record.cost_usd)
    if record.called:
        m.llm_seconds.labels(worker, use).observe(record.latency_ms / 1000.0)
    if record.cache_hit:
        m.llm_cache_hits.labels(worker, use).inc()
    if record.hallucinated_ids:
        m.llm_hallucinated_ids.labels(worker, use).inc(len(record.hallucinated_ids))
        m.llm_hallucinating.labels(worker, use).inc()
    if record.injection_flagged:
        m.llm_injection.labels(worker, use).inc()


def observe_served(
    response: RecResponse, logs: list[LlmInvolvement], timings: dict[str, float]
) -> None:
    """Count one answered request: route mix, latency per stage, LLM involvement."""
    m = worker_metrics()
    route = response.route.value
    m.requests.labels(route, response.warmth_bucket.value).inc()
    if response.llm_used:
        m.llm_used_requests.labels(route).inc()
    if any(r.injection_flagged for r in logs):
        m.injection_requests.labels(route).inc()
    total = timings.get("total", response.latency_ms / 1000.0)
    m.request_seconds.labels(route).observe(total)
    previous = 0.0
    for stage in ("user", "candidates", "ranked"):
        if stage in timings:
            m.stage_seconds.labels(route, _STAGE_NAMES[stage]).observe(
                max(0.0, timings[stage] - previous)
            )
            previous = timings[stage]
    if "total" in timings:
        m.stage_seconds.labels(route, "explain").observe(max(0.0, total - previous))
    for record in logs:
        observe_llm("serve", record)


def observe_expired(late_s: float) -> None:
    """Count one request answered ``EXPIRED`` (shed), ``late_s`` past its deadline."""
    m = worker_metrics()
    m.expired_requests.inc()
    m.expired_late_seconds.observe(max(0.0, late_s))


class _Delta:
    """Turns a stats object's running totals into counter increments."""

    def __init__(self) -> None:
        self._last: dict[Any, float] = {}

    def inc(self, counter: Any, key: Any, value: float) -> None:
        before = self._last.get(key, 0.0)
        if value > before:
            counter.inc(value - before)
        self._last[key] = max(before, value)


class StatsExporter:
    """Copies a worker's stats objects into metrics (called about once a second).

    Reads the typed handle a worker publishes (``UsersWorker``, ``EnrichWorker``,
    ``FeedbackWorker``, ``ArchiveWorker``, ``ServeWorker``) by duck typing, so that this
    module imports no worker module.
    """

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.delta = _Delta()

    def export(self, handle: object) -> None:
        """Update the metrics from ``handle``'s stats."""
        m, d = worker_metrics(), self.delta
        updater = getattr(handle, "updater", None)
        if updater is not None:
            s = updater.stats
            d.inc(m.users_events.labels("applied"), "applied", s.applied)
            d.inc(m.users_events.labels("duplicate"), "duplicate", s.duplicates)
            d.inc(m.users_events.labels("redelivered"), "redelivered", s.redelivered)
        pipeline = getattr(handle, "pipeline", None)
        if pipeline is not None:
            s = pipeline.stats
            for status, n in list(s.statuses.items()):
                d.inc(m.enrich_items.labels(status), ("status", status), n)
            d.inc(m.enrich_stale, "stale", s.stale)
            breaker = getattr(getattr(pipeline, "enricher", None), "breaker", None)
            if breaker is not None:
                self._breaker(breaker)
        joiner = getattr(handle, "joiner", None)
        if joiner is not None:
            d.inc(m.feedback_examples, "examples", joiner.emitted)
            d.inc(m.feedback_sweeps, "sweeps", joiner.sweeps)
        writer = getattr(handle, "writer", None)
        if writer is not None:
            s = writer.stats
            d.inc(m.archive_records.labels("written"), "written", s.written)
            d.inc(m.archive_records.labels("skipped"), "skipped", s.skipped)
            d.inc(m.archive_files, "files", s.files)
        recommender = getattr(handle, "recommender", None)
        if recommender is not None:
            self._serving_llm(recommender.llm)

    def _breaker(self, breaker: Any) -> None:
        state = breaker.state
        for name in ("closed", "half_open", "open"):
            worker_metrics().breaker_state.labels(self.worker, name).set(1 if name == state else 0)

    def _serving_llm(self, parts: Any) -> None:
        m = worker_metrics()
        gate = parts.gate
        if gate is not None:
            self._breaker(gate.breaker)
            if gate.tokens_per_min is not None:
                m.budget_tokens.labels(self.worker).set(
                    max(0, gate.tokens_per_min - gate.tokens_last_minute)
                )
            if gate.usd_per_min is not None:
                m.budget_usd.labels(self.worker).set(
                    max(0.0, gate.usd_per_min - gate.usd_last_minute)
                )
        if parts.reranker is not None:
            m.rerank_cache_entries.labels(self.worker).set(parts.reranker.cache_len)
