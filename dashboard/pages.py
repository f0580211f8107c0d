"""The data of each page, gathered from the scraper, Kafka and Postgres.

Each function returns the context of one template; nothing here renders HTML except
the charts (escaped SVG). Every figure says where it comes from: a rate is computed from
two scrapes of the worker's own counters, a total is the counter's value now.
"""

from __future__ import annotations

from typing import Any

from dashboard.catalog import Catalog
from dashboard.charts import bars, line_chart
from dashboard.kafka_views import KafkaViews, TailIndex
from dashboard.scrape import Scraper, totals
from recsys.exceptions import StreamrecError
from streams.settings import Settings

__all__ = ["catalog_page", "dlq_page", "overview_page", "serving_page"]

ROUTES = ("CF", "CONTENT", "HYBRID", "POPULARITY")


def _last(points: list[tuple[float, float]]) -> float:
    return points[-1][1] if points else 0.0


def overview_page(
    settings: Settings, scraper: Scraper, kafka: KafkaViews, supervisor: list[Any] | None
) -> dict[str, Any]:
    """Workers (health, restarts, throughput, lag, dead letters) and topics."""
    sup = {s.name: s for s in supervisor or []}
    workers = []
    throughput: dict[str, list[tuple[float, float]]] = {}
    lag_series: dict[str, list[tuple[float, float]]] = {}
    for name in settings.workers:
        probe = scraper.health.get(name)
        snap = scraper.latest(name)
        rate = scraper.rate(name, "streamrec_messages_consumed_total").get("all", [])
        throughput[name] = rate
        lag_series[name] = [
            (s.at, s.total("streamrec_consumer_lag_messages")) for s in scraper.snapshots(name)
        ]
        s = sup.get(name)
        workers.append(
            {
                "name": name,
                "state": probe.state if probe else "unknown",
                "detail": probe.detail if probe else "not scraped yet",
                "pid": probe.pid if probe else None,
                "restarts": s.restarts if s is not None else (probe.restarts if probe else None),
                "supervisor_state": s.state if s is not None else None,
                "consumed": snap.total("streamrec_messages_consumed_total") if snap else None,
                "rate": _last(rate),
                "lag": snap.total("streamrec_consumer_lag_messages") if snap else None,
                "dead": snap.total("streamrec_messages_dead_lettered_total") if snap else None,
            }
        )
    sizes = kafka.sizes()
    topics = [
        {
            "name": t.name,
            "partitions": t.partitions,
            "messages": sizes.get(t.name),
            "dlq": t.is_dlq,
        }
        for t in kafka.topics
    ]
    return {
        "workers": workers,
        "topics": topics,
        "throughput_chart": line_chart(throughput, title="messages consumed per second"),
        "lag_chart": line_chart(lag_series, title="consumer lag (messages)"),
        "scrapes": scraper.scrapes,
    }


