"""Worker `serve` on the real broker and Postgres: requests become responses on the
route each user's state calls for, one rec.llm-log record per LLM decision, one trace
per request → response, bad requests dead-lettered while the worker keeps serving."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from recsys.records import LlmInvolvement, Route, WarmthBucket
from recsys.serving.config import SHIPPED_ROUTES
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from streams.dlq import parse_dlq_headers
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.tracing import setup_tracing
from testkit.poison import poison_messages
from tests.helpers import await_until, read_topic
from tests.integration.serving_support import world
from tests.integration.serving_world import World
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever
from workers.serve_worker import ServeWorker

__all__ = ["world"]

pytestmark = pytest.mark.integration


def _exporter(settings: Any) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        setup_tracing(settings, exporter=exporter)
    else:  # a provider from an earlier test in this process
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_serve_worker_on_the_broker(
    world: World, embedder: Any, broker: EmbeddedBroker
) -> None:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        route_epsilon=0.0,  # the rule's routes, no exploration
    )
    admin.ensure_topics(settings)
    exporter = _exporter(settings)
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("serve", ctx, stop))
    try:
        await await_until(
            lambda: ctx.handles.get(ServeWorker) is not None, 120, what="serve worker start"
        )
        with RecClient(settings) as client:
            warm = await client.arequest(world.user("warm"), timeout_s=60, deadline_ms=5000)
            cold = await client.arequest(
                world.user("new"), query="a funny family comedy", timeout_s=30, deadline_ms=5000
            )
            spec = ctx.topics.rec_requests
            with RecordProducer(settings) as producer:
                poison = poison_messages(spec, producer.serde)
                for payload in poison.values():
                    producer.send_raw(spec, "poison", payload)
            after = await client.arequest(world.user("cold"), timeout_s=30, deadline_ms=5000)
        assert (warm.route, cold.route, after.route) == (
            SHIPPED_ROUTES[WarmthBucket.WARM].route,
            Route.CONTENT,
            SHIPPED_ROUTES[WarmthBucket.COLD].route,
        )
        for response in (warm, cold, after):
            assert len(response.items) == 10
            assert not {i.item_id for i in response.items} & world.deleted
        # one rerank decision per request (and one intent decision for the query)
        logs = read_topic(settings, ctx.topics.llm_log.name, 4)
        records = [AvroSerde().decode(m.value(), LlmInvolvement) for m in logs]
        by_request: dict[str, list[str]] = {}
        for r in records:
            by_request.setdefault(r.request_id, []).append(r.use_case.value)
        assert sorted(by_request[warm.request_id]) == ["RERANK"]
        assert sorted(by_request[cold.request_id]) == ["INTENT", "RERANK"]
        assert all(not r.called and r.fallback_reason == "llm_off" for r in records)
        # bad requests went to the dead-letter topic with their reasons
        assert spec.dlq is not None
        dead = read_topic(settings, spec.dlq.name, len(poison))
        reasons = {parse_dlq_headers(m.headers()).reason for m in dead}
        assert reasons == set(poison)
        # one trace from the client's request through the worker to the response
        spans = exporter.get_finished_spans()
        serve_spans = [s for s in spans if s.name == "rec.requests serve"]
        client_spans = {s.context.trace_id for s in spans if s.name == "rec.request"}
        assert serve_spans and all(s.context.trace_id in client_spans for s in serve_spans)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
