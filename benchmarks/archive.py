"""Archive worker throughput beside its yardsticks, measured in the same run.

A fresh topic of realistic rec.responses (10 items each) is read by: raw confluent-kafka
(no decoding), the consumer loop with a no-op handler (decode + validate + commit), and
the archive worker (decode, append to rolling Avro files, fsync, rename, commit). The
writer alone (no Kafka) is timed on the same records too.

    python -m benchmarks archive [--messages 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import embedded_stack, emit
from recsys.archive import ArchiveWriter, list_files
from recsys.records import RecommendedItem, RecResponse, Route, WarmthBucket
from streams import admin
from streams.consumer_loop import ConsumerLoop, Inbound
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from streams.wire import archived_from_raw
from workers.archive_worker import ArchiveWorker
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever


def responses(n: int) -> list[RecResponse]:
    out = []
    for i in range(n):
        items = [
            RecommendedItem(
                item_id=f"item-{(i * 13 + j) % 5000:05d}",
                rank=j + 1,
                score=1.0 / (j + 1),
                source="cf",
                explanation="Because you watched Heat (1995).",
            )
            for j in range(10)
        ]
        out.append(
            RecResponse(
                request_id=f"req-{i:08d}",
                user_id=f"user-{i % 997:05d}",
                items=items,
                route=Route.CF,
                warmth_bucket=WarmthBucket.WARM,
                propensity=1.0,
                llm_used=i % 4 == 0,
                latency_ms=12.0,
                model_version="als-1",
            )
        )
    return out


def raw_consume(settings: Settings, topic: str, n: int, partitions: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.batch_fetch_wait_ms,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, start = 0, time.perf_counter()
    while got < n and time.perf_counter() - start < 120:
        got += sum(1 for m in consumer.consume(10000, 0.5) if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    return got / elapsed


async def timed(
    n: int,
    loop_of: Callable[[], ConsumerLoop | None],
    task: asyncio.Task[None],
    done: Any,
    timeout_s: float = 600,
) -> float:
    """Seconds from the first consumed message until ``done()`` (group join excluded)."""
    start: float | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {timeout_s:.0f}s")
        if task.done():
            task.result()  # a crashed worker raises here
        loop = loop_of()
        if start is None and loop is not None and loop.stats.consumed:
            start = time.perf_counter()
        if start is not None and done():
            return time.perf_counter() - start
        await asyncio.sleep(0.005)


async def loop_noop(settings: Settings, n: int) -> float:
    topics = Topics(settings)
    producer = RecordProducer(settings)

    async def handler(batch: list[Inbound[Any]]) -> None:
        return None

    loop = ConsumerLoop(
        settings,
        worker=f"noop-{uuid.uuid4().hex[:6]}",
        inputs=[topics.rec_responses],
        handler=handler,
        producer=producer,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    elapsed = await timed(n, lambda: loop, task, lambda: loop.stats.consumed >= n)
    stop.set()
    await task
    return n / elapsed


async def archive_worker(settings: Settings, n: int) -> tuple[float, int]:
    ctx = bootstrap(settings, Overrides(group_id=f"archive-bench-{uuid.uuid4().hex[:6]}"))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("archive", ctx, stop))
    topic = ctx.topics.rec_responses.name

    def loop_of() -> ConsumerLoop | None:
        handle = ctx.handles.get(ArchiveWorker)
        return handle.loop if handle else None

    def committed() -> bool:
        loop = loop_of()
        return (
            loop is not None
            and sum(off for (t, _), off in loop.stats.last_commit.items() if t == topic) >= n
        )

    elapsed = await timed(n, loop_of, task, committed)
    stop.set()
    await task
    return n / elapsed, len(list_files(settings.archive_root, topic))


def writer_only(settings: Settings, records: list[RecResponse]) -> tuple[float, float]:
    producer = RecordProducer(settings)
    spec = producer.topics.rec_responses
    encoded = [producer.serde.encode(r, spec.subject) for r in records]
    root = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    writer = ArchiveWriter(root, roll_bytes=settings.archive_roll_bytes, roll_s=1e9)
    writer.register(spec.name, producer.serde.codec(RecResponse).schema)
    start = time.perf_counter()
    for i, value in enumerate(encoded):
        writer.write(
            archived_from_raw(
                topic=spec.name,
                partition=0,
                offset=i,
                timestamp_ms=1_780_000_000_000,
                key=b"u",
                headers=[],
                value=value,
                spec=spec,
                serde=producer.serde,
            )
        )
    writer.close()
    elapsed = time.perf_counter() - start
    size = sum(f.path.stat().st_size for f in list_files(root, spec.name))
    return len(records) / elapsed, size / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=30_000)
    args = parser.parse_args()
    n = args.messages
    records = responses(n)
    with embedded_stack(
        archive_roll_bytes=4 * 1024 * 1024,
        archive_roll_s=1.0,
        archive_requests=False,
        user_partitions=4,
        batch_fetch_wait_ms=100,
    ) as settings:
        admin.ensure_topics(settings)
        topics = Topics(settings)
        with RecordProducer(settings, config={"linger.ms": 20}) as producer:
            for r in records:
                producer.send(topics.rec_responses, r.user_id, r)
        value_bytes = len(producer.serde.encode(records[0], topics.rec_responses.subject))
        raw = raw_consume(settings, topics.rec_responses.name, n, settings.user_partitions)
        decoded = asyncio.run(loop_noop(settings, n))
        archived, files = asyncio.run(archive_worker(settings, n))
        writer_rate, bytes_per_record = writer_only(settings, records[: min(n, 20_000)])
    emit(
        {
            "benchmark": "archive",
            "messages": n,
            "value_bytes": value_bytes,
            "raw_consume_msgs_per_s": round(raw),
            "loop_decode_msgs_per_s": round(decoded),
            "archive_worker_msgs_per_s": round(archived),
            "writer_only_msgs_per_s": round(writer_rate),
            "archive_files": files,
            "archived_bytes_per_record": round(bytes_per_record, 1),
            "archive_vs_raw_consume": round(archived / raw, 3),
            "archive_vs_loop_decode": round(archived / decoded, 3),
        }
    )


if __name__ == "__main__":
    main()
