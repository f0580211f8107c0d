"""One bad message yields one dead letter per consuming group (and one more per crash
before the commit); `streamrec dlq replay` publishes each source message once."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from jobs.dlq import inspect_dlq, replay_dlq
from recsys import records as r
from streams import admin
from streams.consumer_loop import ConsumerLoop, Inbound, headers_of
from streams.dlq import value_digest
from streams.kafka import consumer_config
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages
from testkit.up_process import REPO, clean_env
from tests.helpers import await_until, read_topic


async def _consume(settings: Settings, group: str, worker: str, expected: int) -> ConsumerLoop:
    """Run one group over user.events until it has dead-lettered ``expected`` messages."""
    handled: list[Inbound[Any]] = []

    async def handler(batch: list[Inbound[Any]]) -> None:
        handled.extend(batch)

    loop = ConsumerLoop(
        settings,
        worker=worker,
        inputs=[Topics(settings).user_events],
        handler=handler,
        producer=RecordProducer(settings),
        group_id=group,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await await_until(
        lambda: loop.stats.dead_lettered == expected and loop.stats.commits > 0,
        40,
        what=f"{group}: {expected} dead letters",
    )
    stop.set()
    await asyncio.wait_for(task, 20)
    return loop


def _rewind(settings: Settings, group: str) -> None:
    """Commit offset 0 for ``group``: what a crash before the commit amounts to."""
    topic = Topics(settings).user_events.name
    consumer = Consumer(
        consumer_config(
            settings, group, latency_sensitive=True, logger=logging.getLogger("librdkafka")
        )
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in parts], asynchronous=False)
    finally:
        consumer.close()


def _streamrec(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=clean_env(
            STREAMREC_BOOTSTRAP_SERVERS=settings.kafka_bootstrap,
            STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
        ),
    )


async def test_dead_letters_name_their_source_and_replay_publishes_each_once(
    kafka_settings: Settings,
) -> None:
    s = kafka_settings
    admin.ensure_topics(s)
    spec = Topics(s).user_events
    assert spec.dlq is not None
    with RecordProducer(s) as producer:
        poison = poison_messages(spec, producer.serde)
        producer.send(
            spec, "u1", r.UserEvent(user_id="u1", event_type=r.EventType.VIEW, item_id="i")
        )
        for payload in poison.values():
            producer.send_raw(spec, "u1", payload, [("origin", b"upstream")])
    n = len(poison)
    users = f"{s.topic_prefix}g-users"
    await _consume(s, users, "users", n)
    await _consume(s, f"{s.topic_prefix}g-feedback", "feedback", n)
    _rewind(s, users)  # users crashed before its commit: it dead-letters all again
    await _consume(s, users, "users", n)

    summary = inspect_dlq(s, "user.events.dlq")
    assert summary.letters == 3 * n
    assert len(summary.sources) == n
    assert summary.redeliveries == n
    for entry in summary.sources:
        assert entry.groups == sorted([users, f"{s.topic_prefix}g-feedback"])
        keys = {m.letter.source_key for m in entry.letters}
        assert len(keys) == 1  # the same identity in every group's letter
        assert entry.first.letter.sha256 == value_digest(entry.first.value)

    # the dry run counts; the replay publishes each source once, byte for byte
    dry = replay_dlq(s, "user.events", dry_run=True)
    assert (dry.published, dry.letters, dry.skipped_duplicates) == (n, 3 * n, 2 * n)
    target = f"{s.topic_prefix}replayed.user.events"
    done = replay_dlq(s, "user.events", publish=target)
    assert done.published == n
    replayed = read_topic(s, target, n)
    assert len(replayed) == n
    assert sorted(m.value() for m in replayed) == sorted(poison.values())
    for msg in replayed:
        headers = dict(headers_of(msg))
        assert headers["origin"] == b"upstream"
        assert headers["replay.source"].decode().startswith(f"{spec.name}[")
        assert not any(k.startswith("dlq.") for k in headers)

    # filters: only what the feedback group parked with one reason
    one = replay_dlq(s, "user.events", reason="unknown_schema_id", group="feedback", dry_run=True)
    assert one.published == 1

    # the command line says the same
    result = _streamrec(s, "dlq", "show", "user.events")
    assert result.returncode == 0, result.stderr
    assert f"{3 * n} dead letter(s) of {n} source message(s)" in result.stdout
    assert f"{n} sent again after a crash" in result.stdout
