"""Worker `archive` in-process, then `streamrec replay` over what it archived: bad input
is dead-lettered and the worker keeps going; every good record is archived once, with
its coordinates, in rolled files; offsets are committed to the end; a replayed range
(from the archive or from Kafka) reproduces the logged records byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from jobs.replay import ReplayOptions, run_replay
from recsys.archive import list_files, read_archive, read_avro_file
from recsys.archive.layout import INPROGRESS_DIR
from recsys.records import (
    FeedbackExample,
    LlmInvolvement,
    LlmUseCase,
    RecommendedItem,
    RecRequest,
    RecResponse,
    Route,
    WarmthBucket,
    utcnow,
)
from streams import admin
from streams.dlq import parse_dlq_headers
from streams.producer import RecordProducer
from streams.replay import REPLAY_SOURCE_HEADER
from streams.settings import Settings
from streams.topics import Topics, TopicSpec
from streams.wire import wire_bytes
from testkit.poison import poison_messages
from tests.helpers import await_until, committed_offsets, read_topic
from workers.archive_worker import ArchiveWorker
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever

BASE_MS = 1_780_000_000_000  # explicit Kafka timestamps: one second apart


def _records(n: int) -> dict[str, list[tuple[str, Any]]]:
    users = [f"user-{i}" for i in range(6)]
    responses, logs, examples, requests = [], [], [], []
    for i in range(n):
        user = users[i % len(users)]
        rid = f"req-{i:03d}"
        items = [
            RecommendedItem(
                item_id=f"item-{(i + j) % 50}", rank=j + 1, score=1.0 / (j + 1), source="cf"
            )
            for j in range(5)
        ]
        responses.append(
            (
                user,
                RecResponse(
                    request_id=rid,
                    user_id=user,
                    items=items,
                    route=Route.CF,
                    warmth_bucket=WarmthBucket.WARM,
                    propensity=1.0,
                    llm_used=i % 3 == 0,
                    latency_ms=12.5 + i,
                    prompt_version="p1" if i % 3 == 0 else None,
                ),
            )
        )
        requests.append((user, RecRequest(request_id=rid, user_id=user, k=5)))
        if i % 2 == 0:
            logs.append(
                (
                    rid,
                    LlmInvolvement(
                        request_id=rid,
                        user_id=user,
                        use_case=LlmUseCase.RERANK,
                        called=True,
                        used=True,
                        decision="called",
                        tokens_in=100 + i,
                    ),
                )
            )
            examples.append(
                (
                    user,
                    FeedbackExample(
                        example_id=f"{rid}:item-{i % 50}",
                        request_id=rid,
                        user_id=user,
                        item_id=f"item-{i % 50}",
                        rank=1,
                        route="CF",
                        warmth_bucket="WARM",
                        llm_used=False,
                        propensity=1.0,
                        clicked=True,
                        impression_at=utcnow(),
                    ),
                )
            )
    return {
        "rec.responses": responses,
        "rec.llm-log": logs,
        "feedback.examples": examples,
        "rec.requests": requests,
    }


def _publish(settings: Settings, records: dict[str, list[tuple[str, Any]]]) -> None:
    topics = Topics(settings)
    with RecordProducer(settings) as producer:
        for base, pairs in records.items():
            spec = next(t for t in topics.data_topics() if t.base == base)
            for i, (key, record) in enumerate(pairs):
                value = producer.serde.encode(record, spec.subject)
                headers = [("origin", f"test-{i}".encode())]
                producer.send_raw(spec, key, value, headers, timestamp_ms=BASE_MS + i * 1000)
                if base != "rec.requests" and i == len(pairs) // 2:  # poison mid-stream
                    for payload in poison_messages(spec, producer.serde).values():
                        producer.send_raw(spec, key, payload, timestamp_ms=BASE_MS + i * 1000)


def _good(settings: Settings, spec: TopicSpec, n: int) -> dict[tuple[int, int], Message]:
    """The good messages of a topic by (partition, offset), read straight from Kafka."""
    out = {}
    poisoned = 0 if spec.base == "rec.requests" else 4
    for m in read_topic(settings, spec.name, n + poisoned):
        if not any(k == "origin" for k, _ in m.headers() or []):
            continue  # poison
        out[(m.partition(), m.offset())] = m
    assert len(out) == n
    return out


async def test_archive_then_replay_reproduces_records(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_overrides(
        archive_dir=tmp_path / "archive", archive_roll_bytes=1024, archive_roll_s=0.5
    )
    admin.ensure_topics(settings)
    topics = Topics(settings)
    records = _records(120)
    _publish(settings, records)
    archived_specs = [
        topics.rec_responses,
        topics.llm_log,
        topics.feedback_examples,
        topics.rec_requests,
    ]
    good = {spec.name: _good(settings, spec, len(records[spec.base])) for spec in archived_specs}
    total = sum(len(v) for v in good.values()) + 12  # + 4 poison on each of 3 topics

    ctx = bootstrap(settings, Overrides(group_id=f"{settings.topic_prefix}archive-test"))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("archive", ctx, stop))

    def caught_up() -> bool:
        handle = ctx.handles.get(ArchiveWorker)
        loop = handle.loop if handle else None
        if loop is None or loop.stats.consumed < total:
            return False
        return all(
            sum(committed_offsets(settings, loop.group_id, spec.name).values())
            == len(good[spec.name]) + (4 if spec.name != topics.rec_requests.name else 0)
            for spec in archived_specs
        )

    # offsets reach the end only once the last open files were rolled (by age)
    await await_until(caught_up, 60, interval_s=0.5, what="archive committed to the end")
    stop.set()
    await asyncio.wait_for(task, 30)
    loop = ctx.handles.require(ArchiveWorker).loop
    assert loop.stats.dead_lettered == 12
    for spec in archived_specs[:3]:
        assert spec.dlq is not None
        dead = read_topic(settings, spec.dlq.name, 4)
        assert len(dead) == 4
        assert {parse_dlq_headers(m.headers()).worker for m in dead} == {"archive"}

    root = settings.archive_root
    assert not list((root / INPROGRESS_DIR).rglob("*.part"))
    for spec in archived_specs:
        files = list_files(root, spec.name)
        if spec is topics.rec_responses:
            assert len(files) > 2  # rolled by size
        # exactly once, read file by file (no reader-side de-duplication)
        seen = [(m.partition, m.offset) for f in files for m in read_avro_file(f.path)]
        assert sorted(seen) == sorted(good[spec.name]), spec.name
        for f in files:  # each name states the offsets inside
            offsets = [m.offset for m in read_avro_file(f.path)]
            assert (min(offsets), max(offsets)) == (f.first_offset, f.last_offset)
            assert f.path.parent.name == "2026-05-28"  # UTC day of BASE_MS
        for m in read_archive(root, spec.name):
            original = good[spec.name][(m.partition, m.offset)]
            assert wire_bytes(m) == original.value()
            assert m.key is not None and m.key.encode() == original.key()
            assert m.timestamp_ms == original.timestamp()[1]
            assert m.headers == [(k, v or b"") for k, v in original.headers() or []]

    # --- replay: a range from the archive, published to another topic -----------------
    target = f"{settings.topic_prefix}replayed.archive"
    progress: list[int] = []
    summary = run_replay(
        settings,
        ReplayOptions(
            topic="rec.responses", source="archive", from_offset=2, to_offset=9, publish=target
        ),
        progress.append,
    )
    expected = {k: m for k, m in good[topics.rec_responses.name].items() if 2 <= k[1] < 9}
    assert summary.written == len(expected) == sum(progress)
    _assert_republished(settings, target, expected)

    # --- replay: a time range from Kafka, one partition, published and exported --------
    target = f"{settings.topic_prefix}replayed.kafka"
    since, until = BASE_MS + 10_000, BASE_MS + 40_000  # records 10..39
    summary = run_replay(
        settings,
        ReplayOptions(
            topic="rec.responses",
            source="kafka",
            partitions=(1,),
            since_ms=since,
            until_ms=until,
            publish=target,
        ),
    )
    expected = {
        k: m
        for k, m in good[topics.rec_responses.name].items()
        if k[0] == 1 and since <= m.timestamp()[1] < until
    }
    assert summary.written == len(expected) > 0
    _assert_republished(settings, target, expected)

    export = tmp_path / "export.avro"
    run_replay(
        settings,
        ReplayOptions(topic="rec.llm-log", source="kafka", export=export),
    )
    back = {(m.partition, m.offset): wire_bytes(m) for m in read_avro_file(export)}
    assert back == {k: m.value() for k, m in good[topics.llm_log.name].items()}


def _assert_republished(settings: Settings, target: str, expected: dict[Any, Message]) -> None:
    copies = read_topic(settings, target, len(expected))
    assert len(copies) == len(expected)
    by_source: dict[str, Message] = {}
    for copy in copies:
        headers = dict(copy.headers() or [])
        by_source[headers[REPLAY_SOURCE_HEADER].decode()] = copy
    for (partition, offset), original in expected.items():
        copy = by_source[f"{original.topic()}[{partition}]@{offset}"]
        assert copy.value() == original.value()  # byte-equal value
        assert copy.key() == original.key()
        assert copy.partition() == partition  # same key, same partition count
        assert copy.timestamp()[1] == original.timestamp()[1]
        origin: Callable[[Message], list[Any]] = lambda m: [  # noqa: E731
            h for h in m.headers() or [] if h[0] != REPLAY_SOURCE_HEADER
        ]
        assert origin(copy) == origin(original)
