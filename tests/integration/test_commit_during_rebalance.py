"""A commit refused because the group moved on (the member was dropped: its session
expired, or it went past max.poll.interval) is logged and lived with — the batch is
handled again by the partitions' next owner, at least once — instead of stopping the
worker. Before, `Commit failed: Broker: Unknown member` crashed it (seen under load
in the fault suite)."""

from __future__ import annotations

import asyncio
from typing import Any

from recsys import records as r
from streams import admin
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from tests.helpers import await_until


async def test_a_commit_after_the_member_was_dropped_does_not_stop_the_loop(
    kafka_settings: Settings,
) -> None:
    s = kafka_settings
    admin.ensure_topics(s)
    spec = Topics(s).user_events
    with RecordProducer(s) as producer:
        producer.send(
            spec, "u1", r.UserEvent(user_id="u1", event_type=r.EventType.VIEW, item_id="a")
        )
    handled: list[int] = []

    async def slow_once(batch: list[Inbound[Any]]) -> None:
        if not handled:  # the first time: past max.poll.interval, so the member is dropped
            await asyncio.sleep(5)
        handled.extend(m.offset for m in batch)

    loop = ConsumerLoop(
        s,
        worker="slow",
        inputs=[spec],
        handler=slow_once,
        producer=RecordProducer(s),
        consumer_overrides={"max.poll.interval.ms": 2500, "session.timeout.ms": 2000},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await await_until(
            lambda: task.done() or (loop.stats.commit_failures >= 1 and loop.stats.commits >= 1),
            90,
            what="a refused commit, then the batch handled again and committed",
        )
        assert not task.done(), task.exception()
        assert handled.count(0) >= 2  # redelivered after the refused commit: at least once
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
