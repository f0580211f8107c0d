"""Bad input on every input topic goes to its DLQ with the reason; the worker keeps
running, handles the good messages around it, and commits past everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from recsys import records as r
from streams import admin
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.dlq import parse_dlq_headers
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages
from tests.helpers import await_until, committed_offsets, read_topic

GOOD: dict[str, Any] = {
    "catalog.changes": lambda i: r.CatalogChange(item_id=f"i{i}", version=1, title=f"Item {i}"),
    "catalog.enriched": lambda i: r.ItemEnriched(
        item_id=f"i{i}", version=1, change_id="c", content_hash="h"
    ),
    "user.events": lambda i: r.UserEvent(
        user_id="u1", event_type=r.EventType.VIEW, item_id=f"i{i}"
    ),
    "rec.requests": lambda i: r.RecRequest(user_id="u1"),
    "rec.responses": lambda i: r.RecResponse(
        request_id=f"q{i}",
        user_id="u1",
        items=[],
        route=r.Route.POPULARITY,
        warmth_bucket=r.WarmthBucket.COLD,
        propensity=1.0,
        llm_used=False,
        latency_ms=1.0,
    ),
    "rec.llm-log": lambda i: r.LlmInvolvement(
        request_id=f"q{i}",
        use_case=r.LlmUseCase.RERANK,
        called=False,
        used=False,
        decision="no_endpoint",
    ),
    "feedback.examples": lambda i: r.FeedbackExample(
        example_id=f"e{i}",
        request_id="q",
        user_id="u1",
        item_id="i",
        rank=1,
        route="CF",
        warmth_bucket="WARM",
        llm_used=False,
        propensity=1.0,
        impression_at=r.utcnow(),
    ),
}


@pytest.mark.parametrize("base", list(GOOD))
async def test_poison_goes_to_the_dlq_and_the_loop_commits_past_it(
    kafka_settings: Settings, base: str
) -> None:
    settings = kafka_settings
    topics = Topics(settings)
    admin.ensure_topics(settings)
    spec = next(t for t in topics.data_topics() if t.base == base)
    assert spec.dlq is not None
    producer = RecordProducer(settings)
    poison = poison_messages(spec, producer.serde)
    # good, 4 bad, good — all on one key so they share a partition and an order
    producer.send(spec, "k", GOOD[base](1))
    for payload in poison.values():
        producer.send_raw(spec, "k", payload, [("origin", b"test")])
    producer.send(spec, "k", GOOD[base](2))
    producer.flush()

    handled: list[Inbound[Any]] = []

    async def handler(batch: list[Inbound[Any]]) -> None:
        handled.extend(batch)

    loop = ConsumerLoop(
        settings,
        worker=f"dlq-test-{base}",
        inputs=[spec],
        handler=handler,
        producer=RecordProducer(settings),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await await_until(
        lambda: len(handled) == 2 and loop.stats.commits > 0 and loop.stats.dead_lettered == 4,
        40,
        what="both good messages and 4 dead letters",
    )
    stop.set()
    await asyncio.wait_for(task, 20)

    assert [h.offset for h in handled] == [0, 5]
    assert all(isinstance(h.value, spec.value) for h in handled)  # type: ignore[arg-type]
    dead = read_topic(settings, spec.dlq.name, 4)
    assert len(dead) == 4
    letters = [parse_dlq_headers(m.headers()) for m in dead]
    assert sorted(d.reason for d in letters) == sorted(poison)
    for msg, letter in zip(dead, letters, strict=True):
        assert letter.topic == spec.name and letter.worker == f"dlq-test-{base}"
        assert letter.error
        assert msg.key() == b"k"
        assert msg.value() == poison[letter.reason]  # original bytes, untouched
        assert ("origin", b"test") in msg.headers()  # original headers kept
    offsets = sorted(letter.offset for letter in letters)
    assert offsets == [1, 2, 3, 4]  # between the two good messages
    partition = letters[0].partition
    assert committed_offsets(settings, loop.group_id, spec.name)[partition] == 6
