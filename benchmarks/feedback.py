"""Feedback join throughput beside its yardstick, measured in the same run.

Scripted impressions (10 items each) and their users' events are read by the consumer
loop with a no-op handler (decode + validate + commit: the floor of any worker here),
then by the feedback worker (store in Postgres, close windows by event time, join,
emit). Closing impressions and events at the end move every partition's event time past
every window, so every impression is joined.

    python -m benchmarks feedback [--impressions 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.archive import timed
from benchmarks.common import embedded_stack, emit
from recsys import db
from recsys.records import (
    EventType,
    RecommendedItem,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)
from streams import admin
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from workers.bootstrap import Overrides, bootstrap
from workers.feedback_worker import FeedbackWorker
from workers.runtime import serve_forever

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW_S = 300


def workload(n: int, users: int) -> tuple[list[RecResponse], list[UserEvent]]:
    rng = random.Random(5)
    responses, events = [], []
    for i in range(n):
        user = f"user-{i % users:05d}"
        at = T0 + timedelta(seconds=i)
        items = [f"item-{j:05d}" for j in rng.sample(range(3000), k=10)]  # distinct
        responses.append(
            RecResponse(
                request_id=f"req-{i:07d}",
                user_id=user,
                route=Route.CF,
                warmth_bucket=WarmthBucket.WARM,
                propensity=1.0,
                llm_used=False,
                latency_ms=9.0,
                produced_at=at,
                items=[
                    RecommendedItem(item_id=it, rank=r, score=1.0, source="cf")
                    for r, it in enumerate(items, 1)
                ],
            )
        )
        for kind in rng.sample([EventType.VIEW, EventType.CLICK, EventType.CART], k=3):
            events.append(
                UserEvent(
                    user_id=user,
                    event_type=kind,
                    item_id=rng.choice(items),
                    occurred_at=at + timedelta(seconds=rng.randrange(1, 200)),
                )
            )
        events.append(
            UserEvent(
                user_id=user,
                event_type=EventType.VIEW,  # noise
                item_id=f"item-{rng.randrange(3000):05d}",
                occurred_at=at,
            )
        )
    end = T0 + timedelta(seconds=n + 10 * WINDOW_S)
    for u in range(users):  # move every partition's event time past every window
        user = f"user-{u:05d}"
        responses.append(
            RecResponse(
                request_id=f"closer-{u}",
                user_id=user,
                items=[],
                route=Route.CF,
                warmth_bucket=WarmthBucket.WARM,
                propensity=1.0,
                llm_used=False,
                latency_ms=1.0,
                produced_at=end,
            )
        )
        events.append(
            UserEvent(user_id=user, event_type=EventType.VIEW, item_id="x", occurred_at=end)
        )
    return responses, events


async def loop_noop(settings: Settings, n: int) -> float:
    topics = Topics(settings)

    async def handler(batch: list[Inbound[Any]]) -> None:
        return None

    loop = ConsumerLoop(
        settings,
        worker=f"noop-{uuid.uuid4().hex[:6]}",
        inputs=[topics.rec_responses, topics.user_events],
        handler=handler,
        producer=RecordProducer(settings),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    elapsed = await timed(n, lambda: loop, task, lambda: loop.stats.consumed >= n)
    stop.set()
    await task
    return n / elapsed


async def feedback_worker(
    settings: Settings, n_inputs: int, n_examples: int
) -> tuple[float, float]:
    ctx = bootstrap(settings, Overrides(group_id=f"feedback-bench-{uuid.uuid4().hex[:6]}"))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("feedback", ctx, stop))

    def loop_of() -> ConsumerLoop | None:
        handle = ctx.handles.get(FeedbackWorker)
        return handle.loop if handle else None

    def done() -> bool:
        handle = ctx.handles.get(FeedbackWorker)
        return handle is not None and handle.joiner.emitted >= n_examples

    elapsed = await timed(n_examples, loop_of, task, done)
    stop.set()
    await task
    return n_inputs / elapsed, n_examples / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, default=2000)
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    responses, events = workload(args.impressions, args.users)
    n_inputs = len(responses) + len(events)
    n_examples = args.impressions * 10
    with embedded_stack(
        with_postgres=True,
        attribution_window_s=WINDOW_S,
        feedback_allowed_lateness_s=0,
        feedback_sweep_s=0.5,
        user_partitions=4,
    ) as settings:
        assert settings.database_url is not None
        db.apply_migrations(settings.database_url.get_secret_value())
        admin.ensure_topics(settings)
        topics = Topics(settings)
        with RecordProducer(settings, config={"linger.ms": 20}) as producer:
            for r in responses:
                producer.send(topics.rec_responses, r.user_id, r)
            for e in events:
                producer.publish_user_event(e)
        decoded = asyncio.run(loop_noop(settings, n_inputs))
        inputs_rate, examples_rate = asyncio.run(feedback_worker(settings, n_inputs, n_examples))
    emit(
        {
            "benchmark": "feedback",
            "impressions": args.impressions,
            "inputs": n_inputs,
            "examples": n_examples,
            "loop_decode_msgs_per_s": round(decoded),
            "feedback_inputs_per_s": round(inputs_rate),
            "feedback_examples_per_s": round(examples_rate),
            "feedback_vs_loop_decode": round(inputs_rate / decoded, 3),
        }
    )


if __name__ == "__main__":
    main()
