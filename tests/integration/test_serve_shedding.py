"""Deadline shedding on the real broker and Postgres: requests already past their deadline
get an explicit EXPIRED answer at once (no items, no LLM, no rec.llm-log record), fresh
ones in the same stream get real answers, every offset commits, a malformed request is
still dead-lettered, and the feedback join takes no impression from an expired answer."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from recsys.records import (
    EventType,
    FeedbackExample,
    LlmInvolvement,
    RecRequest,
    RecResponse,
    ResponseStatus,
    UserEvent,
    utcnow,
)
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from streams.dlq import parse_dlq_headers
from streams.exceptions import RequestExpired
from streams.kafka import consumer_config
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from testkit.poison import poison_messages
from tests.helpers import await_until, read_topic
from tests.integration.serving_support import world
from tests.integration.serving_world import World
from workers.bootstrap import Overrides, bootstrap
from workers.feedback_worker import FeedbackWorker
from workers.runtime import serve_forever
from workers.serve_worker import ServeWorker

__all__ = ["world"]

pytestmark = pytest.mark.integration

K = 5
STALE = 6
FRESH = 4


def _committed_everything(settings: Settings, topic: str, group: str) -> bool:
    """Has ``group`` committed every partition of ``topic`` up to its end?"""
    consumer = Consumer(
        consumer_config(settings, group, latency_sensitive=True, logger=logging.getLogger("t"))
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        for tp in tps:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and committed.get(tp.partition, -1) < high:
                return False
        return True
    finally:
        consumer.close()


def _stored_impressions(dsn: str, request_ids: list[str]) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT request_id FROM feedback_impressions WHERE request_id = ANY(%s)",
            (request_ids,),
        ).fetchall()
    return {r[0] for r in rows}


async def test_stale_requests_get_expired_answers_fresh_ones_real_answers(
    world: World, embedder: Any, broker: EmbeddedBroker
) -> None:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        route_epsilon=0.0,
        serve_deadline_grace_ms=100,
        attribution_window_s=5,  # the feedback join closes windows within seconds
        feedback_allowed_lateness_s=0,
        feedback_sweep_s=0.2,
    )
    assert settings.serve_shed_expired  # on by default
    admin.ensure_topics(settings)
    serve_ctx = bootstrap(settings, Overrides(embedder=embedder))
    feedback_ctx = bootstrap(settings)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(serve_forever("serve", serve_ctx, stop)),
        asyncio.create_task(serve_forever("feedback", feedback_ctx, stop)),
    ]
    try:
        await await_until(
            lambda: (h := serve_ctx.handles.get(ServeWorker)) is not None and h.loop.assigned,
            120,
            what="serve worker started with partitions",
        )
        await await_until(
            lambda: (h := feedback_ctx.handles.get(FeedbackWorker)) is not None and h.loop.assigned,
            60,
            what="feedback worker started with partitions",
        )
        serve = serve_ctx.handles.require(ServeWorker)
        feedback = feedback_ctx.handles.require(FeedbackWorker)
        users = [world.user(name) for name in ("warm", "warming", "cold")]
        long_ago = utcnow() - timedelta(seconds=30)
        stale = [
            RecRequest(user_id=users[i % 3], k=K, deadline_ms=1000, requested_at=long_ago)
            for i in range(STALE)
        ]
        fresh = [RecRequest(user_id=users[i % 3], k=K, deadline_ms=30_000) for i in range(FRESH)]
        spec = serve_ctx.topics.rec_requests
        with RecClient(settings) as client:
            # stale and fresh interleaved, and malformed requests among them
            futures = {}
            for i, request in enumerate([*stale, *fresh]):
                futures[request.request_id] = client.submit(request)
                if i == 2:
                    with RecordProducer(settings) as producer:
                        poison = poison_messages(spec, producer.serde)
                        for payload in poison.values():
                            producer.send_raw(spec, "poison", payload)
            answers: dict[str, RecResponse] = {}
            # (waited for in a thread: the workers run on this event loop)
            for request in fresh:
                answers[request.request_id] = await asyncio.to_thread(
                    client.wait, request, futures[request.request_id], 60
                )
            for request in stale:
                with pytest.raises(RequestExpired, match="was not served") as caught:
                    await asyncio.to_thread(client.wait, request, futures[request.request_id], 30)
                answers[request.request_id] = caught.value.response
        # what the user did next (within the attribution window): a click on a fresh
        # answer's item, and the same click attributed to a shed request
        shown = answers[fresh[0].request_id]
        clicked_at = shown.produced_at + timedelta(milliseconds=200)
        with RecordProducer(settings) as producer:
            for rid in (shown.request_id, stale[0].request_id):
                producer.publish_user_event(
                    UserEvent(
                        user_id=shown.user_id,
                        event_type=EventType.CLICK,
                        item_id=shown.items[0].item_id,
                        rec_request_id=rid,
                        occurred_at=clicked_at,
                    )
                )

        for request in stale:
            response = answers[request.request_id]
            assert response.status is ResponseStatus.EXPIRED and response.expired
            assert response.items == [] and not response.llm_used
            assert response.propensity == 0.0
            assert response.short_reason is not None and "nothing was computed" in (
                response.short_reason
            )
            # shed at once: no user state read, no retrieval, no ranking
            assert response.latency_ms < 50.0, response.latency_ms
        for request in fresh:
            response = answers[request.request_id]
            assert response.status is ResponseStatus.OK and not response.expired
            assert len(response.items) == K
        assert serve.shedder is not None and serve.shedder.stats.expired == STALE
        assert serve.shedder.stats.late_s_max >= 29.0

        # rec.llm-log: the fresh requests' LLM decisions, nothing for a shed request
        logs = read_topic(settings, serve_ctx.topics.llm_log.name, FRESH)
        logged = {AvroSerde().decode(m.value(), LlmInvolvement).request_id for m in logs}
        assert logged == {r.request_id for r in fresh}

        # the malformed requests were dead-lettered, as before
        assert spec.dlq is not None
        dead = read_topic(settings, spec.dlq.name, len(poison))
        assert {parse_dlq_headers(m.headers()).reason for m in dead} == set(poison)

        # every offset commits, the shed requests' too: they were answered
        await await_until(
            lambda: _committed_everything(settings, spec.name, serve.loop.group_id),
            30,
            what="serve committed every request",
        )

        joiner = feedback.joiner
        await await_until(
            lambda: joiner.expired >= STALE and joiner.emitted >= FRESH * K,
            60,
            what="feedback joined the fresh answers and skipped the expired ones",
        )
        examples = [
            AvroSerde().decode(m.value(), FeedbackExample)
            for m in read_topic(settings, feedback_ctx.topics.feedback_examples.name, FRESH * K)
        ]
        assert {e.request_id for e in examples} == {r.request_id for r in fresh}
        assert len({e.example_id for e in examples}) == FRESH * K
        clicked = [e for e in examples if e.clicked]
        assert [(e.request_id, e.item_id) for e in clicked] == [
            (shown.request_id, shown.items[0].item_id)
        ]
        dsn = settings.database_url.get_secret_value() if settings.database_url else ""
        ids = [r.request_id for r in [*stale, *fresh]]
        assert _stored_impressions(dsn, ids) == {r.request_id for r in fresh}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
