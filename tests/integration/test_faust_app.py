"""Faust on the embedded broker: the tuned app factory and dead letters from agents."""

from __future__ import annotations

from typing import Any

from recsys import records as r
from streams import admin
from streams.dlq import parse_dlq_headers
from streams.faust_app import FaustDecoder, create_faust_app
from streams.poison import poison_messages
from streams.producer import RecordProducer
from streams.settings import Settings
from tests.helpers import await_until, read_topic


async def test_faust_agent_dead_letters_bad_events_and_keeps_going(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    admin.ensure_topics(settings)
    producer = RecordProducer(settings)
    spec = producer.topics.user_events
    assert spec.dlq is not None
    poison = poison_messages(spec, producer.serde)
    producer.publish_user_event(r.UserEvent(user_id="u1", event_type=r.EventType.VIEW, item_id="a"))
    for payload in poison.values():
        producer.send_raw(spec, "u1", payload)
    producer.publish_user_event(r.UserEvent(user_id="u1", event_type=r.EventType.VIEW, item_id="b"))
    producer.flush()

    app = create_faust_app(settings, "faust-dlq-test", fetch_wait_ms=10)
    decoder = FaustDecoder(RecordProducer(settings), "faust-dlq-test")
    topic = app.topic(
        spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    seen: list[Any] = []

    @app.agent(topic)
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            record = decoder.decode(spec, event)
            if record is not None:
                seen.append(record)

    await app.start()
    try:
        await await_until(lambda: len(seen) == 2, 60, what="two good events through the agent")
    finally:
        await app.stop()
    assert [e.item_id for e in seen] == ["a", "b"]
    dead = read_topic(settings, spec.dlq.name, 4)
    assert sorted(parse_dlq_headers(m.headers()).reason for m in dead) == sorted(poison)
    assert app.fetch_wait_ms == 10
