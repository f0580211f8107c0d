"""The demo's serving section: train CF on what the users worker stored, send the
workload's requests at a steady rate, click on some answers (so feedback has outcomes
to join), and print routes, latencies and LLM involvement."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from demo.enrich_report import read_all
from jobs.train_cf import TrainCfOptions, run_train_cf
from recsys.records import LlmInvolvement, RecRequest, RecResponse, utcnow
from recsys.synthetic import SyntheticWorkload
from streams.client import RecClient
from streams.exceptions import RequestTimeout
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["serve_demo"]

log = logging.getLogger(__name__)


def _train(console: Console, settings: Settings) -> None:
    assert settings.database_url is not None
    try:
        result = asyncio.run(
            run_train_cf(settings, TrainCfOptions(), settings.database_url.get_secret_value())
        )
    except Exception as exc:  # the demo goes on without a CF model (CF falls back)
        console.print(f"[yellow]train-cf failed: {exc} — CF falls back to co-visitation[/]")
        return
    console.print(
        f"train-cf: ALS {result.version} on {result.n_events} events "
        f"({result.n_users} users x {result.n_items} items), active={result.active}"
    )


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.1f}" if values else "-"


def _arrival(finished: dict[str, float], request_id: str) -> Callable[[Any], None]:
    """A future callback noting when the response arrived (not when it was looked at)."""

    def note(_: Any) -> None:
        finished.setdefault(request_id, time.monotonic())

    return note


def serve_demo(
    console: Console,
    settings: Settings,
    topics: Topics,
    workload: SyntheticWorkload,
    n_requests: int,
    rate_per_s: float = 20.0,
) -> list[RecResponse]:
    """Drive the serve worker, then publish what the users did next; print what happened."""
    _train(console, settings)
    requests = workload.requests(n_requests)
    sent: list[tuple[RecRequest, Future[RecResponse], float]] = []
    finished: dict[str, float] = {}  # request id → when its response arrived
    answered: list[tuple[RecRequest, RecResponse, float]] = []
    timeouts = 0
    with RecClient.from_settings(settings) as client, RecordProducer(settings) as producer:
        started = time.monotonic()
        for i, request in enumerate(requests):
            time.sleep(max(0.0, started + i / rate_per_s - time.monotonic()))
            # a run's own request ids: the demo's Postgres outlives runs (a second `up`
            # reuses it) and the feedback join keeps closed impressions by request id
            request = request.model_copy(
                update={
                    "request_id": f"{settings.topic_prefix}{request.request_id}",
                    "requested_at": utcnow(),
                }
            )
            future = client.submit(request)
            future.add_done_callback(_arrival(finished, request.request_id))
            sent.append((request, future, time.monotonic()))
        for request, future, at in sent:
            try:
                response = client.wait(request, future, timeout_s=15.0)
            except RequestTimeout:
                timeouts += 1
                continue
            answered.append((request, response, (finished[request.request_id] - at) * 1000.0))
        # what the users did next, independent of what they were shown (the synthetic
        # ground truth), within the demo's attribution window: feedback joins it
        answered_requests = [request for request, _, _ in answered]
        window = timedelta(seconds=max(6, settings.attribution_window_s - 2))
        outcomes = workload.outcomes(answered_requests, within=window)
        for event in outcomes:
            producer.publish_user_event(event)
        clicks = len(outcomes)
        producer.flush()
    _report(console, settings, topics, answered, timeouts, clicks)
    return [r for _, r, _ in answered]


def _report(
    console: Console,
    settings: Settings,
    topics: Topics,
    answered: list[tuple[RecRequest, RecResponse, float]],
    timeouts: int,
    clicks: int,
) -> None:
    by_route: dict[str, list[tuple[RecRequest, RecResponse, float]]] = defaultdict(list)
    for row in answered:
        by_route[row[1].route.value].append(row)
    table = Table(
        title=f"serving: {len(answered)} answered, {timeouts} timed out; "
        f"then {clicks} outcome events (what the users did next)"
    )
    for col in (
        "route",
        "requests",
        "warmth buckets",
        "with query",
        "LLM used",
        "explored",
        "server p50/p99 ms",
        "round trip p50/p99 ms",
    ):
        table.add_column(col, justify="left" if col in ("route", "warmth buckets") else "right")
    for route, rows in sorted(by_route.items()):
        buckets = Counter(r.warmth_bucket.value.lower() for _, r, _ in rows)
        server = [r.latency_ms for _, r, _ in rows]
        trip = [t for _, _, t in rows]
        table.add_row(
            route,
            str(len(rows)),
            ", ".join(f"{b} {n}" for b, n in sorted(buckets.items())),
            str(sum(1 for q, _, _ in rows if q.query)),
            str(sum(1 for _, r, _ in rows if r.llm_used)),
            str(sum(1 for _, r, _ in rows if r.propensity < 0.5)),
            f"{_pct(server, 50)} / {_pct(server, 99)}",
            f"{_pct(trip, 50)} / {_pct(trip, 99)}",
        )
    console.print(table)
    records = [
        r
        for r in read_all(settings, topics.llm_log.name, LlmInvolvement)
        if r.use_case.value != "ENRICH"
    ]
    if records:
        llm = Table(title="rec.llm-log from serving (one record per LLM decision)")
        for col in ("use", "decision", "records", "tokens in/out", "injection flagged"):
            llm.add_column(col, justify="left" if col in ("use", "decision") else "right")
        groups: dict[tuple[str, str], list[LlmInvolvement]] = defaultdict(list)
        for r in records:
            groups[(r.use_case.value.lower(), r.decision)].append(r)
        for (use, decision), group in sorted(groups.items()):
            llm.add_row(
                use,
                decision,
                str(len(group)),
                f"{sum(r.tokens_in for r in group)}/{sum(r.tokens_out for r in group)}",
                str(sum(1 for r in group if r.injection_flagged)),
            )
        console.print(llm)
