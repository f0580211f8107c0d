"""The pipelined loop on the real broker: a slow request holds neither the others nor
more than its own offset; a crash leaves its request uncommitted for the next run; bad
input is dead-lettered and committed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from recsys import records as r
from streams import admin
from streams.consumer_loop import Inbound
from streams.pipelined_loop import PipelinedLoop
from streams.producer import RecordProducer
from streams.settings import Settings
from testkit.poison import poison_messages
from tests.conftest import make_settings
from tests.helpers import await_until, committed_offsets, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def one_partition(tmp_path: Any, broker: Any) -> Settings:
    settings = make_settings(tmp_path, bootstrap_servers=broker.bootstrap, user_partitions=1)
    admin.ensure_topics(settings)
    return settings


def _responder(
    producer: RecordProducer, before: Callable[[r.RecRequest], Awaitable[None]]
) -> Callable[[list[Inbound[Any]]], Awaitable[None]]:
    async def handler(batch: list[Inbound[Any]]) -> None:
        for msg in batch:
            req = msg.value
            await before(req)
            producer.send(
                producer.topics.rec_responses,
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

    return handler


def _loop(settings: Settings, producer: RecordProducer, handler: Any) -> PipelinedLoop:
    return PipelinedLoop(
        settings,
        worker="pipelined-test",
        inputs=[producer.topics.rec_requests],
        handler=handler,
        producer=producer,
        max_in_flight=8,
        commit_interval_s=0.05,
    )


def _publish(settings: Settings, ids: list[str]) -> None:
    with RecordProducer(settings) as producer:
        for rid in ids:
            producer.publish_request(r.RecRequest(request_id=rid, user_id=f"user-{rid}"))


async def test_a_slow_request_holds_only_its_own_offset(one_partition: Settings) -> None:
    settings = one_partition
    release = asyncio.Event()

    async def before(req: r.RecRequest) -> None:
        if req.request_id == "slow":
            await release.wait()

    producer = RecordProducer(settings)
    loop = _loop(settings, producer, _responder(producer, before))
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    topic = producer.topics.rec_requests.name
    group = loop.group_id
    try:
        _publish(settings, ["first", "slow", *[f"fast-{i}" for i in range(20)]])
        # the 20 requests behind the slow one are answered while it is still pending
        answered = await asyncio.to_thread(
            read_topic, settings, producer.topics.rec_responses.name, 21, 60
        )
        ids = {producer.serde.decode(m.value(), r.RecResponse).request_id for m in answered}
        assert "slow" not in ids and len(ids) == 21
        # ... but the commit stops at the slow request's offset (1): nothing after it
        await await_until(lambda: loop.stats.commits > 0, 30, what="a commit")
        assert loop.tracker.committable() == {(topic, 0): 1}
        assert committed_offsets(settings, group, topic) == {0: 1}
        release.set()
        await await_until(
            lambda: committed_offsets(settings, group, topic) == {0: 22}, 30, what="commit to end"
        )
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 30)
        producer.close()


async def test_a_crash_leaves_the_failed_request_for_the_next_run(one_partition: Settings) -> None:
    settings = one_partition
    seen: list[str] = []

    async def crash_on_bad(req: r.RecRequest) -> None:
        seen.append(req.request_id)
        if req.request_id == "bad":
            raise RuntimeError("a bug in the handler")

    producer = RecordProducer(settings)
    loop = _loop(settings, producer, _responder(producer, crash_on_bad))
    _publish(settings, ["a", "b", "bad", "c"])
    with pytest.raises(RuntimeError, match="a bug"):
        await asyncio.wait_for(loop.run(asyncio.Event()), 60)
    topic = producer.topics.rec_requests.name
    assert committed_offsets(settings, loop.group_id, topic)[0] <= 2  # never past "bad"

    async def fine(req: r.RecRequest) -> None:
        seen.append(req.request_id)

    again = _loop(settings, producer, _responder(producer, fine))
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    try:
        await await_until(lambda: seen.count("bad") == 2, 60, what="the failed request again")
        await await_until(
            lambda: committed_offsets(settings, again.group_id, topic) == {0: 4}, 30, what="commit"
        )
        responses = await asyncio.to_thread(
            read_topic, settings, producer.topics.rec_responses.name, 4
        )
        ids = [producer.serde.decode(m.value(), r.RecResponse).request_id for m in responses]
        assert "bad" in ids  # answered by the second run
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        producer.close()


async def test_bad_input_is_dead_lettered_and_committed(one_partition: Settings) -> None:
    settings = one_partition

    async def nothing(req: r.RecRequest) -> None:
        return None

    producer = RecordProducer(settings)
    spec = producer.topics.rec_requests
    poison = poison_messages(spec, producer.serde)
    for payload in poison.values():
        producer.send_raw(spec, "poison", payload)
    producer.flush()
    _publish(settings, ["good"])
    loop = _loop(settings, producer, _responder(producer, nothing))
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    end = len(poison) + 1
    try:
        await await_until(
            lambda: committed_offsets(settings, loop.group_id, spec.name) == {0: end},
            60,
            what="everything committed",
        )
        assert spec.dlq is not None
        dead = await asyncio.to_thread(read_topic, settings, spec.dlq.name, len(poison))
        assert len(dead) == len(poison)
        assert loop.stats.dead_lettered == len(poison) and loop.stats.handled == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        producer.close()
