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
from demo.progress import StepsFactory, no_steps
from jobs.train_cf import TrainCfOptions, run_train_cf
from recsys.records import LlmInvolvement, RecRequest, RecResponse, WarmthBucket, utcnow
from recsys.synthetic import SyntheticWorkload
from streams.client import RecClient
from streams.exceptions import RequestExpired, RequestTimeout
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.llm_server import SimulatedLlmServer

__all__ = ["serve_demo"]

log = logging.getLogger(__name__)


def _train(console: Console, settings: Settings, steps: StepsFactory) -> None:
    """train-cf on what the users worker stored: a progress bar, then one line."""
    assert settings.database_url is not None
    try:
        with steps("train-cf") as progress:
            result = asyncio.run(
                run_train_cf(
                    settings, TrainCfOptions(), settings.database_url.get_secret_value(), progress
                )
            )
    except Exception as exc:  # the demo goes on without a CF model (CF falls back)
        console.print(f"[yellow]train-cf failed: {exc} — CF falls back to co-visitation[/]")
        return
    loss = f"{result.loss:.4f}" if result.loss is not None else "-"
    console.print(
        f"train-cf: ALS {result.version} on {result.n_events} events "
        f"({result.n_users} users x {result.n_items} items), training loss {loss}, "
        f"{sum(result.seconds.values()):.1f}s, active={result.active}",
        highlight=False,
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
    *,
    steps: StepsFactory = no_steps,
    llm_server: SimulatedLlmServer | None = None,
    rate_per_s: float = 20.0,
    deadline_ms: int | None = None,
) -> list[tuple[RecRequest, RecResponse]]:
    """Drive the serve worker, then publish what the users did next; print what happened.

    ``deadline_ms`` overrides the workload's request deadlines (a real local model needs
    seconds per rerank). Returns every request with its response (for the demo's closing
    showcase).
    """
    _train(console, settings, steps)
    requests = workload.requests(n_requests)
    wait_s = 15.0
    if deadline_ms is not None:
        requests = [r.model_copy(update={"deadline_ms": deadline_ms}) for r in requests]
        wait_s = max(wait_s, deadline_ms / 1000 + 5)
    sent: list[tuple[RecRequest, Future[RecResponse], float]] = []
    finished: dict[str, float] = {}  # request id → when its response arrived
    answered: list[tuple[RecRequest, RecResponse, float]] = []
    timeouts = expired = 0
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
                response = client.wait(request, future, timeout_s=wait_s)
            except RequestExpired:  # shed by serve: its deadline passed before serving
                expired += 1
                continue
            except RequestTimeout:
                timeouts += 1
                continue
            answered.append((request, response, (finished[request.request_id] - at) * 1000.0))
        # what the users did next, independent of what they were shown (the synthetic
        # ground truth), within the demo's attribution window after they saw the answer
        # (not after they asked: on a busy machine an answer can take seconds, and the
        # feedback join counts only events after the impression)
        answered_requests = [
            request.model_copy(update={"requested_at": response.produced_at})
            for request, response, _ in answered
        ]
        window = timedelta(seconds=max(6, settings.attribution_window_s - 2))
        outcomes = workload.outcomes(answered_requests, within=window)
        for event in outcomes:
            producer.publish_user_event(event)
        clicks = len(outcomes)
        producer.flush()
        extra = _showcase_requests(
            client, settings, workload, answered, llm_server, deadline_ms=deadline_ms
        )
    _report(console, settings, topics, answered, timeouts, clicks, expired)
    return [(q, r) for q, r, _ in answered] + extra


def _showcase_requests(
    client: RecClient,
    settings: Settings,
    workload: SyntheticWorkload,
    answered: list[tuple[RecRequest, RecResponse, float]],
    llm_server: SimulatedLlmServer | None,
    *,
    deadline_ms: int | None = None,
) -> list[tuple[RecRequest, RecResponse]]:
    """A request for each kind of response the closing showcase wants and the workload
    did not produce (a warm user, a cold user with a query, an LLM rerank, an LLM
    fallback), with a generous deadline. With the simulated LLM the fallback is provoked:
    for that one request the model answers with ids that are not candidates, and the
    serve worker serves the ranker's order instead."""
    responses = [r for _, r, _ in answered]
    warmest = max(workload.users, key=lambda u: u.activity, default=None)
    wanted: list[tuple[str, str | None, str | None]] = []  # (kind, user, query)
    if warmest is not None and not any(
        r.warmth_bucket is WarmthBucket.WARM and not q.query for q, r, _ in answered
    ):
        wanted.append(("warm", warmest.user_id, None))
    if not any(r.warmth_bucket is WarmthBucket.COLD and q.query for q, r, _ in answered):
        wanted.append(("cold", None, "a tense thriller with a heist"))
    if llm_server is not None:
        if warmest is not None and not any(
            i.ranker_rank is not None for r in responses for i in r.items
        ):
            wanted.append(("rerank", warmest.user_id, workload.query_for(warmest)))
        if not any(r.llm_fallback_reason for r in responses):
            wanted.append(("fallback", None, "something for a rainy evening"))
    out = []
    for kind, user, query in wanted:
        request = RecRequest(
            request_id=f"{settings.topic_prefix}showcase-{kind}",
            user_id=user or f"{settings.topic_prefix}showcase-{kind}-user",
            query=query,
            deadline_ms=max(5000, deadline_ms or 0),
        )
        if kind == "fallback" and llm_server is not None:
            llm_server.set_behaviour(mode="hallucinate")
        try:
            wait_s = max(20.0, (deadline_ms or 0) / 1000 + 5)
            out.append((request, client.wait(request, client.submit(request), timeout_s=wait_s)))
        except RequestTimeout:
            log.warning("showcase request %s timed out", request.request_id)
        finally:
            if kind == "fallback" and llm_server is not None:
                llm_server.set_behaviour(mode="honest")
    return out


def _report(
    console: Console,
    settings: Settings,
    topics: Topics,
    answered: list[tuple[RecRequest, RecResponse, float]],
    timeouts: int,
    clicks: int,
    expired: int = 0,
) -> None:
    """Print routes, latencies and LLM decisions."""
    by_route: dict[str, list[tuple[RecRequest, RecResponse, float]]] = defaultdict(list)
    for row in answered:
        by_route[row[1].route.value].append(row)
    table = Table(
        title=f"serving: {len(answered)} answered, {expired} expired (shed), "
        f"{timeouts} timed out; "
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