def serving_page(scraper: Scraper, tail: TailIndex) -> dict[str, Any]:
    """Latency percentiles per route, route mix by warmth, LLM involvement and cost, and
    the requests shed as EXPIRED (counted apart from the answered ones)."""
    w = "serve"
    snap = scraper.latest(w)
    charts = {}
    for q in (0.5, 0.95, 0.99):
        series = scraper.quantiles(w, "streamrec_serve_request_seconds", q, by="route")
        ms = {r: [(t, v * 1000) for t, v in pts] for r, pts in series.items()}
        charts[f"p{int(q * 100)}"] = line_chart(
            ms, title=f"p{int(q * 100)} latency per route (ms)", unit="ms"
        )
    mix: dict[str, dict[str, float]] = {}
    if snap is not None:
        for s in snap.select("streamrec_serve_requests_total"):
            mix.setdefault(s.labels.get("warmth", "?"), {})[s.labels.get("route", "?")] = s.value
    requests = sum(sum(v.values()) for v in mix.values())
    expired = snap.total("streamrec_serve_expired_requests_total") if snap else 0.0
    used = snap.total("streamrec_serve_llm_used_requests_total") if snap else 0.0
    flagged = snap.total("streamrec_serve_injection_flagged_requests_total") if snap else 0.0
    calls = (
        snap.total("streamrec_llm_decisions_total", worker=w, decision="called") if snap else 0.0
    )
    hallucinating = (
        snap.total("streamrec_llm_hallucinating_answers_total", worker=w) if snap else 0.0
    )
    decisions = totals(snap, "streamrec_llm_decisions_total", "decision", worker=w)
    fallbacks = totals(snap, "streamrec_llm_fallbacks_total", "reason", worker=w)
    cost = scraper.rate(w, "streamrec_llm_cost_usd_total", worker=w).get("all", [])
    requests_rate = scraper.rate(w, "streamrec_serve_requests_total").get("all", [])
    used_rate = scraper.rate(w, "streamrec_serve_llm_used_requests_total").get("all", [])
    used_at = dict(used_rate)
    involvement = [(t, 100.0 * used_at.get(t, 0.0) / r) for t, r in requests_rate if r > 0]
    breaker = {
        s.labels.get("state"): s.value
        for s in (snap.select("streamrec_llm_breaker_state", worker=w) if snap else [])
    }
    return {
        "charts": charts,
        "mix_chart": bars(mix, title="route mix by warmth bucket (requests so far)"),
        "requests": requests,
        "expired": expired,
        "expired_rate": 100.0 * expired / (requests + expired) if requests + expired else None,
        "llm_used": used,
        "llm_rate": 100.0 * used / requests if requests else None,
        "injection_rate": 100.0 * flagged / requests if requests else None,
        "flagged": flagged,
        "calls": calls,
        "hallucinating": hallucinating,
        "hallucination_rate": 100.0 * hallucinating / calls if calls else None,
        "decisions": sorted(decisions.items(), key=lambda kv: -kv[1]),
        "fallbacks": sorted(fallbacks.items(), key=lambda kv: -kv[1]),
        "cost_chart": line_chart(
            {"USD per minute": [(t, v * 60) for t, v in cost]},
            title="LLM cost per minute (USD)",
            unit="$",
        ),
        "involvement_chart": line_chart(
            {"LLM-touched requests": involvement}, title="LLM involvement rate (%)", unit="%"
        ),
        "breaker": next((k for k, v in breaker.items() if v), None),
        "budget_tokens": snap.total("streamrec_llm_budget_remaining_tokens") if snap else None,
        "recent": list(tail.follow(wait_s=1.0).recent)[:20],
    }


def catalog_page(
    catalog: Catalog | None, search: str | None, item_id: str | None
) -> dict[str, Any]:
    """Counts by status, a list, and one item's raw vs enriched text and neighbours."""
    if catalog is None:
        return {"error": "no database configured (STREAMREC_DATABASE_URL / --database)"}
    try:
        counts = catalog.status_counts()
        item = catalog.item(item_id) if item_id else None
        neighbours = (
            {space: catalog.neighbours(item_id, space) for space in ("raw", "enriched")}
            if item is not None and item_id
            else {}
        )
        return {
            "counts": counts,
            "status_chart": bars(
                {
                    "items": {
                        k: float(v) for k, v in counts.items() if k not in ("total", "eligible")
                    }
                },
                title="items by enrichment status",
            ),
            "items": catalog.items(search),
            "search": search or "",
            "item": item,
            "item_id": item_id,
            "neighbours": neighbours,
        }
    except StreamrecError as exc:
        return {"error": str(exc)}


def dlq_page(kafka: KafkaViews, topic: str | None) -> dict[str, Any]:
    """Dead-letter topics with their counts; the letters of one."""
    sizes = kafka.sizes()
    dlqs = [{"name": t.name, "messages": sizes.get(t.name, 0)} for t in kafka.topics if t.is_dlq]
    letters = kafka.dead_letters(topic) if topic else []
    return {"dlqs": dlqs, "topic": topic, "letters": letters}
