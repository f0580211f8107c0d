"""The producer SDK and the request/response client on the real broker, with tracing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from recsys import records as r
from streams import admin
from streams.client import RecClient
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.exceptions import DeliveryError, RequestTimeout
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.tracing import consume_span, setup_tracing
from tests.helpers import read_topic


def test_typed_helpers_publish_keyed_records(kafka_settings: Settings) -> None:
    admin.ensure_topics(kafka_settings)
    with RecordProducer(kafka_settings) as producer:
        producer.publish_catalog_change(
            r.CatalogChange(item_id="42", version=1, title="Heat (1995)")
        )
        producer.publish_user_event(
            r.UserEvent(user_id="u7", event_type=r.EventType.CLICK, item_id="42")
        )
    topics = producer.topics
    [change] = read_topic(kafka_settings, topics.catalog_changes.name, 1)
    [event] = read_topic(kafka_settings, topics.user_events.name, 1)
    assert change.key() == b"42" and event.key() == b"u7"
    assert producer.serde.decode(change.value(), r.CatalogChange).title == "Heat (1995)"
    assert any(k == "traceparent" for k, _ in change.headers() or [])


def test_requests_and_events_of_a_user_land_on_the_same_partition(kafka_settings: Settings) -> None:
    admin.ensure_topics(kafka_settings)
    with RecordProducer(kafka_settings) as producer:
        for u in range(20):
            producer.publish_user_event(
                r.UserEvent(user_id=f"user-{u}", event_type=r.EventType.VIEW, item_id="i")
            )
            producer.publish_request(r.RecRequest(user_id=f"user-{u}"))
    events = read_topic(kafka_settings, producer.topics.user_events.name, 20)
    requests = read_topic(kafka_settings, producer.topics.rec_requests.name, 20)
    assert {m.key(): m.partition() for m in events} == {m.key(): m.partition() for m in requests}
    assert len({m.partition() for m in events}) > 1


def test_undeliverable_messages_surface_as_errors(kafka_settings: Settings) -> None:
    dead = kafka_settings.with_overrides(bootstrap_servers="127.0.0.1:1")
    producer = RecordProducer(dead, config={"message.timeout.ms": 1500})
    producer.publish_user_event(r.UserEvent(user_id="u", event_type=r.EventType.VIEW, item_id="i"))
    with pytest.raises(DeliveryError, match="not delivered"):
        producer.flush(10)


async def _echo(settings: Settings, stop: asyncio.Event, delay_s: float = 0.0) -> ConsumerLoop:
    """A minimal responder: one empty POPULARITY response per request, trace continued."""
    producer = RecordProducer(settings)
    topics = producer.topics

    async def handler(batch: list[Inbound[Any]]) -> None:
        for msg in batch:
            with consume_span("serve", msg.headers):
                await asyncio.sleep(delay_s)
                req = msg.value
                producer.send(
                    topics.rec_responses,
                    req.user_id,
                    r.RecResponse(
                        request_id=req.request_id,
                        user_id=req.user_id,
                        items=[],
                        route=r.Route.POPULARITY,
                        warmth_bucket=r.WarmthBucket.COLD,
                        propensity=1.0,
                        llm_used=False,
                        latency_ms=0.1,
                    ),
                )

    loop = ConsumerLoop(
        settings,
        worker="echo",
        inputs=[topics.rec_requests],
        handler=handler,
        producer=producer,
        latency_sensitive=True,
    )
    asyncio.get_running_loop().create_task(loop.run(stop))
    return loop


async def test_client_awaits_the_matching_response_and_times_out_otherwise(
    kafka_settings: Settings,
) -> None:
    admin.ensure_topics(kafka_settings)
    stop = asyncio.Event()
    with RecClient(kafka_settings) as client:
        with pytest.raises(RequestTimeout, match="no response to request"):
            await client.arequest("nobody", timeout_s=0.5)
        await _echo(kafka_settings, stop)
        first = await client.arequest("u1", timeout_s=30)  # includes the group join
        assert first.user_id == "u1" and first.route is r.Route.POPULARITY
        started = time.perf_counter()
        answers = await asyncio.gather(*(client.arequest(f"u{i}", timeout_s=10) for i in range(20)))
        assert [a.user_id for a in answers] == [f"u{i}" for i in range(20)]
        assert time.perf_counter() - started < 10
    stop.set()


async def test_one_request_and_its_response_are_one_trace(kafka_settings: Settings) -> None:
    admin.ensure_topics(kafka_settings)
    exporter = InMemorySpanExporter()
    if not hasattr(trace.get_tracer_provider(), "add_span_processor"):
        setup_tracing(kafka_settings, exporter=exporter)
    else:  # provider already installed by an earlier test in this process
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    stop = asyncio.Event()
    with RecClient(kafka_settings) as client:
        await _echo(kafka_settings, stop)
        await client.arequest("traced-user", timeout_s=30)
    stop.set()
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    client_span = by_name["rec.request"]
    serve_span = by_name["serve"]
    assert serve_span.context.trace_id == client_span.context.trace_id
    assert serve_span.parent is not None
    sends = [
        s
        for s in spans
        if s.name.endswith("send") and s.context.trace_id == client_span.context.trace_id
    ]
    assert {s.name for s in sends} >= {"rec.requests send", "rec.responses send"}
